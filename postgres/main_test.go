package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newDB opens a store on a fresh database, closed when the test ends.
func newDB(t *testing.T) (*postgres.DB, string) {
	t.Helper()
	dsn := testenv.Database(t)
	db, err := postgres.Open(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, dsn
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustUser(t *testing.T, db *postgres.DB, name string, admin bool) *pier.User {
	t.Helper()
	u := &pier.User{Username: name, Email: name + "@example.com", Admin: admin}
	if err := db.CreateUser(testCtx(t), u, "hash-of-"+name); err != nil {
		t.Fatal(err)
	}
	return u
}

func mustApp(t *testing.T, db *postgres.DB, name, owner string) *pier.App {
	t.Helper()
	app := &pier.App{Name: name}
	if _, err := db.CreateApp(testCtx(t), app, owner); err != nil {
		t.Fatal(err)
	}
	return app
}

// wantCode fails unless err carries code ("" for no error).
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := pier.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func mustSetConfig(t *testing.T, db *postgres.DB, app string, set pier.Config, unset ...string) *pier.Release {
	t.Helper()
	rel, err := db.SetConfig(testCtx(t), app, pier.ConfigChange{Set: set, Unset: unset}, "ada")
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// allEvents lists every event of app, following the cursors.
func allEvents(t *testing.T, db *postgres.DB, app string) []pier.Event {
	t.Helper()
	var all []pier.Event
	p := pier.Page{Limit: 7}
	for {
		es, next, err := db.ListEvents(testCtx(t), app, p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, es...)
		if next == "" {
			return all
		}
		p.After = next
	}
}

func actions(es []pier.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Action)
	}
	return out
}
