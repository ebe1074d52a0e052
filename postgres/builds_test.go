package postgres_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

func TestBuildLogsAndList(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "build-app", "ada")
	mustApp(t, db, "other-app", "ada")

	// An app without builds lists none (not null, not an error).
	builds, next, err := db.ListBuilds(ctx, "build-app", pier.Page{})
	if err != nil || len(builds) != 0 || next != "" {
		t.Fatalf("no builds: %v %q %v", builds, next, err)
	}
	_, _, err = db.ListBuilds(ctx, "no-app", pier.Page{})
	wantCode(t, err, pier.ENOTFOUND)

	// Build output is whatever a program printed: invalid UTF-8 and NUL
	// bytes are stored (as U+FFFD) rather than refused by Postgres.
	var ids []int64
	for i := 1; i <= 5; i++ {
		b := &pier.Build{App: "build-app", Commit: strings.Repeat(strconv.Itoa(i), 12), Strategy: "host",
			Status: pier.BuildSucceeded, CreatedBy: "ada", Log: "-----> build " + strconv.Itoa(i) + "\n\xff\x00done\n"}
		if i == 3 {
			b.Status = pier.BuildFailed
		}
		if err := db.CreateBuild(ctx, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}
	if err := db.CreateBuild(ctx, &pier.Build{App: "other-app", CreatedBy: "ada", Log: "other"}); err != nil {
		t.Fatal(err)
	}

	got, err := db.FindBuild(ctx, "build-app", ids[2])
	if err != nil {
		t.Fatal(err)
	}
	if got.Log != "-----> build 3\n\uFFFD\uFFFDdone\n" || got.Status != pier.BuildFailed || got.Commit != "333333333333" {
		t.Fatalf("find build: %+v", got)
	}
	_, err = db.FindBuild(ctx, "other-app", ids[2])
	wantCode(t, err, pier.ENOTFOUND)
	_, err = db.FindBuild(ctx, "no-app", ids[2])
	wantCode(t, err, pier.ENOTFOUND)

	// Pages of two, newest first, without logs.
	var all []pier.Build
	p := pier.Page{Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("the cursor does not advance")
		}
		page, next, err := db.ListBuilds(ctx, "build-app", p)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d", len(page))
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		p.After = next
	}
	if len(all) != 5 {
		t.Fatalf("listed %d builds, want 5", len(all))
	}
	for i, b := range all {
		if b.ID != ids[4-i] || b.App != "build-app" || b.Log != "" || b.CreatedBy != "ada" {
			t.Fatalf("build %d: %+v", i, b)
		}
	}
	_, _, err = db.ListBuilds(ctx, "build-app", pier.Page{After: "x1"})
	wantCode(t, err, pier.EINVALID)

	// The store refuses a log over the bound (the controller keeps logs
	// under it, cutting the middle).
	big := &pier.Build{App: "build-app", CreatedBy: "ada", Log: strings.Repeat("x", pier.BuildLogMax+1)}
	wantCode(t, db.CreateBuild(ctx, big), pier.ETOOLARGE)
	ok := &pier.Build{App: "build-app", CreatedBy: "ada", Log: strings.Repeat("x", pier.BuildLogMax)}
	if err := db.CreateBuild(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if got, err := db.FindBuild(ctx, "build-app", ok.ID); err != nil || len(got.Log) != pier.BuildLogMax {
		t.Fatalf("a log of the maximum size: %d bytes, %v", len(got.Log), err)
	}

	// A release's build never carries the log.
	rel, err := db.Deploy(ctx, "build-app", ids[4], "ada")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Build == nil || rel.Build.Log != "" {
		t.Fatalf("release build %+v", rel.Build)
	}
}
