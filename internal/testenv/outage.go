package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// CutOff makes the database of dsn (one of Database's) stop answering, as a
// crashed server would for its clients, without stopping the shared
// server: it refuses new connections and its open sessions are ended
// (SQLSTATE 57P01). The returned func lets it answer again; it also runs
// when the test ends.
func CutOff(t testing.TB, dsn string) (restore func()) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ident := pgx.Identifier{cfg.Database}.Sanitize()
	exec := func(sql string, args ...any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return admin(ctx, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, sql, args...)
			return err
		})
	}
	if err := exec("ALTER DATABASE " + ident + " ALLOW_CONNECTIONS false"); err != nil {
		t.Fatalf("testenv: cutting off %s: %v", cfg.Database, err)
	}
	if err := exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", cfg.Database); err != nil {
		t.Fatalf("testenv: ending the sessions of %s: %v", cfg.Database, err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		if err := exec("ALTER DATABASE " + ident + " ALLOW_CONNECTIONS true"); err != nil {
			t.Errorf("testenv: letting %s answer again: %v", cfg.Database, err)
		}
	}
	t.Cleanup(restore)
	return restore
}
