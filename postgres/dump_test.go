package postgres_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

// dumpAll reads every table of the database at dsn through one snapshot.
func dumpAll(t *testing.T, dsn string) (*postgres.Snapshot, map[string][]byte) {
	t.Helper()
	ctx := testCtx(t)
	s, err := postgres.OpenSnapshot(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	out := map[string][]byte{}
	for _, tb := range s.Tables {
		var buf bytes.Buffer
		n, err := s.CopyTo(ctx, tb.Name, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != tb.Rows {
			t.Fatalf("%s: copied %d rows, counted %d", tb.Name, n, tb.Rows)
		}
		out[tb.Name] = buf.Bytes()
	}
	return s, out
}

func fromMap(m map[string][]byte) postgres.RestoreSource {
	return func(table string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(m[table])), nil
	}
}

// TestDumpRestore dumps a store with users, apps, builds, releases, config,
// a formation, keys and a domain, restores it into a fresh database, and
// finds every table's rows identical and the sequences past them.
func TestDumpRestore(t *testing.T) {
	db, dsn := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", true)
	mustUser(t, db, "bob", false)
	mustApp(t, db, "web-one", "ada")
	mustApp(t, db, "web-two", "bob")
	mustSetConfig(t, db, "web-one", pier.Config{"GREETING": "hello\tworld\n\\ with COPY's escapes"})
	b := &pier.Build{App: "web-one", Commit: strings.Repeat("a", 40), Strategy: pier.StrategyHost, Image: "/var/lib/pier/rt-x/builds/web-one/1",
		ProcessTypes: map[string]string{"web": "./web"}, Status: pier.BuildSucceeded, CreatedBy: "ada", Log: "built\n"}
	if err := db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Deploy(ctx, "web-one", b.ID, "ada"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Scale(ctx, "web-one", pier.Formation{"web": 2}, "ada"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddKey(ctx, &pier.Key{Username: "ada", Name: "laptop", Fingerprint: "SHA256:abc", PublicKey: "ssh-ed25519 AAAA ada"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddDomain(ctx, "web-two", "www.example.com", "bob"); err != nil {
		t.Fatal(err)
	}

	snap, before := dumpAll(t, dsn)
	if snap.Version <= 0 {
		t.Fatalf("schema version %d", snap.Version)
	}
	// Parents first: users before apps before builds before releases.
	pos := map[string]int{}
	for i, tb := range snap.Tables {
		pos[tb.Name] = i
	}
	for _, pair := range [][2]string{{"users", "apps"}, {"apps", "builds"}, {"builds", "releases"}, {"apps", "config_vars"}, {"users", "keys"}} {
		if pos[pair[0]] > pos[pair[1]] {
			t.Errorf("%s comes after %s in %v", pair[0], pair[1], snap.Tables)
		}
	}
	if _, ok := pos["goose_db_version"]; ok {
		t.Error("goose's table is dumped")
	}

	// Into a database a pierd started once: migrated, with settings rows.
	dsn2 := testenv.Database(t)
	fresh, err := postgres.Open(ctx, dsn2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.InitSetting(ctx, "bootstrap_hash", "left by a first start"); err != nil {
		t.Fatal(err)
	}
	fresh.Close()
	var progress bytes.Buffer
	if err := postgres.Restore(ctx, dsn2, snap.Version, snap.Tables, fromMap(before), &progress); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore said:\n%s", progress.String())
	_, after := dumpAll(t, dsn2)
	for name, rows := range before {
		if !bytes.Equal(rows, after[name]) {
			t.Errorf("table %s differs after the restore:\n%s\nwant\n%s", name, after[name], rows)
		}
	}

	// The sequences are past the restored ids: new rows do not collide.
	db2, err := postgres.Open(ctx, dsn2)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	mustUser(t, db2, "cyd", false)
	mustApp(t, db2, "web-three", "cyd")
	rel := mustSetConfig(t, db2, "web-one", pier.Config{"MORE": "1"})
	if rel.Version != 4 { // v1 initial, v2 config, v3 deploy
		t.Errorf("next release of web-one is v%d, want v4", rel.Version)
	}
	got, err := db2.CurrentRelease(ctx, "web-one")
	if err != nil || got.Config["GREETING"] != "hello\tworld\n\\ with COPY's escapes" {
		t.Errorf("config after restore: %v, %v", got, err)
	}

	// And a database with users is refused, untouched.
	err = postgres.Restore(ctx, dsn2, snap.Version, snap.Tables, fromMap(before), io.Discard)
	if !errors.Is(err, postgres.ErrNotEmpty) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("restore over a platform in use: %v", err)
	}
	if _, _, err := db2.AppAccess(ctx, "web-three", ""); err != nil {
		t.Errorf("the refused restore changed the database: %v", err)
	}
}

// TestRestoreDamaged: a table whose rows do not match the manifest rolls
// the whole load back.
func TestRestoreDamaged(t *testing.T) {
	db, dsn := newDB(t)
	mustUser(t, db, "ada", true)
	mustApp(t, db, "web-one", "ada")
	snap, rows := dumpAll(t, dsn)
	rows["apps"] = append(rows["apps"], rows["apps"]...) // twice the rows: a duplicate key
	dsn2 := testenv.Database(t)
	err := postgres.Restore(testCtx(t), dsn2, snap.Version, snap.Tables, fromMap(rows), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "apps") {
		t.Fatalf("damaged restore: %v", err)
	}
	if strings.Contains(err.Error(), "web-one") {
		t.Errorf("the error quotes a row: %v", err)
	}
	db2, err := postgres.Open(testCtx(t), dsn2)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if has, err := db2.HasUsers(testCtx(t)); err != nil || has {
		t.Errorf("a failed restore left users behind (%v, %v)", has, err)
	}
}
