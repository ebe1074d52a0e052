package controller_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
)

// gatedScheduler records every deployment it is asked to apply, and fails
// those its gate says to, as a scheduler whose processes do not come up.
type gatedScheduler struct {
	recordingScheduler
	gmu      sync.Mutex
	gate     func(d pier.Deployment) error
	attempts []pier.Deployment
}

func (s *gatedScheduler) Apply(ctx context.Context, d pier.Deployment) error {
	s.gmu.Lock()
	s.attempts = append(s.attempts, d)
	gate := s.gate
	s.gmu.Unlock()
	if gate != nil {
		if err := gate(d); err != nil {
			return err
		}
	}
	return s.recordingScheduler.Apply(ctx, d)
}

func (s *gatedScheduler) setGate(g func(d pier.Deployment) error) {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	s.gate = g
}

// attempted returns the deployments asked for since the last call.
func (s *gatedScheduler) attempted() []pier.Deployment {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	out := s.attempts
	s.attempts = nil
	return out
}

// noImages is a scheduler that cannot run images, as the local one.
type noImages struct{ gatedScheduler }

func (*noImages) CanRunImages() error {
	return pier.Errorf(pier.EUNAVAILABLE, "this Pier runs apps with the local scheduler, which cannot run images: use git push, or run pierd with --scheduler=kubernetes")
}

// failWhen fails, as a rollout failure, the deployments where A=bad.
func failWhen(d pier.Deployment) error {
	if d.Release.Config["A"] == "bad" {
		return pier.Errorf(pier.EROLLOUT, "v%d did not come up: web: 0/1 new processes ready within 5m", d.Release.Version)
	}
	return nil
}

func (e *env) events(app string) []pier.Event {
	var l pier.List[pier.Event]
	e.must("GET", "/v1/apps/"+app+"/events", e.alice, nil, 200, &l)
	return l.Items
}

func TestFailedRolloutRestoresThePreviousRelease(t *testing.T) {
	sched := &gatedScheduler{}
	e := newEnvWith(t, sched)
	ctx := context.Background()
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	if _, err := e.rec.Deploy(ctx, fakeStrategy{res: webWorker}, controller.DeployRequest{App: "myapp", User: "alice", Commit: "c0ffee1234"}); err != nil {
		t.Fatal(err)
	}
	var rel pier.Release
	e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"A": "good"}, 200, &rel)
	if rel.Version != 3 || rel.Status != pier.ReleaseSucceeded {
		t.Fatalf("v3 is answered once it runs: %+v", rel)
	}
	sched.attempted()

	// A config the app does not come up with: v4 is marked failed, v3 is
	// applied again, and the answer says so.
	sched.setGate(failWhen)
	e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"A": "bad"}, 422, pier.EROLLOUT,
		"release v4 failed, so v3 was restored: v4 did not come up: web: 0/1 new processes ready within 5m")
	tries := sched.attempted()
	if len(tries) != 2 || tries[0].Release.Version != 4 || tries[1].Release.Version != 3 || tries[1].Release.Config["A"] != "good" || tries[1].Formation["web"] != 1 {
		t.Fatalf("applied %+v", tries)
	}
	rels := e.releases("myapp")
	if len(rels) != 4 || rels[0].Version != 4 || rels[0].Status != pier.ReleaseFailed || !strings.Contains(rels[0].Failure, "0/1 new processes ready") || rels[0].FailedAt == nil {
		t.Fatalf("v4 %+v", rels[0])
	}
	var info pier.AppInfo
	e.must("GET", "/v1/apps/myapp", e.alice, nil, 200, &info)
	if info.Release.Version != 3 {
		t.Fatalf("current release v%d", info.Release.Version)
	}
	var cfg pier.Config
	e.must("GET", "/v1/apps/myapp/config", e.alice, nil, 200, &cfg)
	if cfg["A"] != "good" {
		t.Fatalf("config after the failure %v", cfg)
	}
	ev := e.events("myapp")[0]
	if ev.Action != "release.fail" || ev.Actor != "pier" || ev.Detail != "release v4 failed: v4 did not come up: web: 0/1 new processes ready within 5m; v3 restored" {
		t.Fatalf("event %+v", ev)
	}

	// Rolling back to the failed release is a new try: v5 fails, v3 again.
	e.apiError("POST", "/v1/apps/myapp/releases/rollback", e.alice, map[string]int{"version": 4}, 422, pier.EROLLOUT, "release v5 failed, so v3 was restored")
	// A rollback without a version goes to the last good one before v3.
	e.must("POST", "/v1/apps/myapp/releases/rollback", e.alice, nil, 201, &rel)
	if rel.Version != 6 || rel.Note != "Rollback to v2" || rel.Status != pier.ReleaseSucceeded {
		t.Fatalf("rollback %+v", rel)
	}
	sched.attempted()

	// A transient error (the API server unreachable) marks nothing: the
	// change is recorded, pending, and the next converge applies it.
	sched.setGate(func(pier.Deployment) error { return errors.New("dial tcp 10.0.0.1:6443: connect: connection refused") })
	e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"B": "1"}, 200, &rel)
	if rel.Version != 7 || rel.Status != pier.ReleasePending {
		t.Fatalf("release after a transient failure %+v", rel)
	}
	if rels := e.releases("myapp"); rels[0].Status != pier.ReleasePending {
		t.Fatalf("a transient failure marked v7 %s", rels[0].Status)
	}
	sched.setGate(failWhen)
	if err := e.rec.Converge(ctx, "myapp"); err != nil {
		t.Fatal(err)
	}
	if rels := e.releases("myapp"); rels[0].Version != 7 || rels[0].Status != pier.ReleaseSucceeded {
		t.Fatalf("v7 once applied: %+v", rels[0])
	}

	// A release that ran is never marked failed: a scale whose new
	// processes do not come up is reported, and rolls nothing back.
	sched.setGate(func(d pier.Deployment) error {
		if d.Formation["web"] == 3 {
			return pier.Errorf(pier.EROLLOUT, "v%d did not come up: web: 2/3 processes ready within 5m", d.Release.Version)
		}
		return nil
	})
	e.apiError("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"web": 3}, 422, pier.EROLLOUT, "v7 ran before this, so it is neither marked failed nor rolled back")
	if rels := e.releases("myapp"); rels[0].Version != 7 || rels[0].Status != pier.ReleaseSucceeded {
		t.Fatalf("a failed scale marked v7: %+v", rels[0])
	}
	var f pier.Formation
	e.must("GET", "/v1/apps/myapp/formation", e.alice, nil, 200, &f)
	if f["web"] != 3 {
		t.Fatalf("the scale is recorded: %v", f)
	}
	e.must("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"web": 1}, 200, nil)

	// A git push whose processes do not come up is on record as a failed
	// release, never current, and the scheduler is brought back to the
	// current release.
	sched.setGate(func(d pier.Deployment) error {
		if d.Release.Build != nil && d.Release.Build.Commit == "badbadbad0" {
			return pier.Errorf(pier.EROLLOUT, "v%d did not come up: web.1 crashed on boot", d.Release.Version)
		}
		return nil
	})
	sched.attempted()
	_, err := e.rec.Deploy(ctx, fakeStrategy{res: webWorker}, controller.DeployRequest{App: "myapp", User: "alice", Commit: "badbadbad0", Log: io.Discard})
	if !errors.Is(err, pier.ErrRolloutFailed) || !strings.Contains(err.Error(), "v8 did not come up") {
		t.Fatalf("failed push: %v", err)
	}
	tries = sched.attempted()
	rels = e.releases("myapp")
	if len(rels) != 8 || len(tries) != 2 || tries[1].Release.Version != 7 {
		t.Fatalf("failed push: %d releases, applied %+v", len(rels), tries)
	}
	if v8 := rels[0]; v8.Version != 8 || v8.Status != pier.ReleaseFailed || !strings.Contains(v8.Failure, "web.1 crashed on boot") || v8.Build == nil || v8.Build.Commit != "badbadbad0" {
		t.Fatalf("the failed push's release: %+v", v8)
	}
	info = pier.AppInfo{}
	e.must("GET", "/v1/apps/myapp", e.alice, nil, 200, &info)
	if info.Release.Version != 7 {
		t.Fatalf("current release v%d after a failed push, want v7", info.Release.Version)
	}
	if ev := e.events("myapp")[0]; ev.Action != "release.fail" || !strings.Contains(ev.Detail, "release v8 (Deploy badbadb) failed: v8 did not come up: web.1 crashed on boot; v7 stays current") {
		t.Fatalf("event %+v", ev)
	}
}

func TestLimitsReachTheScheduler(t *testing.T) {
	sched := &gatedScheduler{}
	e := newEnvWith(t, sched)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	if _, err := e.rec.Deploy(context.Background(), fakeStrategy{res: webWorker}, controller.DeployRequest{App: "myapp", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	var l map[string]pier.Limits
	e.must("GET", "/v1/apps/myapp/limits", e.alice, nil, 200, &l)
	if l == nil || len(l) != 0 {
		t.Fatalf("no limits: %v", l)
	}
	e.must("PATCH", "/v1/apps/myapp/limits", e.alice, map[string]any{"memory": map[string]string{"web": "512Mi"}, "cpu": map[string]string{"web": "500m", "worker": "1.5"}}, 200, &l)
	if len(l) != 2 || l["web"] != (pier.Limits{Memory: "512Mi", CPU: "500m"}) || l["worker"] != (pier.Limits{CPU: "1.5"}) {
		t.Fatalf("limits %v", l)
	}
	d := sched.last(t)
	if d.Release.Version != 2 || d.Limits["web"].Memory != "512Mi" || d.Limits["worker"].CPU != "1.5" {
		t.Fatalf("applied %+v", d)
	}
	if n := len(e.releases("myapp")); n != 2 {
		t.Fatalf("limits made a release: %d releases", n)
	}
	// Every later Apply carries them.
	e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"A": "1"}, 200, nil)
	if d := sched.last(t); d.Release.Version != 3 || d.Limits["web"].Memory != "512Mi" {
		t.Fatalf("applied %+v", d)
	}
	e.must("PATCH", "/v1/apps/myapp/limits", e.alice, map[string]any{"memory": map[string]any{"web": nil}}, 200, &l)
	if d := sched.last(t); d.Limits["web"] != (pier.Limits{CPU: "500m"}) {
		t.Fatalf("applied %+v", d)
	}
	var info pier.AppInfo
	e.must("GET", "/v1/apps/myapp", e.alice, nil, 200, &info)
	if info.Limits["worker"].CPU != "1.5" {
		t.Fatalf("info %+v", info.Limits)
	}

	e.apiError("PATCH", "/v1/apps/myapp/limits", e.alice, map[string]any{"memory": map[string]string{"web": "512m"}}, 400, pier.EINVALID, "for megabytes write 512M or 512Mi")
	e.apiError("PATCH", "/v1/apps/myapp/limits", e.alice, map[string]any{"cpu": map[string]string{"web": "0"}}, 400, pier.EINVALID, "cpu limit 0 is zero")
	e.apiError("PATCH", "/v1/apps/myapp/limits", e.alice, map[string]any{"memory": map[string]string{"clock": "1Gi"}}, 400, pier.EINVALID, `unknown process type "clock"`)
	e.apiError("PATCH", "/v1/apps/myapp/limits", e.alice, map[string]any{}, 400, pier.EINVALID, "no limits given")
	e.apiError("PATCH", "/v1/apps/myapp/limits", e.alice, map[string]any{"disk": map[string]string{"web": "1Gi"}}, 400, pier.EINVALID, "disk")
	e.apiError("PATCH", "/v1/apps/myapp/limits", e.admin+"x", map[string]any{"cpu": map[string]string{"web": "1"}}, 401, pier.EUNAUTHORIZED, "")
}

func TestBuildsCreateDeploysAnImage(t *testing.T) {
	sched := &gatedScheduler{}
	e := newEnvWith(t, sched)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)

	e.apiError("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": "Team/App:1"}, 400, pier.EINVALID, "use [registry[:port]/]path[:tag][@sha256:digest]")
	e.apiError("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{}, 400, pier.EINVALID, "no image reference given")
	e.apiError("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": "nginx:1.27", "procfile": "web ./server"}, 400, pier.EINVALID, "Procfile line 1")
	e.apiError("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": "nginx:1.27", "procfile": "Web: x"}, 400, pier.EINVALID, `process type "Web" is invalid`)
	if n := len(e.releases("myapp")); n != 1 {
		t.Fatalf("invalid requests made releases: %d", n)
	}

	// The image's own entrypoint as web; the first deploy scales web to 1.
	var rel pier.Release
	e.must("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": "registry.example.com/team/app:v1"}, 201, &rel)
	if rel.Version != 2 || rel.Note != "Deploy app:v1" || rel.Status != pier.ReleaseSucceeded || rel.Build == nil ||
		rel.Build.Strategy != pier.StrategyImage || rel.Build.Image != "registry.example.com/team/app:v1" ||
		len(rel.Build.ProcessTypes) != 1 || rel.Build.ProcessTypes["web"] != "" || rel.Build.CreatedBy != "alice" {
		t.Fatalf("release %+v build %+v", rel, rel.Build)
	}
	d := sched.last(t)
	if d.Release.Version != 2 || d.Formation["web"] != 1 || d.Release.Build.Image != "registry.example.com/team/app:v1" {
		t.Fatalf("applied %+v", d)
	}
	var b pier.Build
	e.must("GET", "/v1/apps/myapp/builds/latest", e.alice, nil, 200, &b)
	if !strings.Contains(b.Log, "-----> Using image registry.example.com/team/app:v1") || !strings.Contains(b.Log, "web (the image's entrypoint)") {
		t.Fatalf("build log %q", b.Log)
	}

	// With a Procfile: its types, and the formation kept.
	e.must("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": "registry.example.com/team/app:v2", "procfile": "web: ./server\nworker: ./w\n"}, 201, &rel)
	if rel.Version != 3 || rel.Build.ProcessTypes["worker"] != "./w" || rel.Build.ProcessTypes["web"] != "./server" {
		t.Fatalf("release %+v", rel)
	}
	e.must("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"worker": 2}, 200, nil)
	if d := sched.last(t); d.Formation["worker"] != 2 || d.Formation["web"] != 1 {
		t.Fatalf("applied %+v", d)
	}

	// An image that does not come up is released failed, never current.
	sched.setGate(func(d pier.Deployment) error {
		if d.Release.Build != nil && d.Release.Build.Image == "broken:1" {
			return pier.Errorf(pier.EROLLOUT, "v%d did not come up: web: 0/1 new processes ready within 5m", d.Release.Version)
		}
		return nil
	})
	e.apiError("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": "broken:1"}, 422, pier.EROLLOUT, "v4 did not come up")
	if rels := e.releases("myapp"); len(rels) != 4 || rels[0].Status != pier.ReleaseFailed || rels[1].Version != 3 || rels[1].Status != pier.ReleaseSucceeded {
		t.Fatalf("releases after an image that did not come up: %+v", rels)
	}
	if d := sched.last(t); d.Release.Version != 3 {
		t.Fatalf("not converged back to v3: %+v", d)
	}

	var ev []pier.Event = e.events("myapp")
	var actions []string
	for _, x := range ev {
		actions = append(actions, x.Action)
	}
	if got := strings.Join(actions, " "); got != "release.fail build.create formation.scale release.deploy build.create formation.scale release.deploy build.create app.create" {
		t.Fatalf("events %s", got)
	}
}

func TestBuildsCreateNeedsASchedulerThatRunsImages(t *testing.T) {
	e := newEnvWith(t, &noImages{})
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	e.apiError("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": "nginx:1.27"}, 503, pier.EUNAVAILABLE,
		"this Pier runs apps with the local scheduler, which cannot run images: use git push, or run pierd with --scheduler=kubernetes")
	var l pier.List[pier.Build]
	e.must("GET", "/v1/apps/myapp/builds", e.alice, nil, 200, &l)
	if len(l.Items) != 0 || len(e.releases("myapp")) != 1 {
		t.Fatalf("a refused image left %d builds", len(l.Items))
	}

	// An app deployed from an image under another scheduler: changing it
	// says why it cannot run here, rather than succeeding silently.
	ctx := context.Background()
	b := &pier.Build{App: "myapp", Strategy: pier.StrategyImage, Image: "nginx:1.27", ProcessTypes: map[string]string{"web": ""}, Status: pier.BuildSucceeded, CreatedBy: "alice"}
	if err := e.db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Deploy(ctx, "myapp", b.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"A": "1"}, 503, pier.EUNAVAILABLE, "cannot run images")
	if rels := e.releases("myapp"); rels[0].Status != pier.ReleasePending {
		t.Fatalf("a refused image marked %s", rels[0].Status)
	}

	// A controller without a scheduler cannot deploy at all.
	c := newEnv(t)
	c.must("POST", "/v1/apps", c.alice, map[string]string{"name": "myapp"}, 201, nil)
	c.apiError("POST", "/v1/apps/myapp/builds", c.alice, map[string]string{"image": "nginx:1.27"}, 503, pier.EUNAVAILABLE, "runs no scheduler")
	// Others' apps are not theirs to deploy.
	c.apiError("POST", "/v1/apps/nope/builds", c.alice, map[string]string{"image": "nginx:1.27"}, 404, pier.ENOTFOUND, "not found")
}

// A deploy applies once when nothing changes meanwhile; a config change
// that lands while its processes start is part of the release written, and
// the scheduler is brought to it.
func TestDeployAppliesOnceUnlessSomethingChanged(t *testing.T) {
	sched := &gatedScheduler{}
	e := newEnvWith(t, sched)
	ctx := context.Background()
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	if _, err := e.rec.Deploy(ctx, fakeStrategy{res: webWorker}, controller.DeployRequest{App: "myapp", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if tries := sched.attempted(); len(tries) != 1 || tries[0].Release.Version != 2 {
		t.Fatalf("a deploy with no change meanwhile applied %d times: %+v", len(tries), tries)
	}

	sched.setGate(func(d pier.Deployment) error {
		if d.Release.Version == 3 && d.Release.Config["LATE"] == "" {
			// Straight to the store: the API's converge would wait for
			// this deploy to end.
			_, err := e.db.SetConfig(ctx, "myapp", pier.ConfigChange{Set: pier.Config{"LATE": "yes"}}, "bob")
			return err
		}
		return nil
	})
	rel, err := e.rec.Deploy(ctx, fakeStrategy{res: webWorker}, controller.DeployRequest{App: "myapp", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	tries := sched.attempted()
	if rel.Config["LATE"] != "yes" || len(tries) != 2 || tries[1].Release.Config["LATE"] != "yes" {
		t.Fatalf("release %+v; applied %+v", rel, tries)
	}
}

// Finding 8 of issue 14: builds:create took any reference, and the
// scheduler pulls from Pier's registry with Pier's credentials, which read
// every app's images: a member of one app could run another's. Images of
// Pier's registry must be the app's own; other registries' are allowed
// (and pulled without Pier's credentials: pack.Registry.Auth).
func TestBuildsCreateRefusesOtherAppsImage(t *testing.T) {
	sched := &gatedScheduler{}
	e := newEnvWith(t, sched, func(c *controller.Config) {
		c.ImageRepository = func(app string) string { return "127.0.0.1:5000/pier/" + app }
	})
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	e.must("POST", "/v1/apps", e.admin, map[string]string{"name": "payments"}, 201, nil)
	for _, ref := range []string{
		"127.0.0.1:5000/pier/payments:v1",
		"127.0.0.1:5000/pier/payments@sha256:" + strings.Repeat("a", 64),
		"127.0.0.1:5000/pier/myapp-payments:v1", // another app whose name starts with ours
		"127.0.0.1:5000/pier/myapp/extra:v1",    // not the app's repository
		"127.0.0.1:5000/other/thing:1",          // outside Pier's prefix, same credentials
	} {
		e.apiError("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": ref}, 403, pier.EFORBIDDEN, "an app deploys only its own images from Pier's registry")
	}
	if n := len(e.releases("myapp")); n != 1 {
		t.Fatalf("refused images made releases: %d", n)
	}
	for i, ref := range []string{
		"127.0.0.1:5000/pier/myapp:v1",
		"127.0.0.1:5000/pier/myapp@sha256:" + strings.Repeat("b", 64),
		"127.0.0.1:5001/pier/payments:v1", // another registry
		"nginx:1.27",
	} {
		var rel pier.Release
		e.must("POST", "/v1/apps/myapp/builds", e.alice, map[string]string{"image": ref}, 201, &rel)
		if rel.Version != i+2 || rel.Build.Image != ref {
			t.Fatalf("%s: release %+v", ref, rel)
		}
	}
}
