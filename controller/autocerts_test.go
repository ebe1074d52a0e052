package controller_test

import (
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestAutoCerts: automatic certificates are turned on and off by members
// only; their state lists each domain (wildcards unsupported, names an
// uploaded certificate covers left alone, the rest pending); the events.
func TestAutoCerts(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "shop"}, 201, nil)
	for _, h := range []string{"www.shop.test", "*.shop.test", "api.shop.test"} {
		e.must("POST", "/v1/apps/shop/domains", e.admin, map[string]string{"hostname": h}, 201, nil) // wildcards need an admin
	}
	chain, key := testenv.Cert(t, time.Time{}, "api.shop.test")
	e.must("POST", "/v1/apps/shop/certs", e.alice, map[string]string{"certificate": chain, "private_key": key}, 201, nil)

	var a pier.AutoCerts
	e.must("GET", "/v1/apps/shop/certs/auto", e.alice, nil, 200, &a)
	if a.Enabled || a.Issuing || len(a.Domains) != 3 {
		t.Fatalf("before: %+v", a)
	}
	e.must("POST", "/v1/apps/shop/certs/auto", e.alice, nil, 200, &a)
	want := map[string]string{"www.shop.test": pier.AutoCertPending, "*.shop.test": pier.AutoCertUnsupported, "api.shop.test": pier.AutoCertUploaded}
	if !a.Enabled || len(a.Domains) != 3 {
		t.Fatalf("enabled: %+v", a)
	}
	for _, d := range a.Domains {
		if d.Status != want[d.Hostname] {
			t.Errorf("%s: %q, want %q", d.Hostname, d.Status, want[d.Hostname])
		}
	}
	e.must("DELETE", "/v1/apps/shop/certs/auto", e.alice, nil, 200, &a)
	if a.Enabled {
		t.Fatalf("disabled: %+v", a)
	}
	var events pier.List[pier.Event]
	e.must("GET", "/v1/apps/shop/events", e.alice, nil, 200, &events)
	seen := map[string]bool{}
	for _, ev := range events.Items {
		seen[ev.Action] = true
	}
	if !seen["certs.auto.enable"] || !seen["certs.auto.disable"] {
		t.Fatalf("events: %+v", events.Items)
	}
}
