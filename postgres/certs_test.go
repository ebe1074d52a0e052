package postgres_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

func mustCert(t *testing.T, db *postgres.DB, app string, names ...string) (*pier.Certificate, string) {
	t.Helper()
	chain, key := testenv.Cert(t, time.Time{}, names...)
	c, err := pier.ParseCertificate(chain, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AddCert(testCtx(t), app, c, chain, key, "ada"); err != nil {
		t.Fatal(err)
	}
	return c, key
}

// TestCerts: certificates are stored, listed without keys, removed by name
// or fingerprint prefix, go with their app, and every change (HTTPS
// settings too) reaches a watcher through another connection pool.
func TestCerts(t *testing.T) {
	t.Parallel()
	db, dsn := newDB(t)
	other, err := postgres.Open(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "shop", "ada")
	mustApp(t, db, "blog", "ada")

	seen := make(chan pier.TLSState, 100)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.WatchCerts(wctx, slog.Default(), func(s pier.TLSState) { seen <- s })
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string, ok func(pier.TLSState) bool) pier.TLSState {
		t.Helper()
		timeout := time.After(10 * time.Second)
		var last pier.TLSState
		for {
			select {
			case s := <-seen:
				if ok(s) {
					return s
				}
				last = s
			case <-timeout:
				t.Fatalf("watcher never saw %s; last %+v", what, last)
			}
		}
	}
	wait("nothing", func(s pier.TLSState) bool { return len(s.Certs) == 0 && len(s.HTTPS) == 0 })

	c1, key1 := mustCert(t, other, "shop", "www.shop.test")
	s := wait("shop's certificate", func(s pier.TLSState) bool { return len(s.Certs) == 1 })
	if got := s.Certs[0]; got.App != "shop" || got.Name != c1.Name || got.Key != key1 || !strings.Contains(got.Chain, "BEGIN CERTIFICATE") || got.Domains[0] != "www.shop.test" {
		t.Fatalf("watched %+v", got.Certificate)
	}
	wantCode(t, other.AddCert(ctx, "shop", c1, s.Certs[0].Chain, key1, "ada"), pier.ECONFLICT)
	mustCert(t, other, "shop", "api.shop.test")
	c3, _ := mustCert(t, other, "blog", "blog.test")
	wait("three certificates", func(s pier.TLSState) bool { return len(s.Certs) == 3 })

	l, err := db.ListCerts(ctx, "shop")
	if err != nil || len(l) != 2 || l[0].Fingerprint == "" {
		t.Fatalf("list %+v %v", l, err)
	}
	if _, err := db.ListCerts(ctx, "nope"); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("list of no app: %v", err)
	}

	if _, err := other.SetAppHTTPS(ctx, "shop", pier.HTTPSChange{HSTS: ptr(true)}, "ada"); err != nil {
		t.Fatal(err)
	}
	wait("shop's HSTS", func(s pier.TLSState) bool { return s.HTTPS["shop"] == pier.HTTPSSettings{HSTS: true} })
	hs, err := other.SetAppHTTPS(ctx, "shop", pier.HTTPSChange{HTTPSRedirect: ptr(true)}, "ada")
	if err != nil || hs != (pier.HTTPSSettings{HTTPSRedirect: true, HSTS: true}) {
		t.Fatalf("https %+v %v", hs, err)
	}
	wait("shop's redirect", func(s pier.TLSState) bool { return s.HTTPS["shop"].HTTPSRedirect })

	// By fingerprint prefix (with colons, as some tools print them), then by name.
	fp := c1.Fingerprint[:2] + ":" + c1.Fingerprint[2:10]
	if _, err := other.RemoveCert(ctx, "blog", fp, "ada"); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("removing shop's certificate from blog: %v", err)
	}
	gone, err := other.RemoveCert(ctx, "shop", fp, "ada")
	if err != nil || gone.Name != c1.Name {
		t.Fatalf("remove %+v %v", gone, err)
	}
	if _, err := other.RemoveCert(ctx, "blog", c3.Name, "ada"); err != nil {
		t.Fatal(err)
	}
	wait("one certificate", func(s pier.TLSState) bool { return len(s.Certs) == 1 })
	if err := other.DestroyApp(ctx, "shop", "ada"); err != nil {
		t.Fatal(err)
	}
	wait("nothing again", func(s pier.TLSState) bool { return len(s.Certs) == 0 && len(s.HTTPS) == 0 })
	acts := actions(allEvents(t, db, "blog"))
	if strings.Join(acts, ",") != "cert.remove,cert.add,app.create" && !strings.Contains(strings.Join(acts, ","), "cert.remove,cert.add") {
		t.Fatalf("events %v", acts)
	}
}

func ptr[T any](v T) *T { return &v }
