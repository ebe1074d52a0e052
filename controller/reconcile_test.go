package controller_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
)

// recordingScheduler records what it is asked to run. It is the fast
// stand-in; scheduler/local has the real processes.
type recordingScheduler struct {
	mu      sync.Mutex
	applied []pier.Deployment
	fail    error
}

func (s *recordingScheduler) Apply(_ context.Context, d pier.Deployment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.applied = append(s.applied, d)
	return nil
}

func (s *recordingScheduler) last(t *testing.T) pier.Deployment {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.applied) == 0 {
		t.Fatal("nothing applied")
	}
	return s.applied[len(s.applied)-1]
}

func (s *recordingScheduler) Processes(context.Context, string) ([]pier.Process, error) {
	return nil, nil
}
func (s *recordingScheduler) Restart(context.Context, string, string) error { return nil }
func (s *recordingScheduler) Logs(context.Context, string, pier.LogOptions, func(pier.LogLine) error) error {
	return nil
}
func (s *recordingScheduler) Run(context.Context, pier.Deployment, pier.RunOptions) (int, error) {
	return 0, nil
}
func (s *recordingScheduler) Destroy(context.Context, string) error { return nil }

type fakeStrategy struct {
	res    *pier.BuildResult
	err    error
	during func() // runs mid-build
}

func (f fakeStrategy) Name() string { return "fake" }
func (f fakeStrategy) Build(_ context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	io.WriteString(req.Log, "-----> Fake app detected\n")
	if f.during != nil {
		f.during()
	}
	return f.res, f.err
}

var webBuild = &pier.BuildResult{Image: "/builds/x/1", ProcessTypes: map[string]string{"web": "./server"}}

func TestDeployReleasesOnlyWhatServes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	sched := &recordingScheduler{}
	r := controller.NewReconciler(e.db, sched, nil)
	req := controller.DeployRequest{App: "myapp", User: "alice", Commit: "1a2b3c4d5e", Log: io.Discard}

	// A failing build: no release, a failed build on record, nothing run.
	if _, err := r.Deploy(ctx, fakeStrategy{err: pier.Errorf(pier.EINVALID, "no buildpack detected")}, req); err == nil {
		t.Fatal("failed build deployed")
	}
	if len(sched.applied) != 0 || len(e.releases("myapp")) != 1 {
		t.Fatalf("a failed build changed things: %d applies, %d releases", len(sched.applied), len(e.releases("myapp")))
	}

	// Processes that do not come up: no release either.
	sched.fail = errors.New("web.1 exited: status 1")
	if _, err := r.Deploy(ctx, fakeStrategy{res: webBuild}, req); err == nil {
		t.Fatal("deploy whose processes failed succeeded")
	}
	if n := len(e.releases("myapp")); n != 1 {
		t.Fatalf("a release that did not start was written: %d releases", n)
	}
	sched.fail = nil

	// A good one, with a config change landing during the build: v2 runs the
	// build with that config, and web is scaled to 1 on the first deploy.
	during := func() { e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"MID": "build"}, 200, nil) }
	rel, err := r.Deploy(ctx, fakeStrategy{res: webBuild, during: during}, req)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != 3 || rel.Note != "Deploy 1a2b3c4" || rel.Config["MID"] != "build" || rel.Build == nil {
		t.Fatalf("release %+v", rel)
	}
	d := sched.last(t)
	if d.Release.Version != 3 || d.Formation["web"] != 1 || d.Release.Config["MID"] != "build" || d.Release.Build.Image != "/builds/x/1" {
		t.Fatalf("applied %+v", d)
	}

	// Restarting pierd: ConvergeAll applies every app's current state.
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "idle"}, 201, nil)
	fresh := &recordingScheduler{}
	if err := controller.NewReconciler(e.db, fresh, nil).ConvergeAll(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]pier.Deployment{}
	for _, d := range fresh.applied {
		got[d.App] = d
	}
	if got["myapp"].Release.Version != 3 || got["myapp"].Formation["web"] != 1 || len(got["idle"].Formation) != 0 {
		t.Fatalf("converged %+v", got)
	}
}

// listingScheduler runs apps it names (pier.AppLister) and records what it
// is told to destroy.
type listingScheduler struct {
	recordingScheduler
	running   []string
	destroyed []string
}

func (s *listingScheduler) Apps(context.Context) ([]string, error) { return s.running, nil }
func (s *listingScheduler) Destroy(_ context.Context, app string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.destroyed = append(s.destroyed, app)
	return nil
}

// At start, what runs of an app that no longer exists (destroyed while
// pierd was down) is destroyed; the apps that exist are converged, not
// destroyed.
func TestConvergeAllDestroysWhatRunsOfGoneApps(t *testing.T) {
	e := newEnv(t)
	for _, app := range []string{"kept", "other"} {
		e.must("POST", "/v1/apps", e.alice, map[string]string{"name": app}, 201, nil)
	}
	sched := &listingScheduler{running: []string{"gone", "kept"}}
	var removed []string
	r := controller.NewReconciler(e.db, sched, nil)
	r.OnDestroy(func(_ context.Context, app string) error { removed = append(removed, app); return nil })
	if err := r.ConvergeAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sched.destroyed) != 1 || sched.destroyed[0] != "gone" || len(removed) != 1 || removed[0] != "gone" {
		t.Fatalf("destroyed %v, cleaned up %v; want only gone", sched.destroyed, removed)
	}
	apps := map[string]bool{}
	for _, d := range sched.applied {
		apps[d.App] = true
	}
	if len(apps) != 2 || !apps["kept"] || !apps["other"] {
		t.Fatalf("converged %v, want kept and other", apps)
	}
}

// uidStrategy records the uid each build is asked to run as.
type uidStrategy struct{ got *int }

func (uidStrategy) Name() string { return "fake" }
func (s uidStrategy) Build(_ context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	*s.got = req.UID
	return webBuild, nil
}

// runRecorder records the deployment of each one-off run.
type runRecorder struct {
	recordingScheduler
	runs []pier.Deployment
}

func (s *runRecorder) Run(_ context.Context, d pier.Deployment, _ pier.RunOptions) (int, error) {
	s.runs = append(s.runs, d)
	return 0, nil
}

// Issue 14, finding 2: builds, deployments and one-off runs carry the uid
// the store gave the app, so that the local scheduler and the host builder
// run each app as its own user (payments and blog-75204 used to share one).
func TestAppUIDReachesBuildsDeploymentsAndRuns(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sched := &runRecorder{}
	r := controller.NewReconciler(e.db, sched, nil)
	uids := map[string]int{}
	for _, app := range []string{"payments", "blog-75204"} {
		e.must("POST", "/v1/apps", e.alice, map[string]string{"name": app}, 201, nil)
		a, _, err := e.db.AppAccess(ctx, app, "alice")
		if err != nil {
			t.Fatal(err)
		}
		uids[app] = a.UID
		var built int
		if _, err := r.Deploy(ctx, uidStrategy{&built}, controller.DeployRequest{App: app, User: "alice", Commit: "1a2b3c4d5e", Log: io.Discard}); err != nil {
			t.Fatal(err)
		}
		if d := sched.last(t); built != a.UID || d.UID != a.UID || d.App != app {
			t.Fatalf("%s (uid %d): built as %d, deployed as %d", app, a.UID, built, d.UID)
		}
		if _, err := r.Run(ctx, app, pier.RunOptions{Command: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
		if d := sched.runs[len(sched.runs)-1]; d.UID != a.UID {
			t.Fatalf("%s (uid %d): run as %d", app, a.UID, d.UID)
		}
	}
	if uids["payments"] == uids["blog-75204"] || uids["payments"] == 0 {
		t.Fatalf("uids %v", uids)
	}
	fresh := &recordingScheduler{}
	if err := controller.NewReconciler(e.db, fresh, nil).ConvergeAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range fresh.applied {
		if d.UID != uids[d.App] {
			t.Fatalf("converged %s as uid %d, want %d", d.App, d.UID, uids[d.App])
		}
	}
}
