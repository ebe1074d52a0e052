package postgres_test

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/pierpaas/pier"
)

func TestScaleAndDeploy(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "proc-app", "ada")

	// Before any build, any valid type is recorded.
	f, err := db.Scale(ctx, "proc-app", pier.Formation{"worker": 2, "clock": 0}, "ada")
	if err != nil || !reflect.DeepEqual(f, pier.Formation{"worker": 2, "clock": 0}) {
		t.Fatalf("scale before build: %v %v", f, err)
	}
	_, err = db.Scale(ctx, "proc-app", pier.Formation{"Web": 1}, "ada")
	wantCode(t, err, pier.EINVALID)
	_, err = db.Scale(ctx, "no-app", pier.Formation{"web": 1}, "ada")
	wantCode(t, err, pier.ENOTFOUND)
	if rel, _ := db.CurrentRelease(ctx, "proc-app"); rel.Version != 1 {
		t.Fatalf("scaling made a release: v%d", rel.Version)
	}

	// Builds.
	failed := &pier.Build{App: "proc-app", Status: pier.BuildFailed, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, failed); err != nil {
		t.Fatal(err)
	}
	_, err = db.Deploy(ctx, "proc-app", failed.ID, "ada")
	wantCode(t, err, pier.EINVALID)
	_, err = db.Deploy(ctx, "proc-app", failed.ID+1000, "ada")
	wantCode(t, err, pier.ENOTFOUND)
	wantCode(t, db.CreateBuild(ctx, &pier.Build{App: "no-app", CreatedBy: "ada"}), pier.ENOTFOUND)
	wantCode(t, db.CreateBuild(ctx, &pier.Build{App: "proc-app", ProcessTypes: map[string]string{"We b": "x"}}), pier.EINVALID)

	mustSetConfig(t, db, "proc-app", pier.Config{"A": "1"}) // v2
	b1 := &pier.Build{App: "proc-app", Commit: "a1b2c3d4e5f6", Strategy: "host", Image: "/builds/1",
		ProcessTypes: map[string]string{"web": "bin/web", "worker": "bin/worker"}, Status: pier.BuildSucceeded, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, b1); err != nil {
		t.Fatal(err)
	}
	got, err := db.FindBuild(ctx, "proc-app", b1.ID)
	if err != nil || got.Commit != b1.Commit || got.App != "proc-app" || !reflect.DeepEqual(got.ProcessTypes, b1.ProcessTypes) || got.Status != pier.BuildSucceeded {
		t.Fatalf("find build: %+v %v", got, err)
	}
	_, err = db.FindBuild(ctx, "proc-app", b1.ID+1000)
	wantCode(t, err, pier.ENOTFOUND)

	rel, err := db.Deploy(ctx, "proc-app", b1.ID, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != 3 || rel.Note != "Deploy a1b2c3d" || rel.Build == nil || rel.Build.ID != b1.ID || !reflect.DeepEqual(rel.Config, pier.Config{"A": "1"}) {
		t.Fatalf("deploy: %+v", rel)
	}
	// The first deploy of a build with web scales web to 1.
	f, _ = db.Formation(ctx, "proc-app")
	if !reflect.DeepEqual(f, pier.Formation{"web": 1, "worker": 2, "clock": 0}) {
		t.Fatalf("after first deploy: %v", f)
	}

	// Once a build runs, only its types may be scaled.
	for _, tc := range []struct {
		f    pier.Formation
		code string
		msg  string
	}{
		{pier.Formation{"clock": 1}, pier.EINVALID, `unknown process type "clock": this app defines web, worker`},
		{pier.Formation{"web": 3, "zzz": 1}, pier.EINVALID, `unknown process type "zzz": this app defines web, worker`},
		{pier.Formation{"web": 0}, "", ""},
		{pier.Formation{"web": 3, "worker": 1}, "", ""},
	} {
		_, err := db.Scale(ctx, "proc-app", tc.f, "ada")
		if pier.ErrorCode(err) != tc.code || (tc.msg != "" && err.Error() != tc.msg) {
			t.Fatalf("scale %v: %v", tc.f, err)
		}
	}
	f, _ = db.Formation(ctx, "proc-app")
	if !reflect.DeepEqual(f, pier.Formation{"web": 3, "worker": 1, "clock": 0}) {
		t.Fatalf("formation: %v", f)
	}

	// A later deploy leaves the formation alone, even at web=0.
	if _, err := db.Scale(ctx, "proc-app", pier.Formation{"web": 0}, "ada"); err != nil {
		t.Fatal(err)
	}
	b2 := &pier.Build{App: "proc-app", ProcessTypes: map[string]string{"web": "w"}, Status: pier.BuildSucceeded, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, b2); err != nil {
		t.Fatal(err)
	}
	rel, err = db.Deploy(ctx, "proc-app", b2.ID, "bob")
	if err != nil || rel.Version != 4 || rel.Note != "Deploy build "+strconv.FormatInt(b2.ID, 10) {
		t.Fatalf("second deploy: %+v %v", rel, err)
	}
	if f, _ := db.Formation(ctx, "proc-app"); f["web"] != 0 {
		t.Fatalf("second deploy scaled web: %v", f)
	}
	_, err = db.Scale(ctx, "proc-app", pier.Formation{"worker": 1}, "ada")
	if pier.ErrorCode(err) != pier.EINVALID || err.Error() != `unknown process type "worker": this app defines web` {
		t.Fatalf("worker after b2: %v", err)
	}
	// Config changes keep the build.
	if rel := mustSetConfig(t, db, "proc-app", pier.Config{"B": "2"}); rel.Build == nil || rel.Build.ID != b2.ID {
		t.Fatalf("config release lost the build: %+v", rel)
	}
	// Rolled back to before any build, any type may be scaled again.
	if _, err := db.Rollback(ctx, "proc-app", 2, "ada"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Scale(ctx, "proc-app", pier.Formation{"clock": 1}, "ada"); err != nil {
		t.Fatal(err)
	}

	got2 := actions(allEvents(t, db, "proc-app"))
	want := []string{"formation.scale", "release.rollback", "config.set", "release.deploy", "build.create",
		"formation.scale", "formation.scale", "formation.scale", "formation.scale", // web=0, web=3 worker=1, web=0, the first deploy's web=1
		"release.deploy", "build.create", "config.set", "build.create", "formation.scale", "app.create"}
	if !reflect.DeepEqual(got2, want) {
		t.Fatalf("events:\n%v\nwant\n%v", got2, want)
	}
	// Destroying an app with builds and releases that refer to them works.
	wantCode(t, db.DestroyApp(ctx, "proc-app", "ada"), "")
}

func TestFirstDeployKeepsChosenWebScale(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "web-app", "ada")
	if _, err := db.Scale(ctx, "web-app", pier.Formation{"web": 4}, "ada"); err != nil {
		t.Fatal(err)
	}
	b := &pier.Build{App: "web-app", ProcessTypes: map[string]string{"web": "w"}, Status: pier.BuildSucceeded, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Deploy(ctx, "web-app", b.ID, "ada"); err != nil {
		t.Fatal(err)
	}
	if f, _ := db.Formation(ctx, "web-app"); !reflect.DeepEqual(f, pier.Formation{"web": 4}) {
		t.Fatalf("formation: %v", f)
	}
	// A build without web scales nothing.
	mustApp(t, db, "worker-app", "ada")
	b = &pier.Build{App: "worker-app", ProcessTypes: map[string]string{"worker": "w"}, Status: pier.BuildSucceeded, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Deploy(ctx, "worker-app", b.ID, "ada"); err != nil {
		t.Fatal(err)
	}
	if f, _ := db.Formation(ctx, "worker-app"); len(f) != 0 {
		t.Fatalf("formation: %v", f)
	}
	// A build of another app cannot be deployed.
	_, err := db.Deploy(ctx, "web-app", b.ID, "ada")
	wantCode(t, err, pier.ENOTFOUND)
}
