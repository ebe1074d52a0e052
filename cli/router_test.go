package cli

import (
	"strings"
	"testing"
)

func TestMaintenanceCommands(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp/router", 200, `{"maintenance":false}`)
	r := e.run("", "maintenance", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "myapp is not in maintenance mode.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	api.on("PATCH /v1/apps/myapp/router", 200, `{"maintenance":true}`)
	r = e.run("", "maintenance:on", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Enabling maintenance mode for myapp... done\n" || api.last(t).Body != `{"maintenance":true}`+"\n" {
		t.Fatalf("stdout %q body %q", r.stdout, api.last(t).Body)
	}
	api.on("GET /v1/apps/myapp/router", 200, `{"maintenance":true,"timeout_seconds":30}`)
	r = e.run("", "maintenance", "-a", "myapp")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "myapp is in maintenance mode") {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = e.run("", "maintenance", "--json", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, `"timeout_seconds": 30`) {
		t.Fatalf("json %q", r.stdout)
	}
	api.on("PATCH /v1/apps/myapp/router", 200, `{"maintenance":false}`)
	r = e.run("", "maintenance:off", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Disabling maintenance mode for myapp... done\n" || api.last(t).Body != `{"maintenance":false}`+"\n" {
		t.Fatalf("stdout %q body %q", r.stdout, api.last(t).Body)
	}
	api.on("PATCH /v1/apps/myapp/router", 404, `{"error":{"code":"not_found","message":"app \"myapp\" not found"}}`)
	mustFail(t, e.run("", "maintenance:on", "-a", "myapp"), `app "myapp" not found`)
	mustFail(t, e.run("", "maintenance:on", "extra", "-a", "myapp"), "unknown command")
}

func TestRouterCommands(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp/router", 200, `{"maintenance":false}`)
	r := e.run("", "router", "-a", "myapp")
	mustOK(t, r)
	want := "=== myapp Router\nMaintenance:  off\nAllow:        everyone\nBody limit:   the platform's default\nTimeout:      the platform's default\n"
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	api.on("PATCH /v1/apps/myapp/router", 200, `{"maintenance":true,"allow":["10.0.0.0/8","203.0.113.7"],"body_limit_bytes":10000000,"timeout_seconds":90}`)
	r = e.run("", "router:set", "--allow", "10.0.0.0/8, 203.0.113.7", "--body-limit", "10MB", "--timeout", "90s", "-a", "myapp")
	mustOK(t, r)
	if b := api.last(t).Body; b != `{"allow":["10.0.0.0/8","203.0.113.7"],"body_limit_bytes":10000000,"timeout_seconds":90}`+"\n" {
		t.Fatalf("body %q", b)
	}
	want = "Updating the router settings of myapp... done\n=== myapp Router\nMaintenance:  on (visitors get a maintenance page)\nAllow:        10.0.0.0/8, 203.0.113.7\nBody limit:   10 MB (10000000 bytes)\nTimeout:      1m30s\n"
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	for _, c := range []struct{ arg, body string }{
		{"512KiB", `{"body_limit_bytes":524288}`}, {"1gib", `{"body_limit_bytes":1073741824}`},
		{"2048", `{"body_limit_bytes":2048}`}, {"1 MiB", `{"body_limit_bytes":1048576}`},
	} {
		mustOK(t, e.run("", "router:set", "--body-limit", c.arg, "-a", "myapp"))
		if b := api.last(t).Body; b != c.body+"\n" {
			t.Errorf("--body-limit %s: body %q", c.arg, b)
		}
	}
	mustOK(t, e.run("", "router:set", "--timeout", "120", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"timeout_seconds":120}`+"\n" {
		t.Fatalf("body %q", b)
	}
	mustOK(t, e.run("", "router:unset", "allow", "timeout", "allow", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"allow":null,"timeout_seconds":null}`+"\n" {
		t.Fatalf("body %q", b)
	}
	r = e.run("", "router", "--json", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, `"maintenance": false`) {
		t.Fatalf("json %q", r.stdout)
	}

	// Mistakes are caught before anything is sent.
	n := len(api.requests())
	mustFail(t, e.run("", "router:set", "-a", "myapp"), "nothing to set", "--help")
	mustFail(t, e.run("", "router:set", "--allow", "10.0.0.0/33", "-a", "myapp"), "neither a network")
	mustFail(t, e.run("", "router:set", "--allow", " , ", "-a", "myapp"), "--allow is empty", "router:unset allow")
	mustFail(t, e.run("", "router:set", "--body-limit", "lots", "-a", "myapp"), `body limit "lots" is invalid`, "10MB")
	mustFail(t, e.run("", "router:set", "--body-limit", "11GiB", "-a", "myapp"), "too large")
	mustFail(t, e.run("", "router:set", "--body-limit", "0", "-a", "myapp"), "invalid")
	mustFail(t, e.run("", "router:set", "--timeout", "1500ms", "-a", "myapp"), "whole number of seconds")
	mustFail(t, e.run("", "router:set", "--timeout", "2h", "-a", "myapp"), "1s to 1h")
	mustFail(t, e.run("", "router:set", "--timeout", "soon", "-a", "myapp"), `timeout "soon" is invalid`)
	mustFail(t, e.run("", "router:unset", "maintenance", "-a", "myapp"), "maintenance:off")
	mustFail(t, e.run("", "router:unset", "colour", "-a", "myapp"), "give allow, body-limit or timeout")
	mustFail(t, e.run("", "router:unset", "-a", "myapp"), "requires at least 1 arg")
	if len(api.requests()) != n {
		t.Fatal("a request was sent for a mistaken command line")
	}

	r = e.run("", "router:set", "--help")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "--trusted-proxies") || !strings.Contains(r.stdout, "pier router:set --allow") {
		t.Fatalf("help:\n%s", r.stdout)
	}
}
