package router

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cert is one certificate the router serves for an app's names.
type Cert struct {
	App   string
	Name  string   // for logs: the certificate's name (a fingerprint prefix)
	Chain []byte   // PEM, leaf first
	Key   []byte   // PEM; never logged
	Names []string // names it is served for; empty: the leaf's DNS names
}

// HTTPS is an app's HTTPS behaviour: Redirect sends plain-HTTP requests to
// https:// with 308; HSTS adds Strict-Transport-Security to answers over
// TLS.
type HTTPS struct {
	Redirect, HSTS bool
}

// httpsFlags are an app's HTTPS settings, precomputed on its route.
type httpsFlags uint8

const (
	flagRedirect httpsFlags = 1 << iota
	flagHSTS
)

// hstsValue is the Strict-Transport-Security of apps with HSTS on: a year.
var hstsValue = []string{"max-age=31536000"}

// certSet is one immutable snapshot of the certificates, swapped
// atomically like the route table.
type certSet struct {
	exact map[string][]*certEntry // hostname → certificates, longest-lived first
	wild  map[string][]*certEntry // "example.com" for "*.example.com" → certificates
}

type certEntry struct {
	app      string
	cert     *tls.Certificate
	notAfter time.Time
}

// SetCerts replaces the certificates the router serves. One that does not
// parse or whose key does not match is skipped, and logged by app and name
// (never its key).
func (rt *Router) SetCerts(certs []Cert) {
	set := &certSet{exact: map[string][]*certEntry{}, wild: map[string][]*certEntry{}}
	for _, c := range certs {
		kp, err := tls.X509KeyPair(c.Chain, c.Key)
		if err != nil {
			rt.log.Warn("skipping a certificate that does not load", "app", c.App, "cert", c.Name)
			continue
		}
		leaf, err := x509.ParseCertificate(kp.Certificate[0])
		if err != nil {
			rt.log.Warn("skipping a certificate that does not parse", "app", c.App, "cert", c.Name)
			continue
		}
		kp.Leaf = leaf
		e := &certEntry{app: c.App, cert: &kp, notAfter: leaf.NotAfter}
		names := c.Names
		if len(names) == 0 {
			names = leaf.DNSNames
		}
		for _, n := range names {
			n = normalizeHost(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				set.wild[rest] = append(set.wild[rest], e)
			} else {
				set.exact[n] = append(set.exact[n], e)
			}
		}
	}
	byExpiry := func(a, b *certEntry) int { return b.notAfter.Compare(a.notAfter) }
	for _, l := range set.exact {
		slices.SortStableFunc(l, byExpiry)
	}
	for _, l := range set.wild {
		slices.SortStableFunc(l, byExpiry)
	}
	rt.certs.Store(set)
}

// SetHTTPS replaces the apps' HTTPS settings; apps absent have both off.
func (rt *Router) SetHTTPS(settings map[string]HTTPS) {
	rt.wmu.Lock()
	defer rt.wmu.Unlock()
	cp := make(map[string]httpsFlags, len(settings))
	for app, s := range settings {
		var f httpsFlags
		if s.Redirect {
			f |= flagRedirect
		}
		if s.HSTS {
			f |= flagHSTS
		}
		if f != 0 {
			cp[app] = f
		}
	}
	old := rt.table.Load()
	t := buildTable(old.routes, old.domains, old)
	t.setHTTPS(cp)
	rt.table.Store(t)
}

// setHTTPS records the raw settings on a table being built and puts each
// app's flags on its route, so that a request reads them with the route.
func (t *table) setHTTPS(m map[string]httpsFlags) {
	t.https = m
	for app, r := range t.apps {
		r.https = m[app]
	}
}

// TLSConfig is the router's TLS configuration: the certificate is chosen
// by SNI (the exact name, then a wildcard certificate one label up, among
// the certificates of the app the name routes to); a name without one
// fails the handshake with the alert unrecognized_name. HTTP/2 and
// HTTP/1.1 are offered: an http.Server given this config serves both.
func (rt *Router) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: rt.getCertificate,
	}
}

// SetPlatformCert sets the certificate of the platform domain's own names:
// the domain, pier.<domain> (the API) and <app>.<domain>, typically a
// wildcard certificate for *.<domain> and <domain> from the operator
// (pierd --tls-cert). An app's own certificate for its <app>.<domain>
// wins over it. nil removes it.
func (rt *Router) SetPlatformCert(c *tls.Certificate) { rt.platformCert.Store(c) }

// platformName says whether name is the platform domain or one label under it.
func (rt *Router) platformName(name string) bool {
	if name == rt.domain {
		return true
	}
	_, rest, ok := strings.Cut(name, ".")
	return ok && rest == rt.domain
}

func (rt *Router) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeHost(hello.ServerName)
	if c := rt.appCertificate(name); c != nil {
		return c, nil
	}
	if name != "" && rt.platformName(name) {
		return rt.platformCert.Load(), nil
	}
	// No certificate and no error: crypto/tls answers unrecognized_name.
	return nil, nil
}

func (rt *Router) appCertificate(name string) *tls.Certificate {
	set := rt.certs.Load()
	if name == "" || set == nil {
		return nil
	}
	// Only a certificate of the app the name routes to: a name that moved
	// to another app does not get its former owner's certificate.
	app, ok := rt.resolve(rt.table.Load(), name)
	if !ok {
		return nil
	}
	if c := pickCert(set.exact[name], app); c != nil {
		return c
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if c := pickCert(set.wild[rest], app); c != nil {
			return c
		}
	}
	return nil
}

// pickCert returns the longest-lived certificate of app in l.
func pickCert(l []*certEntry, app string) *tls.Certificate {
	for _, e := range l {
		if e.app == app {
			return e.cert
		}
	}
	return nil
}

// redirectHTTPS answers a plain-HTTP request to an app with HTTPS redirect
// on with 308 to the same URL over https, and says whether it did. A
// request a trusted proxy says came over https is not redirected: the
// proxy terminated TLS.
func (rt *Router) redirectHTTPS(w http.ResponseWriter, r *http.Request, host string) bool {
	if r.TLS != nil {
		return false
	}
	if rt.trusts(r.RemoteAddr) && r.Header.Get("X-Forwarded-Proto") == "https" {
		return false
	}
	target := "https://" + host
	if rt.httpsPort != "" {
		target += ":" + rt.httpsPort
	}
	w.Header()["Location"] = []string{target + r.URL.RequestURI()}
	w.Header()["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusPermanentRedirect)
	return true
}

// httpsPortOf is the port redirects name: "" for 443 or none.
func httpsPortOf(port int) string {
	if port <= 0 || port == 443 {
		return ""
	}
	return strconv.Itoa(port)
}
