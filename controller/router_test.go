package controller_test

import (
	"reflect"
	"testing"

	"github.com/pierpaas/pier"
)

func TestRouterSettingsAPI(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)

	var s pier.RouterSettings
	e.must("GET", "/v1/apps/myapp/router", e.alice, nil, 200, &s)
	if !s.IsZero() {
		t.Fatalf("a new app: %+v", s)
	}
	e.must("PATCH", "/v1/apps/myapp/router", e.alice,
		`{"maintenance":true,"allow":["10.1.0.0/16","203.0.113.7/32"],"body_limit_bytes":10485760,"timeout_seconds":30}`, 200, &s)
	want := pier.RouterSettings{Maintenance: true, Allow: []string{"10.1.0.0/16", "203.0.113.7"}, BodyLimitBytes: 10 << 20, TimeoutSeconds: 30}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("set: %+v", s)
	}
	// Omitted: unchanged; null: back to the default.
	s = pier.RouterSettings{}
	e.must("PATCH", "/v1/apps/myapp/router", e.alice, `{"maintenance":null,"timeout_seconds":null}`, 200, &s)
	want.Maintenance, want.TimeoutSeconds = false, 0
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("after null: %+v", s)
	}
	s = pier.RouterSettings{}
	e.must("GET", "/v1/apps/myapp/router", e.alice, nil, 200, &s)
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("read back: %+v", s)
	}
	s = pier.RouterSettings{}
	e.must("PATCH", "/v1/apps/myapp/router", e.alice, `{"allow":[]}`, 200, &s)
	if s.Allow != nil {
		t.Fatalf("empty allowlist: %+v", s)
	}

	// Mistakes are refused with what to do, and change nothing.
	for _, c := range []struct{ body, want string }{
		{`{}`, "no router settings given"},
		{`{"maintenance":"yes"}`, "maintenance must be true or false"},
		{`{"maintainance":true}`, `unknown router setting "maintainance": the settings are maintenance, allow`},
		{`{"allow":"10.0.0.0/8"}`, "allow must be a list"},
		{`{"allow":["10.0.0.0/33"]}`, `allowlist entry "10.0.0.0/33" is neither a network`},
		{`{"allow":["example.com"]}`, "neither a network"},
		{`{"body_limit_bytes":-1}`, "negative"},
		{`{"body_limit_bytes":"10MB"}`, "whole number of bytes"},
		{`{"body_limit_bytes":10737418241}`, "too large"},
		{`{"timeout_seconds":0.5}`, "whole number of seconds"},
		{`{"timeout_seconds":3601}`, "1s to 1h"},
		{`[1]`, "JSON object"},
		{`{"maintenance":true} {}`, "more than one JSON value"},
	} {
		e.apiError("PATCH", "/v1/apps/myapp/router", e.alice, c.body, 400, pier.EINVALID, c.want)
	}
	many := make([]string, pier.AllowMax+1)
	for i := range many {
		many[i] = "10.0.0." + string(rune('0'+i%10))
	}
	e.apiError("PATCH", "/v1/apps/myapp/router", e.alice, map[string]any{"allow": many}, 400, pier.EINVALID, "at most 100")
	s = pier.RouterSettings{}
	e.must("GET", "/v1/apps/myapp/router", e.alice, nil, 200, &s)
	if s.BodyLimitBytes != 10<<20 || s.Maintenance {
		t.Fatalf("after refused changes: %+v", s)
	}
	e.apiError("PATCH", "/v1/apps/nope/router", e.alice, `{"maintenance":true}`, 404, pier.ENOTFOUND, "nope")

	// Only members.
	e.must("POST", "/v1/auth/register", e.admin, map[string]string{"username": "mallory", "password": "mallory's password"}, 201, nil)
	mallory := e.login("mallory", "mallory's password")
	if code, _ := e.do("PATCH", "/v1/apps/myapp/router", mallory, `{"maintenance":true}`); code != 403 && code != 404 {
		t.Fatalf("a non-member changed router settings: %d", code)
	}
	if code, _ := e.do("GET", "/v1/apps/myapp/router", "", nil); code != 401 {
		t.Fatalf("anonymous read: %d", code)
	}

	var events pier.List[pier.Event]
	e.must("GET", "/v1/apps/myapp/events", e.alice, nil, 200, &events)
	var got []string
	for _, ev := range events.Items {
		if ev.Action == "router.set" {
			got = append(got, ev.Detail)
		}
	}
	if len(got) != 3 || got[1] != "maintenance off; timeout unset" {
		t.Fatalf("router.set events: %q", got)
	}

	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	e.must("GET", "/v1/openapi.json", "", nil, 200, &doc)
	if doc.Paths["/v1/apps/{app}/router"]["patch"] == nil || doc.Paths["/v1/apps/{app}/router"]["get"] == nil {
		t.Fatal("router settings missing from the OpenAPI document")
	}
}
