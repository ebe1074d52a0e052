package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertsCommands(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp/certs", 200, `{"items":[]}`)
	r := e.run("", "certs", "-a", "myapp")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "myapp has no TLS certificates") {
		t.Fatalf("stdout %q", r.stdout)
	}
	api.on("GET /v1/apps/myapp/certs", 200, `{"items":[{"name":"3f2a9c1b7d4e","app":"myapp","domains":["a.example.test","b.example.test"],"expires_at":"2031-01-02T00:00:00Z","fingerprint":"3f2a9c1b7d4e00","issuer":"CN=Test CA"}]}`)
	r = e.run("", "certs", "-a", "myapp")
	mustOK(t, r)
	if want := "=== myapp Certificates\nNAME          DOMAINS                         EXPIRES           ISSUER\n3f2a9c1b7d4e  a.example.test, b.example.test  2031-01-02 00:00  CN=Test CA\n"; r.stdout != want {
		t.Fatalf("stdout:\n%q\nwant:\n%q", r.stdout, want)
	}
	r = e.run("", "certs", "--json", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, `"fingerprint": "3f2a9c1b7d4e00"`) {
		t.Fatalf("json %s", r.stdout)
	}

	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	os.WriteFile(key, []byte("-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"), 0o600)
	api.on("POST /v1/apps/myapp/certs", 201, `{"name":"3f2a9c1b7d4e","app":"myapp","domains":["a.example.test"],"expires_at":"2031-01-02T00:00:00Z"}`)
	r = e.run("", "certs:add", cert, key, "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Adding certificate 3f2a9c1b7d4e to myapp... done\nIt serves a.example.test until 2031-01-02 00:00.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	if b := api.last(t).Body; b != `{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n","private_key":"-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"}`+"\n" {
		t.Fatalf("body %q", b)
	}
	// The server's refusal is shown as is.
	api.on("POST /v1/apps/myapp/certs", 400, `{"error":{"code":"invalid","message":"the certificate is for evil.test, which is not a domain of myapp"}}`)
	mustFail(t, e.run("", "certs:add", cert, key, "-a", "myapp"), "which is not a domain of myapp")

	// Mistakes are caught before anything is sent.
	n := len(api.requests())
	mustFail(t, e.run("", "certs:add", filepath.Join(dir, "nope.pem"), key, "-a", "myapp"), "does not exist")
	os.WriteFile(filepath.Join(dir, "text"), []byte("hello"), 0o644)
	mustFail(t, e.run("", "certs:add", cert, filepath.Join(dir, "text"), "-a", "myapp"), "is not PEM")
	mustFail(t, e.run("", "certs:add", cert, "-a", "myapp"), "accepts 2 arg")
	mustFail(t, e.run("", "certs:remove", "xyz", "-a", "myapp"), "is not a name")
	mustFail(t, e.run("", "certs:remove", "3f2a9c1b7d4e", "-a", "myapp"), "pass --confirm 3f2a9c1b7d4e")
	mustFail(t, e.run("", "certs:remove", "3f2a9c1b7d4e", "-a", "myapp", "--confirm", "other"), "does not match")
	mustFail(t, e.run("", "https:redirect", "maybe", "-a", "myapp"), "neither on nor off")
	if len(api.requests()) != n {
		t.Fatal("a request was sent for a mistaken command line")
	}

	api.on("DELETE /v1/apps/myapp/certs/3f2a9c1b7d4e", 204, "")
	r = e.run("", "certs:remove", "3f2a9c1b7d4e", "-a", "myapp", "--confirm", "3f2a9c1b7d4e")
	mustOK(t, r)
	if r.stdout != "Removing certificate 3f2a9c1b7d4e from myapp... done\n" || api.last(t).Method != "DELETE" {
		t.Fatalf("stdout %q", r.stdout)
	}

	api.on("PATCH /v1/apps/myapp/https", 200, `{"https_redirect":true,"hsts":false}`)
	r = e.run("", "https:redirect", "on", "-a", "myapp")
	mustOK(t, r)
	if b := api.last(t).Body; b != `{"https_redirect":true}`+"\n" || r.stdout != "myapp: HTTPS redirect on, HSTS off\n" {
		t.Fatalf("body %q stdout %q", b, r.stdout)
	}
	mustOK(t, e.run("", "https:hsts", "off", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"hsts":false}`+"\n" {
		t.Fatalf("body %q", b)
	}
	api.on("GET /v1/apps/myapp/https", 200, `{"https_redirect":false,"hsts":true}`)
	r = e.run("", "https:hsts", "-a", "myapp", "--json")
	mustOK(t, r)
	if !strings.Contains(r.stdout, `"hsts": true`) {
		t.Fatalf("json %s", r.stdout)
	}
}
