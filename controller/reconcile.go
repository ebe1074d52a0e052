package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pierpaas/pier"
)

// Reconciler converges a Scheduler onto the desired state in the Store:
// each app's current release and formation. Postgres is the truth; the
// scheduler is made to match it, never the other way round, so a restarted
// pierd (or an empty cluster) is brought back by ConvergeAll.
//
// Changes to one app are applied one at a time (a per-app lock in this
// process: the local scheduler is one host's, and the Kubernetes driver's
// server-side apply is itself idempotent).
type Reconciler struct {
	store pier.Store
	sched pier.Scheduler
	log   *slog.Logger

	mu        sync.Mutex
	locks     map[string]*sync.Mutex
	onDestroy []func(ctx context.Context, app string) error

	synced atomic.Bool // Sync has converged every app once (Synced)
}

// NewReconciler returns a Reconciler of sched onto store.
func NewReconciler(store pier.Store, sched pier.Scheduler, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.Default()
	}
	return &Reconciler{store: store, sched: sched, log: log, locks: map[string]*sync.Mutex{}}
}

func (r *Reconciler) lock(app string) func() {
	r.mu.Lock()
	l := r.locks[app]
	if l == nil {
		l = &sync.Mutex{}
		r.locks[app] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Converge applies app's current release, formation and limits.
//
// Health-gated: when the scheduler says the processes did not become
// available (pier.ErrRolloutFailed) and the release is pending (it never
// ran: a config change, a rollback), that release is marked failed, which
// makes the release before it current again (its config too), and that one
// is applied; the audit log says "release v5 failed: ...; v4 restored", and
// Converge returns an error of code pier.EROLLOUT saying so. A rollout
// failure of a release that ran before (a scale or limits change, a restart
// after an outage) marks nothing: rolling back would not undo its cause.
// Any other error is transient and marks nothing either.
func (r *Reconciler) Converge(ctx context.Context, app string) error {
	defer r.lock(app)()
	return r.converge(ctx, app)
}

// failuresMax bounds how many pending releases one converge marks failed
// on its way back to one that runs.
const failuresMax = 5

// platformActor is who the audit log says did what the platform did by
// itself, such as restoring a release.
const platformActor = "pier"

func (r *Reconciler) converge(ctx context.Context, app string) error {
	type failure struct {
		version int
		reason  string
	}
	var failed []failure
	for {
		rel, err := r.store.CurrentRelease(ctx, app)
		if err != nil {
			return err
		}
		d, err := r.desired(ctx, rel)
		if err != nil {
			return err
		}
		err = r.apply(ctx, d)
		if err == nil && rel.Status == pier.ReleasePending {
			err := r.whileOutage(ctx, func() error { return r.store.MarkReleaseSucceeded(ctx, app, rel.Version) })
			if err != nil {
				r.log.ErrorContext(ctx, "mark release succeeded", "app", app, "version", rel.Version, "err", err)
			}
		}
		rollout := errors.Is(err, pier.ErrRolloutFailed)
		if len(failed) > 0 {
			first := failed[0]
			msg := fmt.Sprintf("release v%d failed, so v%d was restored: %s", first.version, rel.Version, first.reason)
			for _, f := range failed[1:] {
				msg += fmt.Sprintf("\nrelease v%d failed too: %s", f.version, firstLine(f.reason))
			}
			switch {
			case err == nil:
				return pier.Errorf(pier.EROLLOUT, "%s", msg)
			case !rollout || rel.Status != pier.ReleasePending || len(failed) == failuresMax:
				return pier.Errorf(pier.EROLLOUT, "%s\nbut applying v%d did not work either: %s", msg, rel.Version, err)
			}
		}
		switch {
		case err == nil:
			return nil
		case !rollout:
			return err // transient: try again later; nothing is marked
		case rel.Status != pier.ReleasePending:
			return pier.Errorf(pier.EROLLOUT, "%s\nv%d ran before this, so it is neither marked failed nor rolled back: undo what changed (such as `pier scale` or `pier limits:unset`), or fix its cause", err, rel.Version)
		}
		reason := err.Error()
		ferr := r.whileOutage(ctx, func() error {
			_, err := r.store.MarkReleaseFailed(ctx, app, rel.Version, reason, platformActor)
			return err
		})
		if ferr != nil {
			return fmt.Errorf("%w; marking v%d failed did not work: %w", err, rel.Version, ferr)
		}
		r.log.WarnContext(ctx, "release failed", "app", app, "version", rel.Version, "reason", firstLine(reason))
		failed = append(failed, failure{rel.Version, reason})
	}
}

// desired is the deployment of rel: with the app's formation and limits.
func (r *Reconciler) desired(ctx context.Context, rel *pier.Release) (pier.Deployment, error) {
	f, err := r.store.Formation(ctx, rel.App)
	if err != nil {
		return pier.Deployment{}, err
	}
	if rel.Build == nil {
		// Nothing to run (before the first build, or rolled back to v1):
		// the scheduler stops whatever runs.
		f = pier.Formation{}
	}
	limits, err := r.limits(ctx, rel.App)
	if err != nil {
		return pier.Deployment{}, err
	}
	uid, err := r.appUID(ctx, rel.App)
	if err != nil {
		return pier.Deployment{}, err
	}
	return pier.Deployment{App: rel.App, UID: uid, Release: *rel, Formation: f, Limits: limits}, nil
}

// appUID is the uid the store gave app (App.UID): what its processes and
// builds run as on a host that runs each app as its own user.
func (r *Reconciler) appUID(ctx context.Context, app string) (int, error) {
	a, _, err := r.store.AppAccess(ctx, app, "")
	if err != nil {
		return 0, err
	}
	return a.UID, nil
}

// limits are the app's limits, nil when it has none.
func (r *Reconciler) limits(ctx context.Context, app string) (map[string]pier.Limits, error) {
	l, err := r.store.Limits(ctx, app)
	if len(l) == 0 {
		l = nil
	}
	return l, err
}

// apply hands d to the scheduler, unless it is of an image build the
// scheduler cannot run.
func (r *Reconciler) apply(ctx context.Context, d pier.Deployment) error {
	if b := d.Release.Build; b != nil && b.RunsImage() {
		if err := r.runsImages(); err != nil {
			return cannotRunImages{err}
		}
	}
	return r.sched.Apply(ctx, d)
}

// cannotRunImages is the scheduler's refusal of an image build: not
// transient, so the API reports it (see Server.converge).
type cannotRunImages struct{ error }

func (e cannotRunImages) Unwrap() error { return e.error }

// runsImages says why the scheduler cannot run image builds, if it cannot.
func (r *Reconciler) runsImages() error {
	if ir, ok := r.sched.(pier.ImageRunner); ok {
		return ir.CanRunImages()
	}
	return nil
}

// firstLine is the first line of s, at most 300 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// Destroy stops everything of an app that no longer exists, then runs the
// OnDestroy cleanups (each runs even if another failed).
func (r *Reconciler) Destroy(ctx context.Context, app string) error {
	defer r.lock(app)()
	errs := []error{r.sched.Destroy(ctx, app)}
	r.mu.Lock()
	fns := r.onDestroy
	r.mu.Unlock()
	for _, fn := range fns {
		errs = append(errs, fn(ctx, app))
	}
	return errors.Join(errs...)
}

// OnDestroy adds a cleanup that Destroy runs for a destroyed app, such as
// removing the builder's repository of it.
func (r *Reconciler) OnDestroy(fn func(ctx context.Context, app string) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onDestroy = append(r.onDestroy, fn)
}

// DeployRequest is a pushed commit to build and release.
type DeployRequest struct {
	App       string
	User      string
	Commit    string
	SourceDir string    // the pushed tree, checked out; the build's to use
	Log       io.Writer // streams to the pusher's terminal
}

// Deploy builds a push (or, with the strategy "image", takes an existing
// image: `pier builds:create`) and releases it, so that a release exists
// only once it serves: the build's processes are started (the scheduler
// keeps the old ones until the new accept connections) before the release
// is written, succeeded. A build that fails, or processes that do not come
// up, leave the current release serving and return why; for the latter
// the error is of code pier.EROLLOUT and a failed release is written (it
// is never current: see Store.DeployFailed). If pierd
// dies half-way, Postgres still names the old release and ConvergeAll
// brings that back.
func (r *Reconciler) Deploy(ctx context.Context, strategy pier.BuildStrategy, req DeployRequest) (*pier.Release, error) {
	if pier.StrategyRunsImage(strategy.Name()) {
		if err := r.runsImages(); err != nil {
			return nil, err
		}
	}
	cfg, err := r.store.Config(ctx, req.App)
	if err != nil {
		return nil, err
	}
	builder, err := r.store.AppBuilder(ctx, req.App)
	if err != nil {
		return nil, err
	}
	b := &pier.Build{App: req.App, Commit: req.Commit, Strategy: strategy.Name(), CreatedBy: req.User}
	// The build's output goes to the pusher and, bounded, onto the Build
	// row, so that `pier builds:info` shows it later.
	out := req.Log
	if out == nil {
		out = io.Discard
	}
	uid, err := r.appUID(ctx, req.App)
	if err != nil {
		return nil, err
	}
	blog := newBuildLog(pier.BuildLogMax)
	res, buildErr := strategy.Build(ctx, pier.BuildRequest{
		App: req.App, UID: uid, Commit: req.Commit, SourceDir: req.SourceDir, Config: cfg, Builder: builder, Log: teeLog{blog, out},
	})
	if buildErr != nil {
		// The pusher is shown the reason by the builder; the stored log
		// ends with it too. A push whose pusher went away still leaves
		// its failed build on record.
		fmt.Fprintf(blog, "!     %s\n", pier.ErrorMessage(buildErr))
		b.Status, b.Log = pier.BuildFailed, blog.String()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := r.store.CreateBuild(rctx, b); err != nil {
			r.log.ErrorContext(ctx, "record failed build", "app", req.App, "err", err)
		}
		return nil, buildErr
	}
	b.Status, b.Image, b.ProcessTypes, b.Log = pier.BuildSucceeded, res.Image, res.ProcessTypes, blog.String()
	if res.Strategy != "" {
		b.Strategy = res.Strategy
	}
	if err := r.store.CreateBuild(ctx, b); err != nil {
		// Built, but on record nowhere (a full disk, say): nothing may
		// keep the build's output.
		if d, ok := strategy.(pier.BuildDiscarder); ok {
			if derr := d.Discard(res); derr != nil {
				r.log.ErrorContext(ctx, "discard unrecorded build", "app", req.App, "image", res.Image, "err", derr)
			}
		}
		return nil, err
	}

	defer r.lock(req.App)()
	cur, err := r.store.CurrentRelease(ctx, req.App)
	if err != nil {
		return nil, err
	}
	f, err := r.store.Formation(ctx, req.App)
	if err != nil {
		return nil, err
	}
	limits, err := r.limits(ctx, req.App)
	if err != nil {
		return nil, err
	}
	// Config is read again under the lock: a config:set that landed
	// during the build is part of what this release runs.
	if cfg, err = r.store.Config(ctx, req.App); err != nil {
		return nil, err
	}
	last, _, err := r.store.ListReleases(ctx, req.App, pier.Page{Limit: 1})
	if err != nil {
		return nil, err
	}
	version := cur.Version + 1
	if len(last) > 0 {
		version = last[0].Version + 1 // after any failed releases
	}
	next := pier.Release{App: req.App, Version: version, Build: b, Config: cfg, Status: pier.ReleasePending}
	d := pier.Deployment{App: req.App, UID: uid, Release: next, Formation: firstDeployFormation(f, b, cur.Build == nil), Limits: limits}
	fmt.Fprintf(out, "-----> Starting v%d: %s\n", next.Version, d.Formation)
	if err := r.apply(ctx, d); err != nil {
		// A scheduler may be left half-way (Kubernetes' does not roll
		// back by itself): go back to what Postgres says, even if the
		// pusher has gone.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
		defer cancel()
		if errors.Is(err, pier.ErrRolloutFailed) {
			// On record, as `pier releases` shows it: this build was
			// released and did not come up. It never becomes current.
			if _, ferr := r.store.DeployFailed(rctx, req.App, b.ID, err.Error(), req.User); ferr != nil {
				r.log.ErrorContext(ctx, "record failed release", "app", req.App, "err", ferr)
			}
		}
		if cerr := r.converge(rctx, req.App); cerr != nil {
			r.log.ErrorContext(ctx, "converge after failed deploy", "app", req.App, "err", cerr)
		}
		return nil, err
	}
	rel, err := r.store.Deploy(ctx, req.App, b.ID, req.User)
	if err != nil {
		// The new processes run but no release names them: go back to
		// what Postgres says.
		if cerr := r.converge(ctx, req.App); cerr != nil {
			r.log.ErrorContext(ctx, "converge after failed release", "app", req.App, "err", cerr)
		}
		return nil, err
	}
	// The committed release is the one applied unless a change landed in
	// between (a config:set, a scale): then the scheduler is corrected.
	// Applying the same again would be a no-op that still costs a write per
	// object and a rollout check.
	var same bool
	err = r.whileOutage(ctx, func() (err error) {
		same, err = r.applied(ctx, d, rel)
		return err
	})
	if err == nil && same {
		return rel, nil
	}
	if err := r.converge(ctx, req.App); err != nil {
		return rel, err
	}
	return rel, nil
}

// applied says whether rel, just written, with the app's formation and
// limits as they are now, is what d applied.
func (r *Reconciler) applied(ctx context.Context, d pier.Deployment, rel *pier.Release) (bool, error) {
	if rel.Version != d.Release.Version || rel.Build == nil || rel.Build.ID != d.Release.Build.ID || !maps.Equal(rel.Config, d.Release.Config) {
		return false, nil
	}
	now, err := r.desired(ctx, rel)
	if err != nil {
		return false, err
	}
	return sameFormation(now.Formation, d.Formation) && maps.Equal(now.Limits, d.Limits), nil
}

// sameFormation: the same quantities, a type at 0 being the same as absent.
func sameFormation(a, b pier.Formation) bool {
	for t, n := range a {
		if b[t] != n {
			return false
		}
	}
	for t, n := range b {
		if a[t] != n {
			return false
		}
	}
	return true
}

// restoreTimeout bounds bringing the scheduler back to the current release
// after a deploy that did not come up.
const restoreTimeout = 10 * time.Minute

// firstDeployFormation is Heroku's rule, as Store.Deploy applies it: the
// first deploy of a build with a web type scales web to 1 if it was 0.
func firstDeployFormation(f pier.Formation, b *pier.Build, first bool) pier.Formation {
	out := pier.Formation{}
	for t, n := range f {
		out[t] = n
	}
	if _, hasWeb := b.ProcessTypes["web"]; first && hasWeb && out["web"] == 0 {
		out["web"] = 1
	}
	return out
}

// noBuild is the answer to running something of an app that has nothing to
// run yet.
func noBuild(app string) error {
	return pier.Errorf(pier.EINVALID, "app %q has no build yet: git push first (git push pier main)", app)
}

// Processes lists the app's processes as the scheduler runs them.
func (r *Reconciler) Processes(ctx context.Context, app string) ([]pier.Process, error) {
	ps, err := r.sched.Processes(ctx, app)
	if err != nil {
		return nil, err
	}
	if ps == nil {
		ps = []pier.Process{}
	}
	return ps, nil
}

// Restart replaces the app's processes of one type ("" for every type)
// with fresh ones. A type the current release does not define is refused,
// naming the ones it does.
func (r *Reconciler) Restart(ctx context.Context, app, processType string) error {
	if processType != "" {
		if err := pier.ValidateProcessType(processType); err != nil {
			return err
		}
	}
	defer r.lock(app)()
	rel, err := r.store.CurrentRelease(ctx, app)
	if err != nil {
		return err
	}
	if rel.Build == nil {
		return noBuild(app)
	}
	if _, ok := rel.Build.ProcessTypes[processType]; processType != "" && !ok {
		known := make([]string, 0, len(rel.Build.ProcessTypes))
		for t := range rel.Build.ProcessTypes {
			known = append(known, t)
		}
		sort.Strings(known)
		if len(known) == 0 {
			return pier.Errorf(pier.EINVALID, "unknown process type %q: the build of app %q defines no process types", processType, app)
		}
		return pier.Errorf(pier.EINVALID, "unknown process type %q: app %q defines %s", processType, app, strings.Join(known, ", "))
	}
	return r.sched.Restart(ctx, app, processType)
}

// Logs reads the app's log; see pier.Scheduler. Lines 0 reads the last
// pier.LogLinesDefault lines.
func (r *Reconciler) Logs(ctx context.Context, app string, opts pier.LogOptions, fn func(pier.LogLine) error) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if opts.Lines == 0 {
		opts.Lines = pier.LogLinesDefault
	}
	return r.sched.Logs(ctx, app, opts, fn)
}

// Run runs a one-off process of the app's current release, with its config,
// and returns its exit status. It runs until the process exits or ctx ends.
func (r *Reconciler) Run(ctx context.Context, app string, opts pier.RunOptions) (int, error) {
	if err := pier.ValidateCommand(opts.Command); err != nil {
		return -1, err
	}
	rel, err := r.store.CurrentRelease(ctx, app)
	if err != nil {
		return -1, err
	}
	if rel.Build == nil {
		return -1, noBuild(app)
	}
	d, err := r.desired(ctx, rel)
	if err != nil {
		return -1, err
	}
	return r.sched.Run(ctx, d, opts)
}
