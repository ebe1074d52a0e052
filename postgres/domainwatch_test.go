package postgres_test

import (
	"context"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/pierpaas/pier/postgres"
)

// TestWatchDomains: a change to the domains made through another
// connection pool (another controller) reaches the watcher, including the
// domains an app's destruction removes.
func TestWatchDomains(t *testing.T) {
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
	if _, err := db.AddDomain(ctx, "shop", "shop.example.com", "ada"); err != nil {
		t.Fatal(err)
	}

	seen := make(chan map[string]string, 100)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.WatchDomains(wctx, slog.Default(), func(m map[string]string) { seen <- m })
	}()
	defer func() { cancel(); <-done }()
	wait := func(want map[string]string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		var last map[string]string
		for {
			select {
			case m := <-seen:
				if reflect.DeepEqual(m, want) {
					return
				}
				last = m
			case <-timeout:
				t.Fatalf("watcher saw %v, want %v", last, want)
			}
		}
	}
	wait(map[string]string{"shop.example.com": "shop"})

	if _, err := other.AddDomain(ctx, "blog", "*.blog.example.com", "ada"); err != nil {
		t.Fatal(err)
	}
	wait(map[string]string{"shop.example.com": "shop", "*.blog.example.com": "blog"})
	if err := other.RemoveDomain(ctx, "shop", "shop.example.com", "ada"); err != nil {
		t.Fatal(err)
	}
	wait(map[string]string{"*.blog.example.com": "blog"})
	if err := other.DestroyApp(ctx, "blog", "ada"); err != nil {
		t.Fatal(err)
	}
	wait(map[string]string{})
}
