package main_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestACME is acceptance point 4b: a certificate issued by a real ACME
// server (pebble, built from the module proxy) with real HTTP-01
// validation through Pier's router on loopback: pebble's DNS answers
// 127.0.0.1 for every name and it connects to the router's HTTP port.
// Then the router serves it by SNI, it is renewed (pebble's certificates
// here live 30 s, so renewal falls due 20 s after issuance) replacing the
// previous one, and turning automatic certificates off stops renewal.
func TestACME(t *testing.T) {
	skipShort(t)
	const host = "shop.example.test"
	httpPort, httpsPort := freePort(t), freePort(t)
	hp, _ := strconv.Atoi(httpPort)
	tp, _ := strconv.Atoi(httpsPort)
	const validity = 30 * time.Second
	pb := testenv.StartPebble(t, hp, tp, validity)
	s := startStack(t, "PIER_HTTP_ADDR=127.0.0.1:"+httpPort, "PIER_HTTPS_ADDR=127.0.0.1:"+httpsPort,
		"PIER_ACME_DIRECTORY="+pb.Directory, "PIER_ACME_CA_FILE="+pb.CAFile, "PIER_ACME_EMAIL=ops@example.test")
	if !strings.Contains(s.d.out.String(), "Automatic certificates from "+pb.Directory) {
		t.Fatalf("pierd does not say it issues certificates:\n%s", s.d.out)
	}
	r := s.newRepo("../../builder/host/testdata/procfile-shell", "shop")
	r.mustPush()

	// On first, then the domain: adding it starts an order at once.
	if out := s.c.must("", "certs:auto:enable", "-a", "shop"); !strings.Contains(out, "pier domains:add") {
		t.Fatalf("certs:auto:enable without domains:\n%s", out)
	}
	s.c.must("", "domains:add", host, "-a", "shop")
	autoCerts := func() pier.AutoCertDomain {
		var a pier.AutoCerts
		jsonOut(t, s.c.must("", "certs:auto", "-a", "shop", "--json"), &a)
		if len(a.Domains) != 1 || a.Domains[0].Hostname != host {
			t.Fatalf("certs:auto: %+v", a)
		}
		return a.Domains[0]
	}
	var first pier.AutoCertDomain
	start := time.Now()
	eventually(t, 60*time.Second, "a certificate is issued for "+host, func() (bool, string) {
		first = autoCerts()
		return first.Status == pier.AutoCertIssued, first.Status + " " + first.Detail
	})
	t.Logf("issued in %s", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(s.d.out.String(), "answered an ACME HTTP-01 challenge") || !strings.Contains(s.d.out.String(), "host="+host) {
		t.Fatalf("the router did not log answering pebble's challenge:\n%s", s.d.out)
	}
	if out := s.c.must("", "certs:auto", "-a", "shop"); !strings.Contains(out, host) || !strings.Contains(out, "issued") || !strings.Contains(out, first.Cert) {
		t.Fatalf("certs:auto:\n%s", out)
	}
	if out := s.c.must("", "certs", "-a", "shop"); !strings.Contains(out, first.Cert) || !strings.Contains(out, "(auto)") {
		t.Fatalf("certs does not show the managed certificate:\n%s", out)
	}

	// The router serves it by SNI, and it verifies against pebble's root.
	root, err := pb.Roots()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble's root is not PEM: %q", root)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:"+httpsPort)
		},
		// A new handshake each time: the certificate changes on renewal.
		TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true,
	}}
	served := func() (string, error) {
		res, err := client.Get("https://" + host + ":" + httpsPort + "/hello.txt")
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		leaf := res.TLS.PeerCertificates[0]
		if res.StatusCode != 200 || strings.TrimSpace(string(b)) != "hello from the shell" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
			return "", fmt.Errorf("%s %q for names %v", res.Proto+" "+res.Status, b, leaf.DNSNames)
		}
		sum := sha256.Sum256(leaf.Raw) // a certificate's name is its fingerprint's start
		return hex.EncodeToString(sum[:])[:pier.CertName], nil
	}
	eventually(t, 20*time.Second, "https://"+host+" serves the app with the issued certificate", func() (bool, string) {
		name, err := served()
		if err != nil {
			return false, err.Error()
		}
		return name == first.Cert, "served " + name + ", issued " + first.Cert
	})

	// Renewal: a new certificate replaces the old one, for the router too.
	var second pier.AutoCertDomain
	eventually(t, validity+20*time.Second, "the certificate is renewed", func() (bool, string) {
		second = autoCerts()
		return second.Status == pier.AutoCertIssued && second.Cert != first.Cert, second.Status + " " + second.Cert
	})
	var certs []pier.Certificate
	jsonOut(t, s.c.must("", "certs", "-a", "shop", "--json"), &certs)
	if len(certs) != 1 || !certs[0].Managed || certs[0].Name != second.Cert {
		t.Fatalf("after renewal, certs: %+v; want the renewed one only", certs)
	}
	eventually(t, 20*time.Second, "the router serves the renewed certificate", func() (bool, string) {
		name, err := served()
		if err != nil {
			return false, err.Error()
		}
		return name == second.Cert, "served " + name
	})

	// Off: no more renewals, though the renewal of the current one falls
	// due meanwhile. The issued certificate stays.
	s.c.must("", "certs:auto:disable", "-a", "shop")
	if second.RenewAt == nil {
		t.Fatalf("no renewal time: %+v", second)
	}
	for time.Now().Before(second.RenewAt.Add(5 * time.Second)) {
		jsonOut(t, s.c.must("", "certs", "-a", "shop", "--json"), &certs)
		if len(certs) != 1 || certs[0].Name != second.Cert {
			t.Fatalf("certificates changed after certs:auto:disable: %+v", certs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if d := autoCerts(); d.Status == pier.AutoCertPending {
		t.Fatalf("disabled, yet pending: %+v", d)
	}
	if out := s.d.out.String(); strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("a private key is in pierd's output:\n%s", out)
	}
}
