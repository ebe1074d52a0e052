package postgres_test

import (
	"database/sql"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	"github.com/pressly/goose/v3"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/migrations"
	"github.com/pierpaas/pier/postgres"
)

// Issue 14, finding 2: per-app uids were a hash of the name into 65,536
// values, and "payments" and "blog-75204" shared one. The store hands them
// out now, distinct among the apps that exist.
func TestAppUIDsDoNotCollide(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustUser(t, db, "bob", false)
	a := mustApp(t, db, "payments", "ada")
	b := mustApp(t, db, "blog-75204", "bob")
	inRange := func(uid int) bool {
		return uid >= postgres.DefaultAppUIDLow && uid <= postgres.DefaultAppUIDHigh
	}
	if a.UID == b.UID || !inRange(a.UID) || !inRange(b.UID) {
		t.Fatalf("uids: payments %d, blog-75204 %d; want distinct, in %d-%d", a.UID, b.UID, postgres.DefaultAppUIDLow, postgres.DefaultAppUIDHigh)
	}
	// Every read of an app carries its uid.
	for _, want := range []*pier.App{a, b} {
		got, _, err := db.AppAccess(ctx, want.Name, "ada")
		if err != nil || got.UID != want.UID {
			t.Fatalf("AppAccess(%s): uid %v, %v; want %d", want.Name, got, err, want.UID)
		}
	}
	all, _, err := db.ListApps(ctx, &pier.User{Username: "ada", Admin: true}, pier.Page{})
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %v %v", all, err)
	}
	for _, got := range all {
		if want := map[string]int{"payments": a.UID, "blog-75204": b.UID}[got.Name]; got.UID != want {
			t.Fatalf("ListApps: %s has uid %d, want %d", got.Name, got.UID, want)
		}
	}
}

// A full range refuses a new app with a message naming the flag; a freed
// uid makes room again.
func TestAppUIDsExhausted(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	if err := db.SetAppUIDs(200000, 200001); err != nil {
		t.Fatal(err)
	}
	a := mustApp(t, db, "app-a", "ada")
	b := mustApp(t, db, "app-b", "ada")
	if a.UID != 200000 || b.UID != 200001 {
		t.Fatalf("uids %d %d, want 200000 200001", a.UID, b.UID)
	}
	_, err := db.CreateApp(ctx, &pier.App{Name: "app-c"}, "ada")
	wantCode(t, err, pier.EUNAVAILABLE)
	if !strings.Contains(err.Error(), "no free app uid in 200000-200001: widen --app-uids") {
		t.Fatalf("message: %v", err)
	}
	if _, _, err := db.AppAccess(ctx, "app-c", "ada"); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("app-c exists after a refused create: %v", err)
	}
	if err := db.DestroyApp(ctx, "app-a", "ada"); err != nil {
		t.Fatal(err)
	}
	c := mustApp(t, db, "app-c", "ada")
	if c.UID != 200000 {
		t.Fatalf("app-c got uid %d, want the freed 200000", c.UID)
	}
	for _, r := range [][2]int{{0, 10}, {999, 2000}, {5000, 4999}} {
		if err := db.SetAppUIDs(r[0], r[1]); err == nil {
			t.Fatalf("range %v accepted", r)
		}
	}
}

// A destroyed app's uid is not handed to the next app while others are
// free (files it left could still be its), and never to a second existing
// app, even when the counter wraps round the range.
func TestAppUIDsNotReused(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	if err := db.SetAppUIDs(300000, 300003); err != nil {
		t.Fatal(err)
	}
	uids := map[string]int{}
	for _, n := range []string{"one", "two", "three"} {
		uids[n] = mustApp(t, db, n, "ada").UID
	}
	if err := db.DestroyApp(ctx, "two", "ada"); err != nil {
		t.Fatal(err)
	}
	four := mustApp(t, db, "four", "ada")
	if four.UID != 300003 {
		t.Fatalf("four: uid %d, want 300003 (the counter goes on past a destroyed app's)", four.UID)
	}
	// The range is full but for two's old uid: the counter wraps, skips
	// one's (still there) and takes it.
	five := mustApp(t, db, "five", "ada")
	if five.UID != uids["two"] {
		t.Fatalf("five: uid %d, want %d", five.UID, uids["two"])
	}
	seen := map[int]string{}
	all, _, err := db.ListApps(ctx, &pier.User{Username: "ada", Admin: true}, pier.Page{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if other, ok := seen[a.UID]; ok {
			t.Fatalf("%s and %s share uid %d", a.Name, other, a.UID)
		}
		seen[a.UID] = a.Name
	}
	// Moving the range elsewhere: new apps start at its bottom, old keep theirs.
	if err := db.SetAppUIDs(400000, 400009); err != nil {
		t.Fatal(err)
	}
	if six := mustApp(t, db, "six", "ada"); six.UID != 400000 {
		t.Fatalf("six: uid %d, want 400000", six.UID)
	}
}

// The migration gives the apps that exist before it distinct uids in the
// default range, and the counter continues after them.
func TestAppUIDsMigrationBackfill(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := testenv.Database(t)
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqldb, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 10); err != nil { // the schema before app uids
		t.Fatal(err)
	}
	names := []string{"payments", "blog-75204", "shop"}
	if _, err := sqldb.ExecContext(ctx, `INSERT INTO users (username, password_hash) VALUES ('ada', 'x')`); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := sqldb.ExecContext(ctx, `INSERT INTO apps (name, owner_id) SELECT $1, id FROM users`, n); err != nil {
			t.Fatal(err)
		}
	}
	db, err := postgres.Open(ctx, dsn) // applies the rest
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seen := map[int]string{}
	for _, n := range append(names, mustApp(t, db, "after", "ada").Name) {
		a, _, err := db.AppAccess(ctx, n, "ada")
		if err != nil {
			t.Fatal(err)
		}
		if a.UID < postgres.DefaultAppUIDLow || a.UID > postgres.DefaultAppUIDHigh {
			t.Fatalf("%s: uid %d outside the default range", n, a.UID)
		}
		if other, ok := seen[a.UID]; ok {
			t.Fatalf("%s and %s share uid %d", n, other, a.UID)
		}
		seen[a.UID] = n
	}
}
