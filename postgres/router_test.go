package postgres_test

import (
	"context"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/postgres"
)

func TestRouterSettings(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "shop", "ada")

	s, err := db.RouterSettings(ctx, "shop")
	if err != nil || !s.IsZero() {
		t.Fatalf("new app: %+v %v", s, err)
	}
	_, err = db.RouterSettings(ctx, "nope")
	wantCode(t, err, pier.ENOTFOUND)

	on, limit, timeout := true, int64(10<<20), 30
	allow := []string{"10.1.2.3/8", "203.0.113.7", "203.0.113.7/32"}
	s, err = db.SetRouterSettings(ctx, "shop", pier.RouterChange{Maintenance: &on, Allow: &allow, BodyLimitBytes: &limit, TimeoutSeconds: &timeout}, "ada")
	want := pier.RouterSettings{Maintenance: true, Allow: []string{"10.0.0.0/8", "203.0.113.7"}, BodyLimitBytes: 10 << 20, TimeoutSeconds: 30}
	if err != nil || !reflect.DeepEqual(s, want) {
		t.Fatalf("set: %+v %v", s, err)
	}
	if s, err = db.RouterSettings(ctx, "shop"); err != nil || !reflect.DeepEqual(s, want) {
		t.Fatalf("read back: %+v %v", s, err)
	}

	// Unset one; the others stay.
	s, err = db.SetRouterSettings(ctx, "shop", pier.RouterChange{Unset: []string{pier.RouterMaintenance, pier.RouterAllow}}, "ada")
	if err != nil || s.Maintenance || s.Allow != nil || s.BodyLimitBytes != 10<<20 || s.TimeoutSeconds != 30 {
		t.Fatalf("unset: %+v %v", s, err)
	}

	// Refused changes change nothing.
	bad := int64(-1)
	_, err = db.SetRouterSettings(ctx, "shop", pier.RouterChange{BodyLimitBytes: &bad}, "ada")
	wantCode(t, err, pier.EINVALID)
	long := 3601
	_, err = db.SetRouterSettings(ctx, "shop", pier.RouterChange{TimeoutSeconds: &long}, "ada")
	wantCode(t, err, pier.EINVALID)
	_, err = db.SetRouterSettings(ctx, "shop", pier.RouterChange{}, "ada")
	wantCode(t, err, pier.EINVALID)
	_, err = db.SetRouterSettings(ctx, "nope", pier.RouterChange{Maintenance: &on}, "ada")
	wantCode(t, err, pier.ENOTFOUND)

	all, err := db.AllRouterSettings(ctx)
	if err != nil || len(all) != 1 || all["shop"].TimeoutSeconds != 30 {
		t.Fatalf("all: %+v %v", all, err)
	}
	// Back to the platform's behaviour: no row left.
	if _, err = db.SetRouterSettings(ctx, "shop", pier.RouterChange{Unset: []string{pier.RouterBodyLimit, pier.RouterTimeout}}, "ada"); err != nil {
		t.Fatal(err)
	}
	if all, err = db.AllRouterSettings(ctx); err != nil || len(all) != 0 {
		t.Fatalf("all after unsetting everything: %+v %v", all, err)
	}

	events, _, err := db.ListEvents(ctx, "shop", pier.Page{})
	if err != nil {
		t.Fatal(err)
	}
	var details []string
	for _, e := range events {
		if e.Action == "router.set" {
			details = append(details, e.Detail)
		}
	}
	wantDetails := []string{
		"body limit unset; timeout unset",
		"maintenance off; allow unset (everyone)",
		"maintenance on; allow 10.0.0.0/8,203.0.113.7; body limit 10485760 bytes; timeout 30s",
	}
	if !reflect.DeepEqual(details, wantDetails) {
		t.Fatalf("events %q", details)
	}
}

// TestWatchRouterSettings: a change made through another connection pool
// (another controller) reaches the watcher, and so does the removal an
// app's destruction cascades.
func TestWatchRouterSettings(t *testing.T) {
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
	on := true
	if _, err := db.SetRouterSettings(ctx, "shop", pier.RouterChange{Maintenance: &on}, "ada"); err != nil {
		t.Fatal(err)
	}

	seen := make(chan map[string]pier.RouterSettings, 100)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.WatchRouterSettings(wctx, slog.Default(), func(m map[string]pier.RouterSettings) { seen <- m })
	}()
	defer func() { cancel(); <-done }()
	wait := func(want map[string]pier.RouterSettings) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		var last map[string]pier.RouterSettings
		for {
			select {
			case m := <-seen:
				if reflect.DeepEqual(m, want) {
					return
				}
				last = m
			case <-timeout:
				t.Fatalf("watcher saw %+v, want %+v", last, want)
			}
		}
	}
	wait(map[string]pier.RouterSettings{"shop": {Maintenance: true}})

	allow := []string{"192.168.0.0/16"}
	if _, err := other.SetRouterSettings(ctx, "blog", pier.RouterChange{Allow: &allow}, "ada"); err != nil {
		t.Fatal(err)
	}
	wait(map[string]pier.RouterSettings{"shop": {Maintenance: true}, "blog": {Allow: allow}})
	if _, err := other.SetRouterSettings(ctx, "shop", pier.RouterChange{Unset: []string{pier.RouterMaintenance}}, "ada"); err != nil {
		t.Fatal(err)
	}
	wait(map[string]pier.RouterSettings{"blog": {Allow: allow}})
	if err := other.DestroyApp(ctx, "blog", "ada"); err != nil {
		t.Fatal(err)
	}
	wait(map[string]pier.RouterSettings{})
}
