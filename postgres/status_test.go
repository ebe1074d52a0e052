package postgres_test

import (
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

func TestFailedReleasesAreSkipped(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "fail-app", "ada")

	v1, err := db.CurrentRelease(ctx, "fail-app")
	if err != nil || v1.Version != 1 || v1.Status != pier.ReleaseSucceeded {
		t.Fatalf("v1: %+v %v", v1, err)
	}
	b := &pier.Build{App: "fail-app", Commit: "0123456789", Strategy: "host", Image: "/builds/1",
		ProcessTypes: map[string]string{"web": "./web", "worker": "./w"}, Status: pier.BuildSucceeded, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	v2, err := db.Deploy(ctx, "fail-app", b.ID, "ada")
	if err != nil || v2.Status != pier.ReleaseSucceeded {
		t.Fatalf("a deploy is written once it serves: %+v %v", v2, err)
	}
	v3 := mustSetConfig(t, db, "fail-app", pier.Config{"A": "good"})
	if v3.Status != pier.ReleasePending {
		t.Fatalf("a config release starts pending: %+v", v3)
	}
	if err := db.MarkReleaseSucceeded(ctx, "fail-app", 3); err != nil {
		t.Fatal(err)
	}
	mustSetConfig(t, db, "fail-app", pier.Config{"A": "bad", "B": "new"}) // v4

	// A release that succeeded cannot fail; a pending one can.
	_, err = db.MarkReleaseFailed(ctx, "fail-app", 3, "web.1 crashed", "pier")
	wantCode(t, err, pier.ECONFLICT)
	_, err = db.MarkReleaseFailed(ctx, "fail-app", 9, "x", "pier")
	wantCode(t, err, pier.ENOTFOUND)
	_, err = db.MarkReleaseFailed(ctx, "no-app", 4, "x", "pier")
	wantCode(t, err, pier.ENOTFOUND)
	reason := "v4 did not come up: web.1 crashed on boot: exit status 1\nlast output of web.1:\n  boom"
	cur, err := db.MarkReleaseFailed(ctx, "fail-app", 4, reason, "pier")
	if err != nil || cur.Version != 3 || cur.Config["A"] != "good" {
		t.Fatalf("after v4 failed, current %+v %v", cur, err)
	}
	_, err = db.MarkReleaseFailed(ctx, "fail-app", 4, reason, "pier")
	wantCode(t, err, pier.ECONFLICT)

	// v3 is current again, with its config; v4 keeps its number and
	// content, marked failed.
	if cur, err := db.CurrentRelease(ctx, "fail-app"); err != nil || cur.Version != 3 {
		t.Fatalf("current %+v %v", cur, err)
	}
	if cfg, err := db.Config(ctx, "fail-app"); err != nil || len(cfg) != 1 || cfg["A"] != "good" {
		t.Fatalf("config after the failure: %v %v", cfg, err)
	}
	v4, err := db.FindRelease(ctx, "fail-app", 4)
	if err != nil || v4.Status != pier.ReleaseFailed || v4.Failure != reason || v4.FailedAt == nil || v4.Config["A"] != "bad" {
		t.Fatalf("v4 %+v %v", v4, err)
	}
	es := allEvents(t, db, "fail-app")
	if es[0].Action != "release.fail" || es[0].Actor != "pier" ||
		es[0].Detail != "release v4 failed: v4 did not come up: web.1 crashed on boot: exit status 1; v3 restored" {
		t.Fatalf("event %+v", es[0])
	}

	// New releases build on the current one, and take the next number.
	v5 := mustSetConfig(t, db, "fail-app", pier.Config{"C": "3"})
	if v5.Version != 5 || v5.Config["A"] != "good" || v5.Config["B"] != "" || v5.Build == nil || v5.Build.ID != b.ID {
		t.Fatalf("v5 %+v", v5)
	}
	// Scaling checks the types of the current release's build.
	if _, err := db.Scale(ctx, "fail-app", pier.Formation{"worker": 1}, "ada"); err != nil {
		t.Fatal(err)
	}

	// v5 fails too: a rollback without a version goes to the last release
	// before the current one that did not fail.
	if _, err := db.MarkReleaseFailed(ctx, "fail-app", 5, "no", "pier"); err != nil {
		t.Fatal(err)
	}
	rb, err := db.Rollback(ctx, "fail-app", 0, "ada")
	if err != nil || rb.Version != 6 || rb.Note != "Rollback to v2" || rb.Status != pier.ReleasePending {
		t.Fatalf("rollback %+v %v", rb, err)
	}
	// Rolling back to a failed release is a new try of it.
	rb, err = db.Rollback(ctx, "fail-app", 4, "ada")
	if err != nil || rb.Version != 7 || rb.Config["A"] != "bad" {
		t.Fatalf("rollback to a failed release %+v %v", rb, err)
	}
	_, err = db.Rollback(ctx, "fail-app", 8, "ada")
	wantCode(t, err, pier.ENOTFOUND)

	// The listing shows every release, the failed ones marked.
	rels, _, err := db.ListReleases(ctx, "fail-app", pier.Page{})
	if err != nil || len(rels) != 7 {
		t.Fatalf("releases %d %v", len(rels), err)
	}
	var statuses []string
	for _, r := range rels {
		statuses = append(statuses, r.Status)
	}
	if got := strings.Join(statuses, " "); got != "pending pending failed failed succeeded succeeded succeeded" {
		t.Fatalf("statuses %s", got)
	}

	// A failure mark is marked once, and a long reason is cut.
	if _, err := db.MarkReleaseFailed(ctx, "fail-app", 7, strings.Repeat("x", 10000), "pier"); err != nil {
		t.Fatal(err)
	}
	v7, _ := db.FindRelease(ctx, "fail-app", 7)
	if len(v7.Failure) > pier.ReleaseFailureMax+len("…") {
		t.Fatalf("failure of %d bytes kept", len(v7.Failure))
	}
	if es := allEvents(t, db, "fail-app"); len(es[0].Detail) > 400 {
		t.Fatalf("event detail of %d bytes", len(es[0].Detail))
	}
	// v6 is current; v7 failing leaves it so.
	if cur, _ := db.CurrentRelease(ctx, "fail-app"); cur.Version != 6 {
		t.Fatalf("current v%d", cur.Version)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "ada", false)
	mustApp(t, db, "lim-app", "ada")
	s := func(v string) *string { return &v }

	l, err := db.Limits(ctx, "lim-app")
	if err != nil || l == nil || len(l) != 0 {
		t.Fatalf("no limits: %v %v", l, err)
	}
	_, err = db.Limits(ctx, "no-app")
	wantCode(t, err, pier.ENOTFOUND)

	// Before a build, any type.
	l, err = db.SetLimits(ctx, "lim-app", pier.LimitsChange{Memory: map[string]*string{"web": s("512Mi"), "clock": s("64Mi")}, CPU: map[string]*string{"web": s("500m")}}, "ada")
	if err != nil || len(l) != 2 || l["web"] != (pier.Limits{Memory: "512Mi", CPU: "500m"}) || l["clock"].Memory != "64Mi" {
		t.Fatalf("set: %v %v", l, err)
	}
	_, err = db.SetLimits(ctx, "lim-app", pier.LimitsChange{Memory: map[string]*string{"web": s("512MB")}}, "ada")
	wantCode(t, err, pier.EINVALID)
	_, err = db.SetLimits(ctx, "lim-app", pier.LimitsChange{CPU: map[string]*string{"clock": nil}}, "ada")
	wantCode(t, err, pier.EINVALID) // not set: nothing to unset
	_, err = db.SetLimits(ctx, "no-app", pier.LimitsChange{CPU: map[string]*string{"web": s("1")}}, "ada")
	wantCode(t, err, pier.ENOTFOUND)

	// Setting a limit creates no release.
	if cur, _ := db.CurrentRelease(ctx, "lim-app"); cur.Version != 1 {
		t.Fatalf("limits made release v%d", cur.Version)
	}

	// Once there is a build, only its types get limits; any can be unset.
	b := &pier.Build{App: "lim-app", Strategy: pier.StrategyImage, Image: "nginx:1.27", ProcessTypes: map[string]string{"web": ""}, Status: pier.BuildSucceeded, CreatedBy: "ada"}
	if err := db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	rel, err := db.Deploy(ctx, "lim-app", b.ID, "ada")
	if err != nil || rel.Note != "Deploy nginx:1.27" {
		t.Fatalf("deploy %+v %v", rel, err)
	}
	_, err = db.SetLimits(ctx, "lim-app", pier.LimitsChange{Memory: map[string]*string{"worker": s("1Gi")}}, "ada")
	if pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), `unknown process type "worker": this app defines web`) {
		t.Fatalf("limit of an unknown type: %v", err)
	}
	l, err = db.SetLimits(ctx, "lim-app", pier.LimitsChange{Memory: map[string]*string{"clock": nil, "web": nil}}, "ada")
	if err != nil || len(l) != 1 || l["web"] != (pier.Limits{CPU: "500m"}) {
		t.Fatalf("unset: %v %v", l, err)
	}
	if l, _ := db.Limits(ctx, "lim-app"); len(l) != 1 || l["web"].CPU != "500m" || l["web"].Memory != "" {
		t.Fatalf("stored: %v", l)
	}
	es := allEvents(t, db, "lim-app")
	var details []string
	for _, e := range es {
		if e.Action == "limits.set" {
			details = append(details, e.Detail)
		}
	}
	if strings.Join(details, " | ") != "clock memory unset; web memory unset | clock memory=64Mi; web memory=512Mi cpu=500m" {
		t.Fatalf("events %q", details)
	}

	// An image build's image is checked.
	err = db.CreateBuild(ctx, &pier.Build{App: "lim-app", Strategy: pier.StrategyImage, Image: "Not An Image", CreatedBy: "ada"})
	wantCode(t, err, pier.EINVALID)

	// Limits go with their app.
	if err := db.DestroyApp(ctx, "lim-app", "ada"); err != nil {
		t.Fatal(err)
	}
	mustApp(t, db, "lim-app", "ada")
	if l, _ := db.Limits(ctx, "lim-app"); len(l) != 0 {
		t.Fatalf("a new app of the same name has limits %v", l)
	}
}
