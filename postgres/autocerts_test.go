package postgres_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestAutoCerts: the flag, failures with backoff, challenges (watched),
// managed certificates replaced on renewal without touching uploaded ones,
// what turning them off clears, and the issuer lock.
func TestAutoCerts(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "shop", "ada")
	for _, h := range []string{"shop.example.test", "www.example.test"} {
		if _, err := db.AddDomain(ctx, "shop", h, "ada"); err != nil {
			t.Fatal(err)
		}
	}
	uploaded, _ := mustCert(t, db, "shop", "www.example.test")

	if apps, err := db.AutoCertApps(ctx); err != nil || len(apps) != 0 {
		t.Fatalf("apps with auto certs before any: %v %v", apps, err)
	}
	if err := db.SetAutoCerts(ctx, "shop", true, "ada"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.SetAutoCerts(ctx, "nope", true, "ada"), pier.ENOTFOUND)
	apps, err := db.AutoCertApps(ctx)
	if err != nil || len(apps) != 1 || !apps[0].Enabled || !slices.Equal(apps[0].Domains, []string{"shop.example.test", "www.example.test"}) || len(apps[0].Certs) != 1 {
		t.Fatalf("apps with auto certs: %+v %v", apps, err)
	}

	// Failures: attempts count up, the next attempt backs off.
	now := time.Now()
	st, err := db.RecordAutoCertFailure(ctx, "shop", "shop.example.test", "connection refused", now)
	if err != nil || st.Attempts != 1 || !st.NextAttempt.Equal(now.Add(pier.AutoCertBackoff(1))) {
		t.Fatalf("first failure: %+v %v", st, err)
	}
	st, err = db.RecordAutoCertFailure(ctx, "shop", "shop.example.test", "timeout", now)
	if err != nil || st.Attempts != 2 || !st.NextAttempt.Equal(now.Add(pier.AutoCertBackoff(2))) {
		t.Fatalf("second failure: %+v %v", st, err)
	}
	a, err := db.AutoCertApp(ctx, "shop")
	if err != nil || a.States["shop.example.test"].Error != "timeout" || a.States["shop.example.test"].Attempts != 2 {
		t.Fatalf("state: %+v %v", a, err)
	}

	// Challenges reach a watcher.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := make(chan map[string]string, 10)
	go db.WatchACMEChallenges(wctx, slog.Default(), func(m map[string]string) { seen <- m })
	waitFor := func(want int) {
		t.Helper()
		for {
			select {
			case m := <-seen:
				if len(m) == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the watcher did not see %d challenges", want)
			}
		}
	}
	waitFor(0)
	if err := db.AddACMEChallenge(ctx, "shop", "shop.example.test", "tok", "tok.thumb"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.AddACMEChallenge(ctx, "shop", "other.example.test", "tok2", "x"), pier.ENOTFOUND)
	waitFor(1)

	// A managed certificate; its renewal replaces it, not the uploaded one.
	put := func() *pier.Certificate {
		t.Helper()
		chain, key := testenv.Cert(t, time.Time{}, "shop.example.test")
		c, err := pier.ParseCertificate(chain, key, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutManagedCert(ctx, "shop", "shop.example.test", c, chain, key); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := put()
	c2 := put()
	certs, err := db.ListCerts(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.Name)
		if c.Managed != (c.Name == c2.Name) {
			t.Errorf("%s managed=%v", c.Name, c.Managed)
		}
	}
	if len(certs) != 2 || !slices.Contains(names, c2.Name) || !slices.Contains(names, uploaded.Name) || slices.Contains(names, c1.Name) {
		t.Fatalf("after renewal: %v; want %s (renewed) and %s (uploaded)", names, c2.Name, uploaded.Name)
	}
	if a, _ := db.AutoCertApp(ctx, "shop"); a.States["shop.example.test"].Error != "" {
		t.Fatalf("a success keeps the failure: %+v", a.States)
	}

	// One issuer at a time.
	unlock, ok, err := db.IssuerLock(ctx)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok2, err := db.IssuerLock(ctx); err != nil || ok2 {
		t.Fatalf("second lock taken while held: %v %v", ok2, err)
	}
	unlock()
	unlock2, ok, err := db.IssuerLock(ctx)
	if err != nil || !ok {
		t.Fatalf("lock after unlock: %v %v", ok, err)
	}
	unlock2()

	// Off: challenges go, issued certificates stay, no more storing.
	if err := db.SetAutoCerts(ctx, "shop", false, "ada"); err != nil {
		t.Fatal(err)
	}
	waitFor(0)
	chain, key := testenv.Cert(t, time.Time{}, "shop.example.test")
	c, _ := pier.ParseCertificate(chain, key, time.Now())
	_, err = db.PutManagedCert(ctx, "shop", "shop.example.test", c, chain, key)
	wantCode(t, err, pier.ECONFLICT)
	if certs, _ := db.ListCerts(ctx, "shop"); len(certs) != 2 {
		t.Fatalf("turning off removed certificates: %+v", certs)
	}
	if got := actions(allEvents(t, db, "shop")); !slices.Contains(got, "certs.auto.enable") || !slices.Contains(got, "certs.auto.disable") || !slices.Contains(got, "cert.auto") {
		t.Fatalf("events: %v", got)
	}
}
