package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// PebbleVersion is the version of github.com/letsencrypt/pebble/v2 whose
// ACME test server (pebble) and DNS server (pebble-challtestsrv)
// StartPebble runs.
const PebbleVersion = "v2.10.1"

// BuildPebble builds pebble and pebble-challtestsrv from the module proxy
// into $HOME/.cache/pier/pebble-<version>/bin, unless they are there, and
// returns their paths. Cold, it takes about half a minute.
func BuildPebble(ctx context.Context) (pebble, challtestsrv string, err error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(home, ".cache", "pier", "pebble-"+PebbleVersion)
	const mod = "github.com/letsencrypt/pebble/v2"
	if pebble, err = buildTool(ctx, dir, "pebble", mod, PebbleVersion, mod+"/cmd/pebble"); err != nil {
		return "", "", err
	}
	challtestsrv, err = buildTool(ctx, dir, "pebble-challtestsrv", mod, PebbleVersion, mod+"/cmd/pebble-challtestsrv")
	return pebble, challtestsrv, err
}

// Pebble is a running ACME test server on loopback. Its HTTP-01 and
// TLS-ALPN-01 validations really connect, to 127.0.0.1 at the ports given
// to StartPebble: its DNS server answers 127.0.0.1 for every name.
type Pebble struct {
	Directory string // https://127.0.0.1:PORT/dir
	CAFile    string // PEM root of the directory's HTTPS certificate
	mgmt      string // https://127.0.0.1:PORT, the management API
	client    *http.Client
	Out       *Buffer // pebble's output
}

// StartPebble runs pebble-challtestsrv (as a DNS server only) and pebble,
// whose HTTP-01 validation connects to 127.0.0.1:httpPort and TLS-ALPN-01
// to 127.0.0.1:tlsPort, until the test ends. Validation is never skipped.
//
// Its certificates are valid for validity (0: 90 days), from the moment
// they are issued.
func StartPebble(t testing.TB, httpPort, tlsPort int, validity time.Duration) *Pebble {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pebbleBin, challBin, err := BuildPebble(ctx)
	if err != nil {
		t.Fatalf("building pebble: %v", err)
	}
	if validity <= 0 {
		validity = 90 * 24 * time.Hour
	}
	dir := t.TempDir()
	ports, err := freePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	chall := exec.Command(challBin,
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", dnsAddr, "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", "127.0.0.1:"+strconv.Itoa(ports[1]))
	challOut := &Buffer{}
	startChild(t, chall, challOut, "pebble-challtestsrv")

	// pebble's own HTTPS: a certificate for 127.0.0.1 from a throwaway CA.
	caPEM, certPEM, keyPEM := loopbackCA(t)
	p := &Pebble{
		Directory: "https://127.0.0.1:" + strconv.Itoa(ports[2]) + "/dir",
		CAFile:    filepath.Join(dir, "ca.pem"),
		mgmt:      "https://127.0.0.1:" + strconv.Itoa(ports[3]),
		Out:       &Buffer{},
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{p.CAFile: caPEM, certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(ports[2]),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(ports[3]),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{"default": map[string]any{
			"description": "Pier's tests", "validityPeriod": int64(validity / time.Second),
		}},
	}}
	b, _ := json.Marshal(cfg)
	config := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pebbleBin, "-config", config, "-dnsserver", dnsAddr, "-strict=false")
	// No sleeps before validating, no nonce rejection, fresh authorizations
	// for every order. PEBBLE_VA_ALWAYS_VALID is never set: every
	// challenge is really validated.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	startChild(t, cmd, p.Out, "pebble")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := p.client.Get(p.Directory)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer at %s within 30s (%v):\n%s\npebble-challtestsrv:\n%s", p.Directory, err, p.Out, challOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// Roots returns the PEM of the root that issues pebble's certificates
// (from its management API): it changes at every start.
func (p *Pebble) Roots() ([]byte, error) {
	res, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pebble's /roots/0: %s: %s", res.Status, b)
	}
	return b, nil
}

// startChild starts cmd with its output in out, and stops it when the test
// ends, showing the output if the test failed.
func startChild(t testing.TB, cmd *exec.Cmd, out *Buffer, name string) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out)
		}
	})
	// A child that fails at once (a port taken) says so at once.
	select {
	case <-exited:
		t.Fatalf("%s exited at start:\n%s", name, out)
	case <-time.After(50 * time.Millisecond):
	}
}

// loopbackCA makes a CA and a certificate it signs for 127.0.0.1 and
// localhost, PEM-encoded.
func loopbackCA(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Pier test ACME server CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
