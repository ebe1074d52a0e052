package postgres_test

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/postgres"
)

func TestConfigReleases(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "cfg-app", "ada")

	steps := []struct {
		change  pier.ConfigChange
		note    string
		code    string
		want    pier.Config
		version int
	}{
		{pier.ConfigChange{Set: pier.Config{"B": "2", "A": "1"}}, "Set A, B", "", pier.Config{"A": "1", "B": "2"}, 2},
		{pier.ConfigChange{Set: pier.Config{"A": "one"}}, "Set A", "", pier.Config{"A": "one", "B": "2"}, 3},
		{pier.ConfigChange{Unset: []string{"B"}}, "Unset B", "", pier.Config{"A": "one"}, 4},
		{pier.ConfigChange{Unset: []string{"B"}}, "", pier.EINVALID, pier.Config{"A": "one"}, 4},
		{pier.ConfigChange{Set: pier.Config{"PORT": "80"}}, "", pier.EINVALID, pier.Config{"A": "one"}, 4},
		{pier.ConfigChange{}, "", pier.EINVALID, pier.Config{"A": "one"}, 4},
		{pier.ConfigChange{Set: pier.Config{"C": "x=y\nz"}, Unset: []string{"A"}}, "Set C; unset A", "", pier.Config{"C": "x=y\nz"}, 5},
		{pier.ConfigChange{Set: pier.Config{"D": strings.Repeat("v", pier.ConfigValueMax+1)}}, "", pier.ETOOLARGE, pier.Config{"C": "x=y\nz"}, 5},
		{pier.ConfigChange{Unset: []string{"C"}}, "Unset C", "", pier.Config{}, 6},
	}
	for i, s := range steps {
		rel, err := db.SetConfig(ctx, "cfg-app", s.change, "ada")
		if pier.ErrorCode(err) != s.code {
			t.Fatalf("step %d: %v, want %q", i, err, s.code)
		}
		if err == nil && (rel.Version != s.version || rel.Note != s.note || !reflect.DeepEqual(rel.Config, s.want) || rel.CreatedBy != "ada") {
			t.Fatalf("step %d: %+v", i, rel)
		}
		cfg, err := db.Config(ctx, "cfg-app")
		if err != nil || !reflect.DeepEqual(cfg, s.want) {
			t.Fatalf("step %d: config %v %v, want %v", i, cfg, err, s.want)
		}
		cur, err := db.CurrentRelease(ctx, "cfg-app")
		if err != nil || cur.Version != s.version || !reflect.DeepEqual(cur.Config, s.want) {
			t.Fatalf("step %d: current %+v %v", i, cur, err)
		}
	}
	_, err := db.SetConfig(ctx, "no-app", pier.ConfigChange{Set: pier.Config{"A": "1"}}, "ada")
	wantCode(t, err, pier.ENOTFOUND)

	r3, err := db.FindRelease(ctx, "cfg-app", 3)
	if err != nil || r3.Note != "Set A" || r3.Config["A"] != "one" {
		t.Fatalf("v3: %+v %v", r3, err)
	}
	for _, v := range []int{7, 0, -1, 1 << 40} {
		_, err = db.FindRelease(ctx, "cfg-app", v)
		wantCode(t, err, pier.ENOTFOUND)
	}
}

func TestRollback(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "rb-app", "ada")

	_, err := db.Rollback(ctx, "rb-app", 0, "ada")
	wantCode(t, err, pier.EINVALID) // only v1

	mustSetConfig(t, db, "rb-app", pier.Config{"A": "1"}) // v2
	b := &pier.Build{App: "rb-app", Commit: "0123456789abcdef", Image: "img:1", Status: pier.BuildSucceeded,
		ProcessTypes: map[string]string{"web": "./web"}, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Deploy(ctx, "rb-app", b.ID, "ada"); err != nil { // v3
		t.Fatal(err)
	}
	mustSetConfig(t, db, "rb-app", pier.Config{"B": "2"}) // v4

	for _, tc := range []struct {
		version   int
		code      string
		note      string
		newV      int
		config    pier.Config
		withBuild bool
	}{
		{4, pier.EINVALID, "", 0, nil, false},   // the current one
		{5, pier.ENOTFOUND, "", 0, nil, false},  // not yet
		{99, pier.ENOTFOUND, "", 0, nil, false}, // never
		{-1, pier.EINVALID, "", 0, nil, false},
		{0, "", "Rollback to v3", 5, pier.Config{"A": "1"}, true},
		{1, "", "Rollback to v1", 6, pier.Config{}, false},
		{0, "", "Rollback to v5", 7, pier.Config{"A": "1"}, true},
		{4, "", "Rollback to v4", 8, pier.Config{"A": "1", "B": "2"}, true},
	} {
		rel, err := db.Rollback(ctx, "rb-app", tc.version, "bob")
		if pier.ErrorCode(err) != tc.code {
			t.Fatalf("rollback to %d: %v, want %q", tc.version, err, tc.code)
		}
		if err != nil {
			continue
		}
		if rel.Version != tc.newV || rel.Note != tc.note || !reflect.DeepEqual(rel.Config, tc.config) || (rel.Build != nil) != tc.withBuild || rel.CreatedBy != "bob" {
			t.Fatalf("rollback to %d: %+v", tc.version, rel)
		}
		if tc.withBuild && (rel.Build.ID != b.ID || rel.Build.Commit != b.Commit || rel.Build.ProcessTypes["web"] != "./web") {
			t.Fatalf("rollback to %d: build %+v", tc.version, rel.Build)
		}
		if cfg, err := db.Config(ctx, "rb-app"); err != nil || !reflect.DeepEqual(cfg, tc.config) {
			t.Fatalf("rollback to %d: config %v %v", tc.version, cfg, err)
		}
	}
	_, err = db.Rollback(ctx, "no-app", 0, "ada")
	wantCode(t, err, pier.ENOTFOUND)

	// Refused rollbacks took no version: 1..8 without a gap.
	rels, _, err := db.ListReleases(ctx, "rb-app", pier.Page{Limit: 100})
	if err != nil || len(rels) != 8 {
		t.Fatalf("releases: %d %v", len(rels), err)
	}
	for i, r := range rels {
		if r.Version != 8-i {
			t.Fatalf("release %d is v%d", i, r.Version)
		}
	}
	es := allEvents(t, db, "rb-app")
	if es[0].Action != "release.rollback" || es[0].Detail != "Rollback to v4" || es[0].Actor != "bob" || es[0].App != "rb-app" {
		t.Fatalf("latest event: %+v", es[0])
	}
}

func TestReleasePagination(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "page-app", "ada")
	for i := 2; i <= 23; i++ {
		mustSetConfig(t, db, "page-app", pier.Config{"N": strconv.Itoa(i)})
	}
	for _, limit := range []int{1, 5, 10, 23, 50} {
		var versions []int
		p := pier.Page{Limit: limit}
		pages := 0
		for {
			rels, next, err := db.ListReleases(ctx, "page-app", p)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(rels) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(rels))
			}
			for _, r := range rels {
				versions = append(versions, r.Version)
			}
			if next == "" {
				break
			}
			if next != strconv.Itoa(rels[len(rels)-1].Version) {
				t.Fatalf("cursor %q", next)
			}
			p.After = next
		}
		if want := (23 + limit - 1) / limit; pages != want {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, want)
		}
		if len(versions) != 23 {
			t.Fatalf("limit %d: %v", limit, versions)
		}
		for i, v := range versions {
			if v != 23-i {
				t.Fatalf("limit %d: %v", limit, versions)
			}
		}
	}
	for _, bad := range []string{"x", "-3", "0", "v3", "1; DROP TABLE releases"} {
		_, _, err := db.ListReleases(ctx, "page-app", pier.Page{After: bad})
		wantCode(t, err, pier.EINVALID)
		_, _, err = db.ListEvents(ctx, "page-app", pier.Page{After: bad})
		wantCode(t, err, pier.EINVALID)
	}
	// A cursor past the end is an empty last page, not an error.
	rels, next, err := db.ListReleases(ctx, "page-app", pier.Page{After: "1"})
	if err != nil || len(rels) != 0 || next != "" {
		t.Fatalf("after v1: %v %q %v", rels, next, err)
	}
	rels, next, err = db.ListReleases(ctx, "page-app", pier.Page{Limit: 1000})
	if err != nil || len(rels) != 23 || next != "" {
		t.Fatalf("large limit: %d %q %v", len(rels), next, err)
	}
}

// Two pools on one database stand for two controllers: every SetConfig must
// take the next version, none twice, none skipped, and none may lose another's
// key.
func TestConcurrentSetConfig(t *testing.T) {
	t.Parallel()
	db1, dsn := newDB(t)
	ctx := testCtx(t)
	db2, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	mustUser(t, db1, "ada", false)
	mustApp(t, db1, "busy-app", "ada")

	const n = 50
	var wg sync.WaitGroup
	versions := make([]int, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		db := db1
		if i%2 == 1 {
			db = db2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("K%02d", i)
			rel, err := db.SetConfig(ctx, "busy-app", pier.ConfigChange{Set: pier.Config{key: "v"}}, "ada")
			errs[i] = err
			if err == nil {
				versions[i] = rel.Version
			}
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("SetConfig %d: %v", i, err)
		}
		if seen[versions[i]] {
			t.Fatalf("version %d twice", versions[i])
		}
		seen[versions[i]] = true
	}
	for v := 2; v <= n+1; v++ {
		if !seen[v] {
			t.Fatalf("version %d missing: %v", v, versions)
		}
	}
	cfg, err := db2.Config(ctx, "busy-app")
	if err != nil || len(cfg) != n {
		t.Fatalf("config has %d keys: %v", len(cfg), err)
	}
	cur, err := db1.CurrentRelease(ctx, "busy-app")
	if err != nil || cur.Version != n+1 || !reflect.DeepEqual(cur.Config, cfg) {
		t.Fatalf("current release v%d does not match the config: %v", cur.Version, err)
	}
	// Each release holds exactly the keys of those before it.
	rels, _, err := db1.ListReleases(ctx, "busy-app", pier.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if len(r.Config) != r.Version-1 {
			t.Fatalf("v%d has %d keys", r.Version, len(r.Config))
		}
	}
}

// A config value must never reach an event or an error message.
func TestConfigValuesStaySecret(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "secret-app", "ada")
	const canary = "canary-8f2e1c9d-value"

	mustSetConfig(t, db, "secret-app", pier.Config{"SECRET": canary, "OTHER": "x"})
	mustSetConfig(t, db, "secret-app", pier.Config{"SECRET": canary + "2"})
	mustSetConfig(t, db, "secret-app", nil, "SECRET")
	if _, err := db.Rollback(ctx, "secret-app", 0, "ada"); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, c := range []pier.ConfigChange{
		{Set: pier.Config{"PORT": canary}},
		{Set: pier.Config{"BAD": canary + "\x00"}},
		{Set: pier.Config{"BIG": canary + strings.Repeat("x", pier.ConfigValueMax)}},
		{Set: pier.Config{"OK": canary}, Unset: []string{"OK"}},
	} {
		_, err := db.SetConfig(ctx, "secret-app", c, "ada")
		if err == nil {
			t.Fatalf("%v accepted", c.Unset)
		}
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs {
		if strings.Contains(m, "canary") {
			t.Fatalf("error message holds a config value: %q", m)
		}
	}
	es := allEvents(t, db, "secret-app")
	if len(es) != 5 {
		t.Fatalf("events: %v", actions(es))
	}
	var n int
	err := db.Pool().QueryRow(ctx,
		`SELECT count(*) FROM events WHERE detail LIKE '%canary%' OR action LIKE '%canary%' OR app_name LIKE '%canary%'`).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("%d events hold a config value (%v)", n, err)
	}
	want := []string{"release.rollback:Rollback to v3", "config.unset:Unset SECRET", "config.set:Set SECRET", "config.set:Set OTHER, SECRET", "app.create:Initial release"}
	for i, e := range es {
		if got := e.Action + ":" + e.Detail; got != want[i] {
			t.Errorf("event %d: %q, want %q", i, got, want[i])
		}
	}
}
