package cli

import (
	"strings"
	"testing"
)

func TestAutoCertCommands(t *testing.T) {
	api, e := loggedIn(t)
	api.on("POST /v1/apps/myapp/certs/auto", 200, `{"app":"myapp","enabled":true,"issuing":false,"domains":[]}`)
	r := e.run("", "certs:auto:enable", "-a", "myapp")
	mustOK(t, r)
	for _, want := range []string{"Enabling automatic certificates for myapp... done", "no ACME CA configured", "pier domains:add"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("certs:auto:enable: no %q in %q", want, r.stdout)
		}
	}
	api.on("GET /v1/apps/myapp/certs/auto", 200, `{"app":"myapp","enabled":true,"issuing":true,"domains":[
		{"hostname":"shop.example.com","status":"issued","cert":"3f2a9c1b7d4e","expires_at":"2031-01-02T00:00:00Z","renew_at":"2030-12-03T00:00:00Z"},
		{"hostname":"www.example.com","status":"failed","detail":"connection refused","attempts":2,"next_attempt":"2030-01-01T00:00:00Z"}]}`)
	r = e.run("", "certs:auto", "-a", "myapp")
	mustOK(t, r)
	for _, want := range []string{"=== myapp Automatic Certificates: enabled", "shop.example.com", "issued", "3f2a9c1b7d4e", "www.example.com", "failed", "attempt 2 failed, next at", "connection refused"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("certs:auto: no %q in %q", want, r.stdout)
		}
	}
	api.on("DELETE /v1/apps/myapp/certs/auto", 200, `{"app":"myapp","enabled":false,"issuing":true,"domains":[]}`)
	r = e.run("", "certs:auto:disable", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "Disabling automatic certificates for myapp... done") {
		t.Errorf("certs:auto:disable: %q", r.stdout)
	}
	mustFail(t, e.run("", "certs:auto:enable", "extra", "-a", "myapp"), "unknown command")
}
