package postgres_test

import (
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

// A full disk makes Postgres fail a write with SQLSTATE 53100 (disk_full).
// Filling a real disk is cmd/pierd's TestFullDisk; here a trigger raises
// that same error from the server, in the statement and at COMMIT, and
// the store must answer pier.NoSpace with nothing changed.
func TestDiskFullIsNoSpace(t *testing.T) {
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", true)
	mustApp(t, db, "full", "ada")
	mustSetConfig(t, db, "full", pier.Config{"A": "1"})
	db.SetDataDir("/var/lib/pier/pg-test/data")

	raise := `CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device' USING ERRCODE = '53100'; END $$`
	if _, err := db.Pool().Exec(ctx, raise); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, trigger, drop string }{
		{"in the statement", `CREATE TRIGGER full_now BEFORE INSERT ON releases FOR EACH ROW EXECUTE FUNCTION disk_full()`, "full_now"},
		// Deferred: raised by COMMIT, as a WAL write that fails is.
		{"at commit", `CREATE CONSTRAINT TRIGGER full_at_commit AFTER INSERT ON releases
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION disk_full()`, "full_at_commit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := db.Pool().Exec(ctx, c.trigger); err != nil {
				t.Fatal(err)
			}
			_, err := db.SetConfig(ctx, "full", pier.ConfigChange{Set: pier.Config{"B": "2"}}, "ada")
			wantCode(t, err, pier.ENOSPACE)
			msg := pier.ErrorMessage(err)
			for _, want := range []string{"no space left on device", "nothing was changed", "free space on the volume holding /var/lib/pier/pg-test/data"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
			// The server's own words stay for the log.
			if !strings.Contains(err.Error(), "could not extend file") {
				t.Errorf("error %q lost its cause", err)
			}
			if !pier.IsNoSpace(err) {
				t.Errorf("IsNoSpace(%v) is false", err)
			}
			rels, _, err := db.ListReleases(ctx, "full", pier.Page{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(rels) != 2 || rels[0].Version != 2 {
				t.Fatalf("releases after a full disk: %+v, want v2 and v1 only", rels)
			}
			cfg, err := db.Config(ctx, "full")
			if err != nil || len(cfg) != 1 || cfg["A"] != "1" {
				t.Fatalf("config after a full disk: %v %v", cfg, err)
			}
			if _, err := db.Pool().Exec(ctx, `DROP TRIGGER `+c.drop+` ON releases`); err != nil {
				t.Fatal(err)
			}
		})
	}

	// A statement outside a transaction: the same code, with the generic
	// where (wrap does not know the directory).
	if _, err := db.Pool().Exec(ctx, `CREATE TRIGGER full_users BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION disk_full()`); err != nil {
		t.Fatal(err)
	}
	err := db.CreateUser(ctx, &pier.User{Username: "bob", Email: "bob@example.com"}, "hash")
	wantCode(t, err, pier.ENOSPACE)
	if msg := pier.ErrorMessage(err); !strings.Contains(msg, "free space on the volume holding the database server's data directory") {
		t.Errorf("message %q", msg)
	}

	// Once there is room again, the same change goes through.
	if _, err := db.Pool().Exec(ctx, `DROP TRIGGER full_users ON users`); err != nil {
		t.Fatal(err)
	}
	if rel := mustSetConfig(t, db, "full", pier.Config{"B": "2"}); rel.Version != 3 {
		t.Fatalf("after the disk was freed: v%d, want v3", rel.Version)
	}
}
