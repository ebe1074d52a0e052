package main_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier/internal/testenv"
)

// TestHTTPS is the TLS part of acceptance point 4: an app with two custom
// domains, a certificate uploaded for each with the CLI, served over HTTPS
// (HTTP/2) by SNI for both names; then HTTPS redirect and HSTS.
func TestHTTPS(t *testing.T) {
	skipShort(t)
	// The platform's own certificate (--tls-cert): a wildcard for the
	// platform domain's names.
	pdir := t.TempDir()
	pchain, pkey := testenv.Cert(t, time.Time{}, "*.pier.localhost", "pier.localhost")
	pcf, pkf := filepath.Join(pdir, "platform.pem"), filepath.Join(pdir, "platform.key")
	os.WriteFile(pcf, []byte(pchain), 0o644)
	os.WriteFile(pkf, []byte(pkey), 0o600)
	s := startStack(t, "PIER_HTTPS_ADDR=127.0.0.1:0", "PIER_TLS_CERT="+pcf, "PIER_TLS_KEY="+pkf)
	m := regexp.MustCompile(`Router HTTPS listening on (127\.0\.0\.1:\d+)`).FindStringSubmatch(s.d.out.String())
	if m == nil {
		t.Fatalf("no HTTPS address in pierd's output:\n%s", s.d.out)
	}
	httpsAddr := m[1]
	httpsPort := httpsAddr[strings.LastIndex(httpsAddr, ":")+1:]

	r := s.newRepo("../../builder/host/testdata/procfile-shell", "secure")
	r.mustPush()
	roots := x509.NewCertPool()
	if b, _ := pem.Decode([]byte(pchain)); b != nil {
		leaf, _ := x509.ParseCertificate(b.Bytes)
		roots.AddCert(leaf)
	}
	dir := t.TempDir()
	var keys []string
	for _, host := range []string{"a.example.test", "b.example.test"} {
		s.c.must("", "domains:add", host, "-a", "secure")
		chain, key := testenv.Cert(t, time.Time{}, host)
		b, _ := pem.Decode([]byte(chain))
		leaf, _ := x509.ParseCertificate(b.Bytes)
		roots.AddCert(leaf)
		keys = append(keys, strings.Split(key, "\n")[1])
		cf, kf := filepath.Join(dir, host+".pem"), filepath.Join(dir, host+".key")
		os.WriteFile(cf, []byte(chain), 0o644)
		os.WriteFile(kf, []byte(key), 0o600)
		if out := s.c.must("", "certs:add", cf, kf, "-a", "secure"); !strings.Contains(out, "It serves "+host) {
			t.Fatalf("certs:add: %s", out)
		}
	}
	if out := s.c.must("", "certs", "-a", "secure"); !strings.Contains(out, "a.example.test") || !strings.Contains(out, "b.example.test") {
		t.Fatalf("certs:\n%s", out)
	}

	// Go's resolver knows nothing of these names: every connection goes
	// to the router on loopback; TLS still sends the name (SNI).
	dialTo := func(addr string) func(ctx context.Context, _, _ string) (net.Conn, error) {
		return func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: dialTo(httpsAddr), TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
	}}
	get := func(c *http.Client, url string) (*http.Response, string, error) {
		res, err := c.Get(url)
		if err != nil {
			return nil, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res, strings.TrimSpace(string(b)), err
	}
	for _, host := range []string{"a.example.test", "b.example.test"} {
		// The router learns of certificates through Postgres: soon, not at once.
		eventually(t, 20*time.Second, "https://"+host+" serves the app", func() (bool, string) {
			res, body, err := get(client, "https://"+host+":"+httpsPort+"/hello.txt")
			if err != nil {
				return false, err.Error()
			}
			if res.StatusCode != 200 || body != "hello from the shell" || res.ProtoMajor != 2 || res.TLS.PeerCertificates[0].DNSNames[0] != host {
				return false, res.Proto + " " + res.Status + " " + body
			}
			return true, ""
		})
	}

	// The platform certificate serves the app's own name, and the API's.
	for url, want := range map[string]string{
		"https://secure.pier.localhost:" + httpsPort + "/hello.txt": "hello from the shell",
		"https://pier.localhost:" + httpsPort + "/healthz":          "ok",
	} {
		res, body, err := get(client, url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if res.StatusCode != 200 || !strings.Contains(body, want) || res.TLS.PeerCertificates[0].DNSNames[0] != "*.pier.localhost" {
			t.Fatalf("%s: %s %q with certificate %v", url, res.Status, body, res.TLS.PeerCertificates[0].DNSNames)
		}
	}

	s.c.must("", "https:redirect", "on", "-a", "secure")
	s.c.must("", "https:hsts", "on", "-a", "secure")
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialTo(strings.TrimPrefix(s.d.url, "http://"))},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	eventually(t, 20*time.Second, "plain HTTP redirects to https and HTTPS answers carry HSTS", func() (bool, string) {
		res, _, err := get(plain, "http://a.example.test:"+s.httpPort()+"/hello.txt?x=1")
		if err != nil {
			return false, err.Error()
		}
		if want := "https://a.example.test:" + httpsPort + "/hello.txt?x=1"; res.StatusCode != 308 || res.Header.Get("Location") != want {
			return false, res.Status + " " + res.Header.Get("Location")
		}
		res, _, err = get(client, "https://b.example.test:"+httpsPort+"/hello.txt")
		if err != nil {
			return false, err.Error()
		}
		if res.Header.Get("Strict-Transport-Security") != "max-age=31536000" {
			return false, "HSTS " + res.Header.Get("Strict-Transport-Security")
		}
		return true, ""
	})
	keys = append(keys, strings.Split(pkey, "\n")[1])
	for _, k := range keys {
		if strings.Contains(s.d.out.String(), k) {
			t.Fatal("a private key is in pierd's output")
		}
	}
}
