package postgres_test

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

const bootstrapKey = "bootstrap_token_hash"

func TestSettings(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	if _, ok, err := db.GetSetting(ctx, "k"); ok || err != nil {
		t.Fatalf("unset: %v %v", ok, err)
	}
	// Concurrent InitSetting calls agree on one value.
	var wg sync.WaitGroup
	got := make([]string, 10)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := db.InitSetting(ctx, "k", fmt.Sprint("value-", i))
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	for _, v := range got {
		if v != got[0] {
			t.Fatalf("InitSetting disagrees: %v", got)
		}
	}
	if v, ok, err := db.GetSetting(ctx, "k"); !ok || err != nil || v != got[0] {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if err := db.SetSetting(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.InitSetting(ctx, "k", "ignored"); v != "new" {
		t.Fatalf("init after set: %q", v)
	}
	if err := db.DeleteSetting(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.GetSetting(ctx, "k"); ok {
		t.Fatal("deleted setting still there")
	}
	if err := db.DeleteSetting(ctx, "k"); err != nil {
		t.Fatalf("deleting a missing setting: %v", err)
	}
}

func TestRegisterFirstUser(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	u := func(name string) *pier.User { return &pier.User{Username: name} }

	// No hash stored yet.
	wantCode(t, db.RegisterFirstUser(ctx, u("ada"), "pw", "h"), pier.EFORBIDDEN)
	if _, err := db.InitSetting(ctx, bootstrapKey, "the-hash"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hash, code string
	}{
		{"ada", "", pier.EFORBIDDEN},
		{"ada", "wrong", pier.EFORBIDDEN},
		{"ada", "the-has", pier.EFORBIDDEN},
		{"ada", "the-hash", ""},
		{"bob", "the-hash", pier.EFORBIDDEN}, // once only
	} {
		if err := db.RegisterFirstUser(ctx, u(tc.name), "pw", tc.hash); pier.ErrorCode(err) != tc.code {
			t.Fatalf("%s with %q: %v, want %q", tc.name, tc.hash, err, tc.code)
		}
	}
	ada, err := db.FindUser(ctx, "ada")
	if err != nil || !ada.Admin {
		t.Fatalf("first user: %+v %v", ada, err)
	}
	if _, ok, _ := db.GetSetting(ctx, bootstrapKey); ok {
		t.Fatal("bootstrap hash left behind")
	}
	if _, err := db.FindUser(ctx, "bob"); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("bob: %v", err)
	}
	// Even with a hash stored again, users exist: refused.
	if err := db.SetSetting(ctx, bootstrapKey, "again"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.RegisterFirstUser(ctx, u("cy"), "pw", "again"), pier.EFORBIDDEN)
}

// Of many first users registering at once, on two pools, one wins.
func TestRegisterFirstUserConcurrently(t *testing.T) {
	t.Parallel()
	db1, dsn := newDB(t)
	ctx := testCtx(t)
	db2, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, err := db1.InitSetting(ctx, bootstrapKey, "h"); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		db := db1
		if i%2 == 1 {
			db = db2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.RegisterFirstUser(ctx, &pier.User{Username: fmt.Sprintf("user-%d", i)}, "pw", "h")
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch pier.ErrorCode(err) {
		case "":
			won++
		case pier.EFORBIDDEN:
		default:
			t.Fatalf("unexpected: %v", err)
		}
	}
	users, _, err := db1.ListUsers(ctx, pier.Page{})
	if won != 1 || err != nil || len(users) != 1 || !users[0].Admin {
		t.Fatalf("%d winners, users %v (%v)", won, users, err)
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	if has, err := db.HasUsers(ctx); has || err != nil {
		t.Fatalf("has users: %v %v", has, err)
	}
	ada := &pier.User{Username: "ada", Email: "ada@example.com"}
	if err := db.CreateUser(ctx, ada, "hash-a"); err != nil || ada.ID == 0 || ada.CreatedAt.IsZero() {
		t.Fatalf("create: %+v %v", ada, err)
	}
	wantCode(t, db.CreateUser(ctx, &pier.User{Username: "ada"}, "x"), pier.ECONFLICT)
	if has, err := db.HasUsers(ctx); !has || err != nil {
		t.Fatalf("has users: %v %v", has, err)
	}
	u, hash, err := db.UserPassword(ctx, "ada")
	if err != nil || hash != "hash-a" || u.ID != ada.ID || u.Email != "ada@example.com" || u.Admin {
		t.Fatalf("password: %+v %q %v", u, hash, err)
	}
	_, _, err = db.UserPassword(ctx, "nobody")
	wantCode(t, err, pier.ENOTFOUND)
	_, err = db.FindUser(ctx, "nobody")
	wantCode(t, err, pier.ENOTFOUND)

	names := []string{"ada"}
	for i := 0; i < 11; i++ {
		name := fmt.Sprintf("user-%02d", i)
		mustUser(t, db, name, i == 3)
		names = append(names, name)
	}
	var got []string
	p := pier.Page{Limit: 4}
	for {
		us, next, err := db.ListUsers(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			got = append(got, u.Username)
		}
		if next == "" {
			break
		}
		p.After = next
	}
	if !reflect.DeepEqual(got, names) {
		t.Fatalf("users: %v", got)
	}
	_, _, err = db.ListUsers(ctx, pier.Page{After: "Bad Cursor"})
	wantCode(t, err, pier.EINVALID)
}

func TestSessions(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	ada := mustUser(t, db, "ada", true)

	u, err := db.UserForSession(ctx, ada.ID, "jti-1")
	if err != nil || u.Username != "ada" || !u.Admin {
		t.Fatalf("session: %+v %v", u, err)
	}
	_, err = db.UserForSession(ctx, ada.ID+100, "jti-1")
	wantCode(t, err, pier.EUNAUTHORIZED)

	if err := db.RevokeSession(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeSession(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	_, err = db.UserForSession(ctx, ada.ID, "jti-1")
	wantCode(t, err, pier.EUNAUTHORIZED)
	if _, err := db.UserForSession(ctx, ada.ID, "jti-2"); err != nil {
		t.Fatalf("another session: %v", err)
	}

	// Expired revocations are swept by later ones.
	if err := db.RevokeSession(ctx, "jti-old", time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeSession(ctx, "jti-3", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var jtis []string
	rows, _ := db.Pool().Query(ctx, `SELECT jti FROM revoked_sessions ORDER BY jti`)
	for rows.Next() {
		var j string
		rows.Scan(&j)
		jtis = append(jtis, j)
	}
	if rows.Err() != nil || !reflect.DeepEqual(jtis, []string{"jti-1", "jti-3"}) {
		t.Fatalf("revoked sessions: %v %v", jtis, rows.Err())
	}
}

func TestAPITokens(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustUser(t, db, "bob", false)
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)

	tokens := map[string]*pier.APIToken{
		"h-ci":      {Username: "ada", Description: "CI", Prefix: "pier_abc"},
		"h-expired": {Username: "ada", Description: "old", Prefix: "pier_def", ExpiresAt: &past},
		"h-later":   {Username: "ada", Description: "later", Prefix: "pier_ghi", ExpiresAt: &future},
		"h-bob":     {Username: "bob", Description: "bob's", Prefix: "pier_jkl"},
	}
	for _, h := range []string{"h-ci", "h-expired", "h-later", "h-bob"} {
		if err := db.CreateAPIToken(ctx, tokens[h], h); err != nil || tokens[h].ID == 0 {
			t.Fatalf("create %s: %v", h, err)
		}
	}
	wantCode(t, db.CreateAPIToken(ctx, &pier.APIToken{Username: "ada", Description: "dup"}, "h-ci"), pier.ECONFLICT)
	wantCode(t, db.CreateAPIToken(ctx, &pier.APIToken{Username: "zed", Description: "x"}, "h-zed"), pier.ENOTFOUND)

	for _, tc := range []struct {
		hash, user, code string
	}{
		{"h-ci", "ada", ""},
		{"h-later", "ada", ""},
		{"h-bob", "bob", ""},
		{"h-expired", "", pier.EUNAUTHORIZED},
		{"h-unknown", "", pier.EUNAUTHORIZED},
		{"", "", pier.EUNAUTHORIZED},
	} {
		u, err := db.UserForAPIToken(ctx, tc.hash)
		if pier.ErrorCode(err) != tc.code || (err == nil && u.Username != tc.user) {
			t.Fatalf("%s: %+v %v", tc.hash, u, err)
		}
	}
	list, err := db.ListAPITokens(ctx, "ada")
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, tok := range list {
		used := tok.LastUsedAt != nil
		if want := tok.Description != "old"; used != want {
			t.Errorf("%s: last used %v", tok.Description, tok.LastUsedAt)
		}
		if tok.Username != "ada" || tok.Prefix == "" {
			t.Errorf("token %+v", tok)
		}
	}
	// Only one's own tokens can be revoked.
	wantCode(t, db.RevokeAPIToken(ctx, "bob", tokens["h-ci"].ID), pier.ENOTFOUND)
	wantCode(t, db.RevokeAPIToken(ctx, "ada", tokens["h-ci"].ID), "")
	wantCode(t, db.RevokeAPIToken(ctx, "ada", tokens["h-ci"].ID), pier.ENOTFOUND)
	_, err = db.UserForAPIToken(ctx, "h-ci")
	wantCode(t, err, pier.EUNAUTHORIZED)
	if list, _ := db.ListAPITokens(ctx, "ada"); len(list) != 2 {
		t.Fatalf("after revoke: %v", list)
	}
	var n int
	err = db.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE action IN ('token.create', 'token.revoke') AND detail NOT LIKE '%h-%'`).Scan(&n)
	if err != nil || n != 5 {
		t.Fatalf("token events: %d %v", n, err)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustUser(t, db, "bob", false)
	pub1, fp1 := testenv.SSHKey(t)
	pub2, fp2 := testenv.SSHKey(t)
	pub3, fp3 := testenv.SSHKey(t)

	for _, tc := range []struct {
		key  pier.Key
		code string
	}{
		{pier.Key{Username: "ada", Name: "laptop", Fingerprint: fp1, PublicKey: pub1}, ""},
		{pier.Key{Username: "ada", Name: "desktop", Fingerprint: fp2, PublicKey: pub2}, ""},
		{pier.Key{Username: "bob", Name: "laptop", Fingerprint: fp1, PublicKey: pub1}, pier.ECONFLICT}, // anyone's fingerprint
		{pier.Key{Username: "ada", Name: "laptop", Fingerprint: fp3, PublicKey: pub3}, pier.ECONFLICT}, // own name
		{pier.Key{Username: "zed", Name: "x", Fingerprint: fp3, PublicKey: pub3}, pier.ENOTFOUND},
		{pier.Key{Username: "bob", Name: "laptop", Fingerprint: fp3, PublicKey: pub3}, ""},
	} {
		k := tc.key
		err := db.AddKey(ctx, &k)
		if pier.ErrorCode(err) != tc.code || (err == nil && (k.ID == 0 || k.CreatedAt.IsZero())) {
			t.Fatalf("add %s/%s: %v, want %q", k.Username, k.Name, err, tc.code)
		}
	}
	keys, err := db.ListKeys(ctx, "ada")
	if err != nil || len(keys) != 2 || keys[0].Name != "laptop" || keys[0].PublicKey != pub1 || keys[1].Fingerprint != fp2 {
		t.Fatalf("list: %+v %v", keys, err)
	}
	for fp, want := range map[string]string{fp1: "ada", fp2: "ada", fp3: "bob"} {
		if u, err := db.UserForKey(ctx, fp); err != nil || u.Username != want {
			t.Fatalf("user for %s: %+v %v", fp, u, err)
		}
	}
	_, err = db.UserForKey(ctx, "SHA256:nope")
	wantCode(t, err, pier.ENOTFOUND)

	for _, tc := range []struct {
		user, key, code string
	}{
		{"bob", fp1, pier.ENOTFOUND},       // ada's key
		{"bob", "desktop", pier.ENOTFOUND}, // ada's key's name
		{"ada", "nope", pier.ENOTFOUND},
		{"ada", fp1, ""}, // by fingerprint
		{"ada", "desktop", ""},
		{"ada", "desktop", pier.ENOTFOUND},
		{"bob", "laptop", ""}, // by name
	} {
		if err := db.RemoveKey(ctx, tc.user, tc.key); pier.ErrorCode(err) != tc.code {
			t.Fatalf("remove %s %s: %v, want %q", tc.user, tc.key, err, tc.code)
		}
	}
	for _, u := range []string{"ada", "bob"} {
		if keys, err := db.ListKeys(ctx, u); err != nil || len(keys) != 0 {
			t.Fatalf("%s keys left: %v %v", u, keys, err)
		}
	}
	_, err = db.UserForKey(ctx, fp1)
	wantCode(t, err, pier.ENOTFOUND)
}

func TestRecordEvent(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "ev-app", "ada")
	if err := db.RecordEvent(ctx, pier.Event{Actor: "ada", Action: "user.login"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordEvent(ctx, pier.Event{App: "ev-app", Actor: "ada", Action: "app.restart", Detail: "web"}); err != nil {
		t.Fatal(err)
	}
	es := allEvents(t, db, "ev-app")
	if len(es) != 2 || es[0].Action != "app.restart" || es[0].Detail != "web" || es[0].App != "ev-app" || es[0].ID <= es[1].ID || es[0].CreatedAt.IsZero() {
		t.Fatalf("events: %+v", es)
	}
	_, _, err := db.ListEvents(ctx, "no-app", pier.Page{})
	wantCode(t, err, pier.ENOTFOUND)
}

// Two processes starting at once on a new database both migrate it: the
// migration lock makes one wait for the other.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	dsn := testenv.Database(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 2 {
				errs[i] = postgres.Migrate(ctx, dsn)
				return
			}
			db, err := postgres.Open(ctx, dsn)
			if err == nil {
				_, err = db.HasUsers(ctx)
				db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := postgres.Migrate(ctx, dsn); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	_, err := postgres.Open(ctx, "postgres://user:s3cret@[bad")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad DSN: %v", err)
	}
}
