package controller_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestCerts: a certificate for the app's names is taken and listed without
// its key; one for a name that is not the app's, a mismatched key, an
// expired certificate or garbage is refused saying why; removal by name;
// events; the key appears in no answer.
func TestCerts(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "shop"}, 201, nil)
	e.must("POST", "/v1/apps", e.admin, map[string]string{"name": "blog"}, 201, nil)
	e.must("POST", "/v1/apps/shop/domains", e.alice, map[string]string{"hostname": "www.shop.test"}, 201, nil)
	e.must("POST", "/v1/apps/blog/domains", e.admin, map[string]string{"hostname": "blog.test"}, 201, nil)

	chain, key := testenv.Cert(t, time.Time{}, "www.shop.test", "shop.pier.localhost")
	var c pier.Certificate
	e.must("POST", "/v1/apps/shop/certs", e.alice, map[string]string{"certificate": chain, "private_key": key}, 201, &c)
	if len(c.Name) != 12 || !strings.HasPrefix(c.Fingerprint, c.Name) || strings.Join(c.Domains, ",") != "shop.pier.localhost,www.shop.test" || c.ExpiresAt.Before(time.Now().Add(29*24*time.Hour)) || c.App != "shop" {
		t.Fatalf("added %+v", c)
	}
	e.apiError("POST", "/v1/apps/shop/certs", e.alice, map[string]string{"certificate": chain, "private_key": key}, 409, pier.ECONFLICT, "has this certificate already")

	var l pier.List[pier.Certificate]
	e.must("GET", "/v1/apps/shop/certs", e.alice, nil, 200, &l)
	if len(l.Items) != 1 || l.Items[0].Name != c.Name {
		t.Fatalf("list %+v", l)
	}
	keyBody := key[strings.Index(key, "\n")+1 : strings.Index(key, "\n")+30]
	for _, path := range []string{"/v1/apps/shop/certs", "/v1/apps/shop/events", "/v1/apps/shop"} {
		if _, b := e.do("GET", path, e.alice, nil); strings.Contains(string(b), keyBody) || strings.Contains(string(b), "PRIVATE") {
			t.Fatalf("%s shows the private key: %s", path, b)
		}
	}

	// Refusals, each saying what to do.
	otherChain, otherKey := testenv.Cert(t, time.Time{}, "www.shop.test")
	foreignChain, foreignKey := testenv.Cert(t, time.Time{}, "www.shop.test", "blog.test", "evil.test")
	oldChain, oldKey := testenv.Cert(t, time.Now().Add(-time.Minute), "www.shop.test")
	for _, bad := range []struct {
		cert, key  string
		status     int
		code, want string
	}{
		{foreignChain, foreignKey, 400, pier.EINVALID, "blog.test, evil.test, which are not a domain of shop: add it first with `pier domains:add blog.test -a shop`"},
		{otherChain, key, 400, pier.EINVALID, "the private key does not match the certificate"},
		{oldChain, oldKey, 400, pier.EINVALID, "the certificate expired on"},
		{"hello", otherKey, 400, pier.EINVALID, "the certificate is not PEM"},
		{otherChain, "hello", 400, pier.EINVALID, "the private key is not PEM"},
		{otherChain + otherKey, otherKey, 400, pier.EINVALID, "two files"},
		{otherChain, "", 400, pier.EINVALID, "the private key is empty"},
	} {
		e.apiError("POST", "/v1/apps/shop/certs", e.alice, map[string]string{"certificate": bad.cert, "private_key": bad.key}, bad.status, bad.code, bad.want)
	}
	// Only members of the app.
	e.apiError("POST", "/v1/apps/blog/certs", e.alice, map[string]string{"certificate": otherChain, "private_key": otherKey}, 403, pier.EFORBIDDEN, "")

	// HTTPS settings.
	var hs pier.HTTPSSettings
	e.must("GET", "/v1/apps/shop/https", e.alice, nil, 200, &hs)
	if hs != (pier.HTTPSSettings{}) {
		t.Fatalf("default https %+v", hs)
	}
	e.must("PATCH", "/v1/apps/shop/https", e.alice, map[string]bool{"https_redirect": true}, 200, &hs)
	e.must("PATCH", "/v1/apps/shop/https", e.alice, map[string]bool{"hsts": true}, 200, &hs)
	if hs != (pier.HTTPSSettings{HTTPSRedirect: true, HSTS: true}) {
		t.Fatalf("https %+v", hs)
	}
	e.apiError("PATCH", "/v1/apps/shop/https", e.alice, map[string]bool{}, 400, pier.EINVALID, "nothing to change")
	e.apiError("PATCH", "/v1/apps/shop/https", e.alice, map[string]string{"hsts": "yes"}, 400, pier.EINVALID, "")

	// Removal by name; a bad name is refused before the store.
	e.apiError("DELETE", "/v1/apps/shop/certs/xyz", e.alice, nil, 400, pier.EINVALID, "`pier certs`")
	e.apiError("DELETE", "/v1/apps/shop/certs/00000000", e.alice, nil, 404, pier.ENOTFOUND, "not found")
	e.must("DELETE", "/v1/apps/shop/certs/"+c.Name, e.alice, nil, 204, nil)
	e.must("GET", "/v1/apps/shop/certs", e.alice, nil, 200, &l)
	if len(l.Items) != 0 {
		t.Fatalf("after remove: %+v", l)
	}
	var ev pier.List[pier.Event]
	e.must("GET", "/v1/apps/shop/events", e.alice, nil, 200, &ev)
	var acts []string
	for _, x := range ev.Items {
		acts = append(acts, x.Action+" "+x.Detail)
	}
	got := strings.Join(acts, "\n")
	for _, want := range []string{"cert.add " + c.Name + " for shop.pier.localhost, www.shop.test", "cert.remove " + c.Name, "https.set hsts=on", "https.set https_redirect=on"} {
		if !strings.Contains(got, want) {
			t.Fatalf("events:\n%s\nwant %q", got, want)
		}
	}
}
