package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestOutage cuts the store's database off, as a crash would: the errors
// its methods return then are outages, the monitor finds the database
// down, Check fails; once it answers again, the store reconnects by
// itself, the OnReconnect hooks run, and nothing is outage any more.
// Errors of bad input or of a bug never are outages.
func TestOutage(t *testing.T) {
	db, dsn := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", true)
	if err := db.Check(ctx); err != nil {
		t.Fatalf("Check of a migrated database: %v", err)
	}
	_, err := db.FindUser(ctx, "nobody")
	if pier.ErrorCode(err) != pier.ENOTFOUND || db.Outage(err) {
		t.Fatalf("not found is no outage: %v", err)
	}
	if err := db.CreateUser(ctx, &pier.User{Username: "ada"}, "x"); err == nil || db.Outage(err) {
		t.Fatalf("a duplicate user is no outage: %v", err)
	}
	for _, err := range []error{errors.New("a bug"), &pgconn.PgError{Code: "23505"}, &pgconn.PgError{Code: "42P01"}} {
		if db.Outage(err) {
			t.Errorf("Outage(%v) while up", err)
		}
	}
	if !db.DownSince().IsZero() {
		t.Fatal("down before the outage")
	}
	reconnected := make(chan struct{}, 1)
	db.OnReconnect(func() {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	})

	restore := testenv.CutOff(t, dsn)
	_, err = db.FindUser(ctx, "ada")
	if err == nil || !db.Outage(err) {
		t.Fatalf("FindUser while cut off: %v, outage %v", err, db.Outage(err))
	}
	waitFor(t, "the monitor finds the database down", func() bool { return !db.DownSince().IsZero() })
	if db.Check(ctx) == nil {
		t.Fatal("Check passed while cut off")
	}
	// While down, any failure is taken for the outage's.
	if !db.Outage(context.DeadlineExceeded) {
		t.Error("a timeout while the database is down is not an outage")
	}
	if db.Outage(pier.Errorf(pier.ENOTFOUND, "x")) {
		t.Error("a domain error is an outage")
	}

	restore()
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("OnReconnect did not run within 30s of the database answering again")
	}
	if !db.DownSince().IsZero() {
		t.Fatal("still down after reconnecting")
	}
	if err := db.Check(ctx); err != nil {
		t.Fatalf("Check after the outage: %v", err)
	}
	if u, err := db.FindUser(ctx, "ada"); err != nil || u.Username != "ada" {
		t.Fatalf("FindUser after the outage: %v %v", u, err)
	}
	if db.Outage(context.DeadlineExceeded) {
		t.Error("a timeout while up is taken for an outage")
	}

	// A lost connection is an outage, and starts one until the monitor's
	// next ping answers, which runs the hooks again (that ping comes at
	// once: DownSince may be zero again by the time it is asked).
	for _, code := range []string{"08006", "08001", "57P01", "57P02", "57P03"} {
		if !db.Outage(&pgconn.PgError{Code: code}) {
			t.Errorf("SQLSTATE %s is not taken for an outage", code)
		}
	}
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("OnReconnect did not run after the monitor's next ping")
	}
	waitFor(t, "the monitor finds the database up", func() bool { return db.DownSince().IsZero() })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
