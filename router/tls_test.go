package router_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/router"
)

// serveTLS runs rt on a TLS listener as pierd does for --https-addr.
func serveTLS(t *testing.T, rt *router.Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rt.Server("")
	srv.TLSConfig = rt.TLSConfig()
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// tlsCert makes a self-signed certificate for names and the pool that
// trusts it.
func tlsCert(t *testing.T, app string, names ...string) (router.Cert, *x509.Certificate) {
	t.Helper()
	chain, key := testenv.Cert(t, time.Time{}, names...)
	b, _ := pem.Decode([]byte(chain))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return router.Cert{App: app, Name: names[0], Chain: []byte(chain), Key: []byte(key)}, leaf
}

// httpsClient dials addr whatever the URL's host, trusting roots.
func httpsClient(addr string, roots *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestTLSBySNI: two apps with a certificate each on one listener; SNI picks
// each app's, the client speaks HTTP/2, the backend sees https; a name
// without a certificate fails the handshake.
func TestTLSBySNI(t *testing.T) {
	_, a := backend(t, "a")
	_, b := backend(t, "b")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"alpha": {a}, "beta": {b}, "gamma": {b}})
	rt.SetDomains(map[string]string{"a.example.test": "alpha", "b.example.test": "beta", "c.example.test": "gamma", "x.wild.test": "beta", "*.wild.test": "alpha"})
	ca, leafA := tlsCert(t, "alpha", "a.example.test")
	cb, leafB := tlsCert(t, "beta", "b.example.test")
	cw, leafW := tlsCert(t, "alpha", "*.wild.test")
	// beta's certificate for c.example.test is not served: the name is gamma's.
	cc, _ := tlsCert(t, "beta", "c.example.test")
	rt.SetCerts([]router.Cert{ca, cb, cw, cc})
	addr := serveTLS(t, rt)

	roots := x509.NewCertPool()
	roots.AddCert(leafA)
	roots.AddCert(leafB)
	roots.AddCert(leafW)
	for name, want := range map[string]*x509.Certificate{"a.example.test": leafA, "b.example.test": leafB, "y.wild.test": leafW} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st := conn.ConnectionState()
		conn.Close()
		if !st.PeerCertificates[0].Equal(want) {
			t.Fatalf("%s: served the certificate of %v", name, st.PeerCertificates[0].DNSNames)
		}
		if st.NegotiatedProtocol != "h2" {
			t.Fatalf("%s: negotiated %q, want h2", name, st.NegotiatedProtocol)
		}
	}
	for _, name := range []string{"x.wild.test" /* beta's, and beta has no cert for it */, "c.example.test", "nobody.example.test", ""} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Fatalf("%q: handshake succeeded with %v", name, conn.ConnectionState().PeerCertificates[0].DNSNames)
		}
		if !strings.Contains(err.Error(), "unrecognized name") {
			t.Fatalf("%q: %v, want the alert unrecognized name", name, err)
		}
	}

	// HTTP/2 through to the backend, which is told the request came over https.
	client := httpsClient(addr, roots, true)
	for host, want := range map[string]string{"a.example.test": "a ", "b.example.test": "b "} {
		res, err := client.Get("https://" + host + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.ProtoMajor != 2 || !strings.HasPrefix(string(body), want) || !strings.Contains(string(body), "xfp=https") {
			t.Fatalf("%s: %d %s %q", host, res.StatusCode, res.Proto, body)
		}
		if res.Header.Get("Strict-Transport-Security") != "" {
			t.Fatalf("%s: HSTS without it being on", host)
		}
	}

	// Certificates go away with SetCerts.
	rt.SetCerts([]router.Cert{cb})
	if conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example.test", RootCAs: roots}); err == nil {
		conn.Close()
		t.Fatal("a removed certificate is still served")
	}
}

// TestHTTPSRedirectAndHSTS: with redirect on, plain HTTP gets 308 to the
// https URL (with the HTTPS port); with HSTS on, answers over TLS carry
// Strict-Transport-Security and plain-HTTP ones do not.
func TestHTTPSRedirectAndHSTS(t *testing.T) {
	_, a := backend(t, "a")
	_, b := backend(t, "b")
	rt := router.New(router.Config{Domain: "pier.localhost", HTTPSPort: 8443})
	rt.SetHTTPS(map[string]router.HTTPS{"alpha": {Redirect: true, HSTS: true}, "beta": {HSTS: true}})
	// Settings survive route and domain changes.
	rt.SetRoutes(map[string][]string{"alpha": {a}, "beta": {b}, "plain": {b}})
	rt.SetDomains(map[string]string{"a.example.test": "alpha", "b.example.test": "beta"})
	ca, leafA := tlsCert(t, "alpha", "a.example.test")
	cb, leafB := tlsCert(t, "beta", "b.example.test")
	rt.SetCerts([]router.Cert{ca, cb})
	httpAddr, _ := serve(t, rt)
	httpsAddr := serveTLS(t, rt)
	roots := x509.NewCertPool()
	roots.AddCert(leafA)
	roots.AddCert(leafB)

	plain := httpsClient(httpAddr, nil, false)
	res, err := plain.Get("http://a.example.test:8080/p/q?x=1&y=%2F")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusPermanentRedirect || loc != "https://a.example.test:8443/p/q?x=1&y=%2F" {
		t.Fatalf("redirect: %d %q", res.StatusCode, loc)
	}
	for _, u := range []string{"http://b.example.test/", "http://plain.pier.localhost/"} {
		res, err = plain.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Strict-Transport-Security") != "" {
			t.Fatalf("%s over plain HTTP: %d, HSTS %q", u, res.StatusCode, res.Header.Get("Strict-Transport-Security"))
		}
	}

	secure := httpsClient(httpsAddr, roots, true)
	for _, host := range []string{"a.example.test", "b.example.test"} {
		res, err := secure.Get("https://" + host + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Values("Strict-Transport-Security")[0] != "max-age=31536000" || len(res.Header.Values("Strict-Transport-Security")) != 1 {
			t.Fatalf("%s over TLS: %d, HSTS %q", host, res.StatusCode, res.Header.Values("Strict-Transport-Security"))
		}
	}

	// Off again.
	rt.SetHTTPS(nil)
	res, err = plain.Get("http://a.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("redirect off: %d", res.StatusCode)
	}
}

// The platform's certificate (pierd --tls-cert) serves the platform
// domain's own names: the API's, and every <app>.<domain> without a
// certificate of its own; an app's own certificate wins for its name.
func TestPlatformCert(t *testing.T) {
	_, beAddr := backend(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost", API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") })})
	rt.SetRoutes(map[string][]string{"app": {beAddr}, "own": {beAddr}})
	platform, platformLeaf := tlsCert(t, "", "*.pier.localhost", "pier.localhost")
	kp, err := tls.X509KeyPair(platform.Chain, platform.Key)
	if err != nil {
		t.Fatal(err)
	}
	rt.SetPlatformCert(&kp)
	own, ownLeaf := tlsCert(t, "own", "own.pier.localhost")
	rt.SetCerts([]router.Cert{own})
	addr := serveTLS(t, rt)
	roots := x509.NewCertPool()
	roots.AddCert(platformLeaf)
	roots.AddCert(ownLeaf)
	for _, c := range []struct{ host, want, leaf string }{
		{"app.pier.localhost", "be host=app.pier.localhost", "*.pier.localhost"},
		{"pier.localhost", "api", "*.pier.localhost"},
		{"pier.pier.localhost", "api", "*.pier.localhost"},
		{"own.pier.localhost", "be host=own.pier.localhost", "own.pier.localhost"},
		{"nope.pier.localhost", "No app at this address", "*.pier.localhost"},
	} {
		res, err := httpsClient(addr, roots, true).Get("https://" + c.host + "/")
		if err != nil {
			t.Fatalf("%s: %v", c.host, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(body), c.want) || res.TLS.PeerCertificates[0].DNSNames[0] != c.leaf {
			t.Errorf("%s: %q with certificate %v, want %q with %s", c.host, body, res.TLS.PeerCertificates[0].DNSNames, c.want, c.leaf)
		}
	}
	// Names outside the platform domain get no platform certificate.
	if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "shop.example.com", RootCAs: roots}); err == nil {
		t.Error("a name outside the platform domain got a certificate")
	}
	rt.SetPlatformCert(nil)
	if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "app.pier.localhost", RootCAs: roots}); err == nil {
		t.Error("the platform certificate is still served after SetPlatformCert(nil)")
	}
}
