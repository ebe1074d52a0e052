package router_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pierpaas/pier/router"
)

// TestACMEChallenges: a token Pier knows is answered with its key
// authorization before app routing and the HTTPS redirect, even for an app
// with no process; an unknown token goes on to the app.
func TestACMEChallenges(t *testing.T) {
	_, addr := backend(t, "shop")
	rt := router.New(router.Config{Domain: "pier.test", HTTPSPort: 8443})
	rt.SetRoutes(map[string][]string{"shop": {addr}, "idle": {}})
	rt.SetDomains(map[string]string{"shop.example.test": "shop", "idle.example.test": "idle"})
	rt.SetHTTPS(map[string]router.HTTPS{"shop": {Redirect: true}})
	front := httptest.NewServer(rt)
	t.Cleanup(front.Close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	fetch := func(method, host, path string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, front.URL+path, nil)
		req.Host = host
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), string(b)
	}

	if rt.HasChallenge("tok1") {
		t.Fatal("a challenge before any was set")
	}
	rt.SetChallenges(map[string]string{"tok1": "tok1.thumbprint"})
	if !rt.HasChallenge("tok1") {
		t.Fatal("HasChallenge does not see the challenge set")
	}
	for _, host := range []string{"shop.example.test", "idle.example.test:80"} {
		code, ctype, body := fetch("GET", host, router.ACMEChallengePath+"tok1")
		if code != 200 || ctype != "text/plain" || body != "tok1.thumbprint" {
			t.Errorf("%s: challenge answered %d %q %q", host, code, ctype, body)
		}
	}
	if code, _, body := fetch("HEAD", "shop.example.test", router.ACMEChallengePath+"tok1"); code != 200 || body != "" {
		t.Errorf("HEAD: %d %q", code, body)
	}
	// Unknown token: the app's business (here, the HTTPS redirect first).
	if code, _, _ := fetch("GET", "shop.example.test", router.ACMEChallengePath+"other"); code != http.StatusPermanentRedirect {
		t.Errorf("unknown token: %d, want the app's redirect", code)
	}
	if code, _, _ := fetch("POST", "shop.example.test", router.ACMEChallengePath+"tok1"); code != http.StatusPermanentRedirect {
		t.Errorf("POST of a token: %d, want the app's answer", code)
	}
	// Swapped as a whole: the old token is gone.
	rt.SetChallenges(map[string]string{"tok2": "tok2.thumbprint"})
	if code, _, body := fetch("GET", "idle.example.test", router.ACMEChallengePath+"tok1"); code == 200 || strings.Contains(body, "thumbprint") {
		t.Errorf("a removed token is still answered: %d %q", code, body)
	}
}
