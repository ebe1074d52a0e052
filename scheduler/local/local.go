// Package local is Pier's embedded scheduler: it runs every process of every
// app as a supervised OS process on this host. It is single-tenant by design
// (apps share the host's network and kernel); when pierd runs as root each
// app still gets its own uid/gid and directories.
package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/pgroup"
	"github.com/pierpaas/pier/router"
	"github.com/pierpaas/pier/scheduler/local/firewall"
)

// LaunchFunc builds the command of one process of a deployment. The
// scheduler adds PORT and the release's config to its environment, and sets
// its process attributes (group, credentials, death signal) and output.
// When cmd.Env is nil the process gets a minimal environment, never pierd's.
type LaunchFunc func(d pier.Deployment, processType string) (*exec.Cmd, error)

// RunFunc builds the command of a one-off process (`pier run`).
type RunFunc func(d pier.Deployment, command []string) (*exec.Cmd, error)

// Config configures a Scheduler. Zero durations take their defaults.
type Config struct {
	DataDir    string // logs/, run/ (working dirs) and pgroups/ are kept here
	Launch     LaunchFunc
	RunCommand RunFunc // nil: run the command as given, without a shell
	Logger     *slog.Logger

	StartTimeout time.Duration // a web process must accept connections within this (60s)
	StopGrace    time.Duration // SIGTERM, then SIGKILL after this (10s)
	UpAfter      time.Duration // a non-web process running this long is up (1s)

	// DrainDelay is how long a replaced web process keeps running after it
	// left the routes (1s): a router may have picked it just before the
	// switch, and a POST sent to a process that is closing cannot be
	// retried. Kubernetes' preStop delay plays the same part.
	DrainDelay time.Duration

	RestartBackoff    time.Duration // delay before the first restart of a crashed process (1s)
	MaxRestartBackoff time.Duration // the delay doubles up to this (1m)

	PortRange [2]int // loopback ports for processes, inclusive; zero: any free port

	// AppUIDs is the inclusive range of every app's uid (processes and
	// builds; the store allocates them, pierd --app-uids); zero:
	// DefaultAppUIDs. As root, an app's processes run as its
	// Deployment.UID (uid and gid), which must be in this range; new TCP
	// connections from these uids over loopback are refused except to
	// AllowedPorts (see package firewall). Without root, processes run as
	// pierd's own user.
	AppUIDs      [2]uint32
	AllowedPorts []int // loopback ports apps may connect to: the router's

	// Wrap, when set, is applied to each process's command (home: its
	// own dir) before it starts: pierd without root runs them in a
	// sandbox that hides its data dir (package sandbox).
	Wrap func(cmd *exec.Cmd, home string) error

	// PidsMax bounds the processes and threads of each process group
	// (limits.go); zero: DefaultPidsMax, negative: no bound.
	PidsMax int
}

const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// Scheduler runs processes on this host. It implements pier.Scheduler.
type Scheduler struct {
	cfg     Config
	log     *slog.Logger
	ports   *ports
	groups  *pgroup.Records // every process group started and not yet stopped
	spawnc  chan spawnReq
	guard   *firewall.Guard // root's netfilter rules; nil otherwise
	limiter limiter         // enforces limits (limits.go); nil: none
	runWG   sync.WaitGroup  // one-off processes not yet stopped and reaped

	feed router.Feed // the router follows the ready web addresses (Subscribe)

	mu     sync.Mutex // guards everything below and the mutable fields of apps and procs
	apps   map[string]*appState
	runs   map[*pgroup.Group]struct{}
	seq    int
	closed bool
}

type appState struct {
	name     string
	op       sync.Mutex // one Apply, Restart or Destroy of this app at a time
	logs     *appLog
	gen      *generation        // what serves; nil before the first Apply
	pending  map[*proc]struct{} // booting, not yet committed
	stopping map[*proc]struct{} // draining after replacement or scale-down
	runSeq   int
}

// generation is one deployment's set of processes. A new release or config
// replaces the generation; scaling changes it in place.
type generation struct {
	fp    string
	dep   pier.Deployment
	procs map[string][]*proc // type → processes, index order
}

var _ pier.Scheduler = (*Scheduler)(nil)

// New returns a scheduler; it starts nothing until Apply. First it kills
// what an earlier run of pierd left behind on this data dir: the processes of
// every process group recorded in pgroups/ and not stopped (pierd was
// killed; its direct children died with it, but not what they had forked).
func New(cfg Config) (*Scheduler, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("local scheduler: DataDir is required")
	}
	if cfg.Launch == nil {
		return nil, errors.New("local scheduler: Launch is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.StartTimeout, 60*time.Second)
	def(&cfg.StopGrace, 10*time.Second)
	def(&cfg.DrainDelay, time.Second)
	def(&cfg.UpAfter, time.Second)
	def(&cfg.RestartBackoff, time.Second)
	def(&cfg.MaxRestartBackoff, time.Minute)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PidsMax == 0 {
		cfg.PidsMax = DefaultPidsMax
	}
	if cfg.AppUIDs == [2]uint32{} {
		cfg.AppUIDs = DefaultAppUIDs
	}
	if r := cfg.AppUIDs; r[0] < 1000 || r[0] > r[1] {
		return nil, fmt.Errorf("local scheduler: app uid range %d-%d is invalid: it must be LO-HI with 1000 <= LO <= HI", r[0], r[1])
	}
	if r := cfg.PortRange; r != [2]int{} && (r[0] < 1 || r[1] > 65535 || r[0] > r[1]) {
		return nil, fmt.Errorf("local scheduler: port range %d-%d is invalid", r[0], r[1])
	}
	// DataDir is traversed by app uids on their way to run/<app>, and
	// listed by none of them.
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return nil, fmt.Errorf("local scheduler: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
			return nil, fmt.Errorf("local scheduler: %w", err)
		}
	}
	// logs/ and every app's log in it are root's alone (0700, 0600).
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("local scheduler: %w", err)
	}
	if err := os.Chmod(filepath.Join(cfg.DataDir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("local scheduler: %w", err)
	}
	// run/ holds per-app directories owned by each app's uid: it must be
	// traversable by them, but not listable.
	run := filepath.Join(cfg.DataDir, "run")
	if err := os.MkdirAll(run, 0o711); err != nil {
		return nil, fmt.Errorf("local scheduler: %w", err)
	}
	if err := os.Chmod(run, 0o711); err != nil {
		return nil, fmt.Errorf("local scheduler: %w", err)
	}
	// pgroups/ is pierd's alone (not under run/, which app uids can
	// write): a record there makes the next New kill.
	groups, err := pgroup.Open(filepath.Join(cfg.DataDir, "pgroups"))
	if err != nil {
		return nil, fmt.Errorf("local scheduler: %w", err)
	}
	if _, err := groups.Reap(cfg.Logger.With("component", "scheduler")); err != nil {
		return nil, fmt.Errorf("local scheduler: removing the records of stopped processes: %w", err)
	}
	s := &Scheduler{
		cfg:    cfg,
		log:    cfg.Logger,
		ports:  newPorts(cfg.PortRange),
		groups: groups,
		spawnc: make(chan spawnReq),
		apps:   map[string]*appState{},
		runs:   map[*pgroup.Group]struct{}{},
	}
	if err := s.guardLoopback(); err != nil { // loopback.go
		return nil, err
	}
	s.limiter = newLimiter(s) // limits_*.go
	go s.spawner()
	return s, nil
}

// credential is the uid and gid d's processes run as: as root, the app's
// own (Deployment.UID), which must be one of the range of app uids, or
// nothing is started; otherwise nil, pierd's own user.
func (s *Scheduler) credential(d pier.Deployment) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	r := s.cfg.AppUIDs
	if d.UID <= 0 || uint64(d.UID) < uint64(r[0]) || uint64(d.UID) > uint64(r[1]) {
		return nil, pier.Errorf(pier.EINVALID, "app %s has uid %d, outside the range of app uids %d-%d: its processes are not started; give pierd --app-uids covering the uids the store hands out", d.App, d.UID, r[0], r[1])
	}
	id := uint32(d.UID)
	// An empty Groups drops root's supplementary groups.
	return &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}, nil
}

type spawnReq struct {
	cmd *exec.Cmd
	box box // its limits: entered by the forking thread (limits.go)
	err chan error
}

// spawner starts every process from one goroutine locked to its OS thread:
// the kernel sends Pdeathsig when the forking *thread* exits, and the Go
// runtime may retire an ordinary thread while pierd lives on.
func (s *Scheduler) spawner() {
	runtime.LockOSThread()
	for r := range s.spawnc {
		if err := r.box.enter(); err != nil {
			r.err <- fmt.Errorf("entering its limits: %w", err)
			continue
		}
		err := r.cmd.Start()
		r.box.leave()
		r.err <- err
	}
}

func (s *Scheduler) start(cmd *exec.Cmd, b box) error {
	r := spawnReq{cmd: cmd, box: b, err: make(chan error, 1)}
	s.spawnc <- r
	return <-r.err
}

// Subscribe calls fn whenever the ready web addresses of any app change,
// never concurrently with itself (router.RouteSource). fn should be quick;
// it may call Routes. The returned func unsubscribes.
func (s *Scheduler) Subscribe(fn func()) (cancel func()) { return s.feed.Subscribe(fn) }

// notify tells the subscribers the ready web addresses changed.
func (s *Scheduler) notify() { s.feed.Notify() }

// Backends returns the host:port of every ready web process of app.
func (s *Scheduler) Backends(app string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backendsLocked(s.apps[app])
}

func (s *Scheduler) backendsLocked(a *appState) []string {
	if a == nil || a.gen == nil {
		return nil
	}
	var out []string
	for _, p := range a.gen.procs["web"] {
		if p.ready && p.routed {
			out = append(out, p.addr)
		}
	}
	return out
}

// Routes returns every app this scheduler has deployed and its ready web
// addresses (an empty list: the app exists but nothing serves).
func (s *Scheduler) Routes() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string, len(s.apps))
	for name, a := range s.apps {
		if a.gen != nil {
			out[name] = s.backendsLocked(a)
		}
	}
	return out
}

func (s *Scheduler) appFor(name string) (*appState, error) {
	if err := pier.ValidateAppName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, pier.Errorf(pier.ECONFLICT, "the scheduler is shutting down")
	}
	a := s.apps[name]
	if a == nil {
		a = &appState{
			name:     name,
			logs:     newAppLog(filepath.Join(s.cfg.DataDir, "logs"), name, s.log),
			pending:  map[*proc]struct{}{},
			stopping: map[*proc]struct{}{},
		}
		s.apps[name] = a
	}
	return a, nil
}

// platform writes a line from Pier itself into the app's log.
func (a *appState) platform(format string, args ...any) {
	a.logs.write("pier", fmt.Sprintf(format, args...))
}

// fingerprint identifies what a process runs: a different release, build or
// config means new processes; a different formation does not.
func fingerprint(d pier.Deployment) string {
	h := sha256.New()
	// The uid is in: processes of an app whose uid changed start again
	// as the new one.
	fmt.Fprintf(h, "%s\x00v%d\x00uid%d\x00", d.App, d.Release.Version, d.UID)
	if b := d.Release.Build; b != nil {
		fmt.Fprintf(h, "%d\x00%s\x00", b.ID, b.Image)
		for _, t := range sortedKeys(b.ProcessTypes) {
			fmt.Fprintf(h, "%s=%s\x00", t, b.ProcessTypes[t])
		}
	}
	h.Write([]byte{1})
	for _, k := range sortedKeys(d.Release.Config) {
		fmt.Fprintf(h, "%s=%s\x00", k, d.Release.Config[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CanRunImages says that this scheduler cannot run container images: it
// runs build directories on this host. See pier.ImageRunner.
func (s *Scheduler) CanRunImages() error {
	return pier.Errorf(pier.EUNAVAILABLE, "this Pier runs apps with the local scheduler, which cannot run images: use git push, or run pierd with --scheduler docker or kubernetes")
}

var _ pier.ImageRunner = (*Scheduler)(nil)

// Apply converges the app onto d. See pier.Scheduler: when the new
// processes do not come up, the error is of code pier.EROLLOUT.
func (s *Scheduler) Apply(ctx context.Context, d pier.Deployment) error {
	if b := d.Release.Build; b != nil && b.RunsImage() {
		return s.CanRunImages()
	}
	for t, n := range d.Formation {
		if err := pier.ValidateProcessType(t); err != nil {
			return err
		}
		if n < 0 || n > pier.ScaleMax {
			return pier.Errorf(pier.EINVALID, "cannot scale %s to %d: use 0 to %d", t, n, pier.ScaleMax)
		}
	}
	for _, n := range d.Formation {
		if n > 0 {
			// Refused before anything changes: what runs keeps running.
			if _, err := s.credential(d); err != nil {
				return err
			}
			break
		}
	}
	a, err := s.appFor(d.App)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()

	fp := fingerprint(d)
	var start, stop []*proc
	s.mu.Lock()
	cur := a.gen
	same := cur != nil && cur.fp == fp
	if same {
		for _, t := range sortedKeys(d.Formation) {
			for i := len(cur.procs[t]) + 1; i <= d.Formation[t]; i++ {
				start = append(start, s.newProcLocked(a, d, t, i))
			}
		}
		for t, ps := range cur.procs {
			if want := d.Formation[t]; len(ps) > want {
				stop = append(stop, ps[want:]...)
			}
		}
	} else {
		for _, t := range sortedKeys(d.Formation) {
			for i := 1; i <= d.Formation[t]; i++ {
				start = append(start, s.newProcLocked(a, d, t, i))
			}
		}
		if cur != nil {
			for _, ps := range cur.procs {
				stop = append(stop, ps...)
			}
		}
	}
	s.mu.Unlock()

	if err := s.boot(ctx, a, d, start); err != nil {
		return err
	}

	s.mu.Lock()
	next := cur
	if !same {
		next = &generation{fp: fp, procs: map[string][]*proc{}}
		a.gen = next
	}
	next.dep = d
	for t, ps := range next.procs {
		if want := d.Formation[t]; len(ps) > want {
			next.procs[t] = ps[:want]
		}
		if len(next.procs[t]) == 0 {
			delete(next.procs, t)
		}
	}
	s.commitLocked(a, next, start, stop)
	s.mu.Unlock()
	s.finish(a, start, stop)
	return nil
}

// commitLocked makes the booted processes serve and takes the replaced ones
// out of the routes, in one step under the lock, so the router never sees an
// app with neither.
func (s *Scheduler) commitLocked(a *appState, g *generation, start, stop []*proc) {
	for _, p := range start {
		delete(a.pending, p)
		p.boot = false
		p.routed = true
		g.procs[p.typ] = append(g.procs[p.typ], p)
	}
	for _, p := range stop {
		p.routed = false
		p.state = pier.ProcessStopping
		a.stopping[p] = struct{}{}
	}
}

// finish tells the router, then stops the replaced processes. Stopping runs
// in the background: the release already serves, and a process ignoring
// SIGTERM must not hold a deploy for StopGrace.
func (s *Scheduler) finish(a *appState, start, stop []*proc) {
	if len(start) > 0 || len(stop) > 0 {
		s.notify()
	}
	for _, p := range stop {
		go func() {
			if p.typ == "web" {
				select {
				case <-time.After(s.cfg.DrainDelay):
				case <-p.done: // Shutdown stopped it meanwhile
				}
			}
			p.stop()
			<-p.done
			s.mu.Lock()
			delete(a.stopping, p)
			s.mu.Unlock()
		}()
	}
}

// boot starts procs and waits until every one is up. If one is not, it stops
// them all and says why.
func (s *Scheduler) boot(ctx context.Context, a *appState, d pier.Deployment, procs []*proc) error {
	if len(procs) == 0 {
		return nil
	}
	for _, p := range procs {
		go s.supervise(p)
	}
	var failed *proc
	var ctxErr error
wait:
	for _, p := range procs {
		select {
		case <-p.readyc:
		case <-p.exitc:
			failed = p
			break wait
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break wait
		}
	}
	if failed == nil && ctxErr == nil {
		// A process may have crashed after it came up, while others booted.
		s.mu.Lock()
		for _, p := range procs {
			if !p.ready {
				failed = p
				break
			}
		}
		s.mu.Unlock()
	}
	if failed == nil && ctxErr == nil {
		return nil
	}
	for _, p := range procs {
		p.stop()
	}
	for _, p := range procs {
		<-p.done
	}
	s.mu.Lock()
	for _, p := range procs {
		delete(a.pending, p)
	}
	keep := "nothing was running before"
	if a.gen != nil && len(a.gen.procs) > 0 {
		keep = fmt.Sprintf("v%d keeps running", a.gen.dep.Release.Version)
	}
	s.mu.Unlock()
	if ctxErr != nil {
		a.platform("Deploy of v%d abandoned: %v", d.Release.Version, ctxErr)
		return fmt.Errorf("deploy of v%d abandoned (%s): %w", d.Release.Version, keep, ctxErr)
	}
	s.mu.Lock()
	why := failed.failure
	s.mu.Unlock()
	if strings.HasPrefix(why, "exit") || strings.HasPrefix(why, "killed") {
		why = "crashed on boot: " + why
	}
	msg := fmt.Sprintf("v%d did not come up: %s %s; %s", d.Release.Version, failed.name(), why, keep)
	if out := failed.tail.String(); out != "" {
		msg += "\nlast output of " + failed.name() + ":\n  " + strings.ReplaceAll(out, "\n", "\n  ")
	}
	a.platform("v%d did not come up: %s %s; %s", d.Release.Version, failed.name(), why, keep)
	return pier.Errorf(pier.EROLLOUT, "%s", msg)
}

// Restart replaces the processes of one type ("" for all) with fresh ones,
// with the same zero-downtime steps as a deploy.
func (s *Scheduler) Restart(ctx context.Context, app, processType string) error {
	a, err := s.appFor(app)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	s.mu.Lock()
	g := a.gen
	if g == nil || len(g.procs) == 0 {
		s.mu.Unlock()
		return pier.Errorf(pier.ENOTFOUND, "app %s has no processes to restart", app)
	}
	if processType != "" && len(g.procs[processType]) == 0 {
		types := sortedKeys(g.procs)
		s.mu.Unlock()
		return pier.Errorf(pier.ENOTFOUND, "app %s has no %s processes: it runs %s", app, processType, strings.Join(types, ", "))
	}
	var start, stop []*proc
	for _, t := range sortedKeys(g.procs) {
		if processType != "" && t != processType {
			continue
		}
		for _, old := range g.procs[t] {
			start = append(start, s.newProcLocked(a, g.dep, t, old.index))
			stop = append(stop, old)
		}
	}
	s.mu.Unlock()
	a.platform("Restarting %s", strings.Join(procNames(stop), ", "))
	if err := s.boot(ctx, a, g.dep, start); err != nil {
		return err
	}
	s.mu.Lock()
	for _, p := range stop {
		g.procs[p.typ] = nil
	}
	s.commitLocked(a, g, start, stop)
	s.mu.Unlock()
	s.finish(a, start, stop)
	return nil
}

func procNames(ps []*proc) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.name()
	}
	return out
}

// Processes lists the app's processes: serving, booting and draining.
func (s *Scheduler) Processes(ctx context.Context, app string) ([]pier.Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	if a == nil {
		return []pier.Process{}, nil
	}
	var all []*proc
	if a.gen != nil {
		for _, ps := range a.gen.procs {
			all = append(all, ps...)
		}
	}
	for p := range a.pending {
		all = append(all, p)
	}
	for p := range a.stopping {
		all = append(all, p)
	}
	out := make([]pier.Process, 0, len(all))
	for _, p := range all {
		pp := pier.Process{App: app, Type: p.typ, Index: p.index, Release: p.release, State: p.state, StartedAt: p.startedAt, Restarts: p.restarts, Reason: p.failure}
		if p.ready && p.routed && p.typ == "web" {
			pp.Addr = p.addr
		}
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Type != y.Type {
			return x.Type < y.Type
		}
		if x.Index != y.Index {
			return x.Index < y.Index
		}
		return x.Release < y.Release
	})
	return out, nil
}

// Logs reads the app's log. See pier.Scheduler.
func (s *Scheduler) Logs(ctx context.Context, app string, opts pier.LogOptions, fn func(pier.LogLine) error) error {
	a, err := s.appFor(app)
	if err != nil {
		return err
	}
	return a.logs.read(ctx, opts, fn)
}

// Destroy stops every process of the app and removes its working
// directories and log: a later app of the same name starts clean.
func (s *Scheduler) Destroy(ctx context.Context, app string) error {
	s.mu.Lock()
	a := s.apps[app]
	s.mu.Unlock()
	if a == nil {
		return s.removeAppFiles(app)
	}
	a.op.Lock()
	defer a.op.Unlock()
	s.mu.Lock()
	procs := a.allLocked()
	for _, p := range procs {
		p.routed = false
		p.state = pier.ProcessStopping
	}
	delete(s.apps, app)
	s.mu.Unlock()
	s.notify()
	if err := s.stopAll(ctx, procs); err != nil {
		return err
	}
	a.logs.close()
	return s.removeAppFiles(app)
}

func (a *appState) allLocked() []*proc {
	var out []*proc
	if a.gen != nil {
		for _, ps := range a.gen.procs {
			out = append(out, ps...)
		}
	}
	for p := range a.pending {
		out = append(out, p)
	}
	for p := range a.stopping {
		out = append(out, p)
	}
	return out
}

func (s *Scheduler) removeAppFiles(app string) error {
	if err := pier.ValidateAppName(app); err != nil {
		return err
	}
	err1 := os.RemoveAll(filepath.Join(s.cfg.DataDir, "run", app))
	err2 := os.Remove(filepath.Join(s.cfg.DataDir, "logs", app+".log"))
	if errors.Is(err2, os.ErrNotExist) {
		err2 = nil
	}
	return errors.Join(err1, err2)
}

// stopAll stops procs and waits for them; when ctx ends first, it kills
// what is left at once.
func (s *Scheduler) stopAll(ctx context.Context, procs []*proc) error {
	for _, p := range procs {
		p.stop()
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			for _, q := range procs {
				q.kill()
			}
			for _, q := range procs {
				<-q.done
			}
			return ctx.Err()
		}
	}
	return nil
}

// Shutdown stops every process (SIGTERM, SIGKILL after StopGrace or when ctx
// ends) and one-off process (SIGKILL), waits for them and refuses further
// work. pierd calls it when it stops. Once it returns nil, no record of a
// process group is left in pgroups/.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var procs []*proc
	for _, a := range s.apps {
		for _, p := range a.allLocked() {
			p.routed = false
			procs = append(procs, p)
		}
	}
	for g := range s.runs {
		g.Signal(syscall.SIGKILL)
	}
	s.mu.Unlock()
	s.notify()
	err := s.stopAll(ctx, procs)
	// No Run registers after closed is set: the wait group only shrinks.
	runsDone := make(chan struct{})
	go func() {
		s.runWG.Wait()
		close(runsDone)
	}()
	select {
	case <-runsDone:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return errors.Join(err, s.unguard(), s.unlimit())
}
