package postgres_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/pierpaas/pier"
)

func TestAppLifecycle(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)

	app := &pier.App{Name: "my-app"}
	rel, err := db.CreateApp(ctx, app, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if app.ID == 0 || app.Owner != "ada" || app.CreatedAt.IsZero() {
		t.Fatalf("app not filled in: %+v", app)
	}
	if rel.Version != 1 || rel.Note != "Initial release" || rel.Build != nil || rel.App != "my-app" || rel.CreatedBy != "ada" || len(rel.Config) != 0 {
		t.Fatalf("v1: %+v", rel)
	}
	cur, err := db.CurrentRelease(ctx, "my-app")
	if err != nil || cur.Version != 1 {
		t.Fatalf("current: %+v %v", cur, err)
	}
	members, err := db.ListMembers(ctx, "my-app")
	if err != nil || !reflect.DeepEqual(members, []pier.Member{{Username: "ada", Role: pier.RoleOwner}}) {
		t.Fatalf("members: %v %v", members, err)
	}
	cfg, err := db.Config(ctx, "my-app")
	if err != nil || cfg == nil || len(cfg) != 0 {
		t.Fatalf("config: %v %v", cfg, err)
	}
	f, err := db.Formation(ctx, "my-app")
	if err != nil || f == nil || len(f) != 0 {
		t.Fatalf("formation: %v %v", f, err)
	}
	ds, err := db.ListDomains(ctx, "my-app")
	if err != nil || len(ds) != 0 {
		t.Fatalf("domains: %v %v", ds, err)
	}

	got, role, err := db.AppAccess(ctx, "my-app", "ada")
	if err != nil || role != pier.RoleOwner || got.ID != app.ID || got.Owner != "ada" {
		t.Fatalf("access: %+v %q %v", got, role, err)
	}

	_, err = db.CreateApp(ctx, &pier.App{Name: "my-app"}, "ada")
	wantCode(t, err, pier.ECONFLICT)
	if err.Error() != `app "my-app" already exists: choose another name` {
		t.Fatalf("message: %v", err)
	}
	_, err = db.CreateApp(ctx, &pier.App{Name: "Bad_Name"}, "ada")
	wantCode(t, err, pier.EINVALID)
	_, err = db.CreateApp(ctx, &pier.App{Name: "orphan"}, "nobody")
	wantCode(t, err, pier.ENOTFOUND)

	mustSetConfig(t, db, "my-app", pier.Config{"A": "1"})
	if err := db.DestroyApp(ctx, "my-app", "ada"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.DestroyApp(ctx, "my-app", "ada"), pier.ENOTFOUND)

	// Everything of the app is gone, but the name is free again and its
	// events are not the new app's.
	for name, err := range map[string]error{
		"access":  third(db.AppAccess(ctx, "my-app", "ada")),
		"current": second(db.CurrentRelease(ctx, "my-app")),
		"config":  second(db.Config(ctx, "my-app")),
		"events":  third(db.ListEvents(ctx, "my-app", pier.Page{})),
		"members": second(db.ListMembers(ctx, "my-app")),
		"domains": second(db.ListDomains(ctx, "my-app")),
		"form":    second(db.Formation(ctx, "my-app")),
		"release": second(db.FindRelease(ctx, "my-app", 1)),
		"list":    third(db.ListReleases(ctx, "my-app", pier.Page{})),
		"build":   second(db.FindBuild(ctx, "my-app", 1)),
	} {
		if pier.ErrorCode(err) != pier.ENOTFOUND || err.Error() != `app "my-app" not found` {
			t.Errorf("%s after destroy: %v", name, err)
		}
	}
	mustApp(t, db, "my-app", "ada")
	if es := allEvents(t, db, "my-app"); !reflect.DeepEqual(actions(es), []string{"app.create"}) {
		t.Fatalf("events of the new app: %v", actions(es))
	}
	// The destroyed app's events survive, with its name.
	var n int
	err = db.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE app_id IS NULL AND app_name = 'my-app'`).Scan(&n)
	if err != nil || n != 3 { // create, config.set, destroy
		t.Fatalf("surviving events: %d %v", n, err)
	}
}

func second[A any](_ A, err error) error        { return err }
func third[A, B any](_ A, _ B, err error) error { return err }

func TestListAppsVisibility(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	root := mustUser(t, db, "root", true)
	ada := mustUser(t, db, "ada", false)
	bob := mustUser(t, db, "bob", false)
	eve := mustUser(t, db, "eve", false)
	for i := 0; i < 7; i++ {
		mustApp(t, db, fmt.Sprintf("ada-%d", i), "ada")
	}
	mustApp(t, db, "bob-app", "bob")
	if err := db.AddMember(ctx, "bob-app", "ada", "bob"); err != nil {
		t.Fatal(err)
	}

	list := func(u *pier.User, limit int) []string {
		t.Helper()
		var names []string
		p := pier.Page{Limit: limit}
		for pages := 0; ; pages++ {
			apps, next, err := db.ListApps(ctx, u, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(apps) > p.Normalized().Limit || pages > 20 {
				t.Fatalf("page of %d, limit %d", len(apps), limit)
			}
			for _, a := range apps {
				names = append(names, a.Name)
			}
			if next == "" {
				return names
			}
			p.After = next
		}
	}
	for _, tc := range []struct {
		user  *pier.User
		limit int
		want  []string
	}{
		{root, 3, []string{"ada-0", "ada-1", "ada-2", "ada-3", "ada-4", "ada-5", "ada-6", "bob-app"}},
		{root, 8, []string{"ada-0", "ada-1", "ada-2", "ada-3", "ada-4", "ada-5", "ada-6", "bob-app"}},
		{ada, 2, []string{"ada-0", "ada-1", "ada-2", "ada-3", "ada-4", "ada-5", "ada-6", "bob-app"}},
		{bob, 1, []string{"bob-app"}},
		{bob, 0, []string{"bob-app"}},
		{eve, 5, nil},
	} {
		if got := list(tc.user, tc.limit); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s, limit %d: %v, want %v", tc.user.Username, tc.limit, got, tc.want)
		}
	}
	// An exact page has no next cursor.
	if apps, next, err := db.ListApps(ctx, bob, pier.Page{Limit: 1}); err != nil || len(apps) != 1 || next != "" {
		t.Fatalf("exact page: %v %q %v", apps, next, err)
	}
	for _, bad := range []string{"'; DROP TABLE apps; --", "A", "x y"} {
		_, _, err := db.ListApps(ctx, root, pier.Page{After: bad})
		wantCode(t, err, pier.EINVALID)
	}

	_, role, err := db.AppAccess(ctx, "bob-app", "ada")
	if err != nil || role != pier.RoleCollaborator {
		t.Fatalf("ada on bob-app: %q %v", role, err)
	}
	_, role, err = db.AppAccess(ctx, "bob-app", "eve")
	if err != nil || role != "" {
		t.Fatalf("eve on bob-app: %q %v", role, err)
	}
	_, _, err = db.AppAccess(ctx, "nope", "eve")
	wantCode(t, err, pier.ENOTFOUND)
}

func TestMembers(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustUser(t, db, "bob", false)
	mustUser(t, db, "cy", false)
	mustApp(t, db, "app-one", "ada")

	for _, tc := range []struct {
		name string
		do   func() error
		code string
	}{
		{"add bob", func() error { return db.AddMember(ctx, "app-one", "bob", "ada") }, ""},
		{"add bob again", func() error { return db.AddMember(ctx, "app-one", "bob", "ada") }, pier.ECONFLICT},
		{"add the owner", func() error { return db.AddMember(ctx, "app-one", "ada", "ada") }, pier.ECONFLICT},
		{"add unknown user", func() error { return db.AddMember(ctx, "app-one", "zed", "ada") }, pier.ENOTFOUND},
		{"add to unknown app", func() error { return db.AddMember(ctx, "app-two", "bob", "ada") }, pier.ENOTFOUND},
		{"add cy", func() error { return db.AddMember(ctx, "app-one", "cy", "ada") }, ""},
		{"remove owner", func() error { return db.RemoveMember(ctx, "app-one", "ada", "ada") }, pier.EINVALID},
		{"remove non-member", func() error { return db.RemoveMember(ctx, "app-one", "zed", "ada") }, pier.ENOTFOUND},
		{"remove from unknown app", func() error { return db.RemoveMember(ctx, "app-two", "bob", "ada") }, pier.ENOTFOUND},
		{"remove cy", func() error { return db.RemoveMember(ctx, "app-one", "cy", "ada") }, ""},
	} {
		if err := tc.do(); pier.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want code %q", tc.name, err, tc.code)
		}
	}
	members, err := db.ListMembers(ctx, "app-one")
	want := []pier.Member{{Username: "ada", Role: pier.RoleOwner}, {Username: "bob", Role: pier.RoleCollaborator}}
	if err != nil || !reflect.DeepEqual(members, want) {
		t.Fatalf("members: %v %v", members, err)
	}
	got := actions(allEvents(t, db, "app-one"))
	if want := []string{"member.remove", "member.add", "member.add", "app.create"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events: %v", got)
	}
}

func TestDomains(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustUser(t, db, "bob", false)
	mustApp(t, db, "app-a", "ada")
	mustApp(t, db, "app-b", "bob")

	d, err := db.AddDomain(ctx, "app-a", "WWW.Example.COM.", "ada")
	if err != nil || d.Hostname != "www.example.com" || d.App != "app-a" || d.CreatedAt.IsZero() {
		t.Fatalf("add: %+v %v", d, err)
	}
	for _, tc := range []struct {
		app, host, code string
	}{
		{"app-a", "www.example.com", pier.ECONFLICT},
		{"app-b", "www.example.com", pier.ECONFLICT},
		{"app-b", "Www.Example.com", pier.ECONFLICT},
		{"app-b", "not a host", pier.EINVALID},
		{"app-c", "c.example.com", pier.ENOTFOUND},
		{"app-b", "b.example.com", ""},
		{"app-a", "a.example.com", ""},
	} {
		_, err := db.AddDomain(ctx, tc.app, tc.host, "x")
		if pier.ErrorCode(err) != tc.code {
			t.Errorf("%s %s: %v, want %q", tc.app, tc.host, err, tc.code)
		}
		if tc.code == pier.ECONFLICT && err.Error() != `domain "www.example.com" is already in use` {
			t.Errorf("conflict message %q", err)
		}
	}
	ds, err := db.ListDomains(ctx, "app-a")
	if err != nil || len(ds) != 2 || ds[0].Hostname != "a.example.com" || ds[1].Hostname != "www.example.com" {
		t.Fatalf("list: %v %v", ds, err)
	}
	wantCode(t, db.RemoveDomain(ctx, "app-b", "www.example.com", "bob"), pier.ENOTFOUND)
	wantCode(t, db.RemoveDomain(ctx, "app-a", "www.example.com", "ada"), "")
	if _, err := db.AddDomain(ctx, "app-b", "www.example.com", "bob"); err != nil {
		t.Fatalf("a removed domain is free: %v", err)
	}
	// Destroying an app frees its domains.
	wantCode(t, db.DestroyApp(ctx, "app-b", "bob"), "")
	if _, err := db.AddDomain(ctx, "app-a", "b.example.com", "ada"); err != nil {
		t.Fatalf("a destroyed app's domain is free: %v", err)
	}
	got := actions(allEvents(t, db, "app-a"))
	if want := []string{"domain.add", "domain.remove", "domain.add", "domain.add", "app.create"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events: %v", got)
	}
}
