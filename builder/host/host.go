// Package host is the "host" build strategy: the real CNB lifecycle
// (github.com/buildpacks/lifecycle, pinned in go.mod, built by `make
// lifecycle`) runs its detector and builder phases directly on this
// machine, with no container runtime, over Pier's own buildpacks (package
// buildpacks, installed by `make buildpacks`).
//
// # Build store
//
// Every build gets a fresh, never reused directory under Config.WorkDir:
//
//	<WorkDir>/<app>/<build id>/app      the app's source, as built (node_modules, ...)
//	<WorkDir>/<app>/<build id>/layers   the launch layers and config/metadata.toml
//	<WorkDir>/<app>/<build id>/cnb      the launcher and one symlink to it per process type
//	<WorkDir>/<app>/.cache/             cache layers kept between builds of the app
//	<WorkDir>/.pgroups/                 records of the build phases running (pierd's alone)
//
// BuildResult.Image is that build directory. Once the build is done nothing
// changes it (when pierd runs as root it is handed back to root, so neither
// the builds nor the app processes, which run unprivileged, can alter it):
// releases and rollbacks can point at it for as long as it is kept.
//
// As root, WorkDir is 0711 (no app can list the apps) and <WorkDir>/<app>
// is 0750 root:<the app's gid>: the app's processes reach its builds, no
// other app's uid can. The app's uid writes its cache, its build's app and
// layers dirs and scratch dir while it builds, and its running processes
// can write them at any time; root never walks those by path (tree.go).
//
// # Caching
//
// The lifecycle's analyzer and restorer phases restore cache layers from a
// cache image or volume; on the host Pier plays their part with plain
// renames, which cost nothing: before a build the app's cache, which only
// holds cached layers (those whose <layer>.toml says cache = true),
// becomes the new build's layers directory, and afterwards the cached
// layers move to a new cache (copying the ones that are also launch
// layers, which stay in the build). Layers that are not
// cache layers never reach a later build, as with a restorer. Building in
// the directory that is later launched keeps absolute paths written by the
// tools (a Python virtualenv's scripts) valid at run time.
//
// # Running a process
//
// LaunchCommand gives what the local scheduler executes for a process type:
//
//	path, env := host.LaunchCommand(result.Image, "web")
//	cmd := exec.Command(path)            // no arguments: the launcher runs the type's command
//	cmd.Dir = filepath.Join(result.Image, "app")
//	cmd.Env = append(env, "PORT=5000")   // plus the release's config vars
//
// path is <build>/cnb/process/<type>, a symlink to the CNB launcher: with
// platform API 0.13 the launcher picks the process type from the name it is
// invoked under. env holds CNB_PLATFORM_API, CNB_LAYERS_DIR, CNB_APP_DIR and
// a PATH where the host's toolchains (node, python3) are found. The launcher
// adds the layers' environment (their bin/ directories on PATH, and so on)
// and execs the process's command in the app directory. Run it as an
// unprivileged user when pierd is root, like the build.
package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/buildpacks"
	"github.com/pierpaas/pier/internal/pgroup"
)

// PlatformAPI is the CNB platform API Pier speaks to the lifecycle and the
// launcher.
const PlatformAPI = "0.13"

// DefaultPath is the PATH builds and launched processes get: the system's
// directories and the usual place of the Go toolchain. It deliberately
// leaves out the server's own PATH, whose entries (under a root-only home,
// say) an unprivileged build could not use.
const DefaultPath = "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultTimeout bounds a build when Config.Timeout is zero.
const DefaultTimeout = 15 * time.Minute

// Nobody is the uid and gid builds run as when pierd runs as root.
const Nobody = 65534

// Config configures the host strategy.
type Config struct {
	// LifecycleDir holds the lifecycle and launcher binaries (bin/lifecycle).
	LifecycleDir string
	// BuildpacksDir holds the buildpacks and order.toml, as written by
	// `pier-buildpack install` (bin/buildpacks).
	BuildpacksDir string
	// WorkDir is the build store root, under the data dir. Its parents
	// must be traversable by the build user.
	WorkDir string
	// Timeout bounds a whole build (DefaultTimeout when zero).
	Timeout time.Duration
	Logger  *slog.Logger
	// UID and GID run builds when pierd is root (Nobody when zero).
	UID, GID int
	// Wrap, when set, is applied to each lifecycle phase's command before
	// it starts: pierd without root runs them in a sandbox that hides its
	// data dir (package sandbox).
	Wrap func(*exec.Cmd) error
	// BuildUser, when set, chooses the uid and gid of each app's builds
	// instead (pierd as root gives each app its own, so that one app's
	// build cannot read or poison another's cache). BuildRequest.UID,
	// when set, comes first.
	BuildUser func(app string) (uid, gid int)
	// Path is the build's PATH (DefaultPath when empty).
	Path string
}

// Strategy is the host build strategy.
type Strategy struct {
	cfg      Config
	root     bool   // running as root: builds switch to cfg.UID/GID
	stage    string // lifecycle and buildpacks, copied where the build user can read them
	groups   *pgroup.Records
	mu       sync.Mutex
	appLocks map[string]*sync.Mutex
}

var _ pier.BuildStrategy = (*Strategy)(nil)

// New checks the configuration and stages the lifecycle and buildpacks into
// WorkDir/.cnb: the operator's copies may live where the unprivileged build
// user cannot reach (a checkout under /root), and a `make` rebuilding them
// must not change a build that is running.
//
// First it kills what the builds of an earlier, killed pierd left running
// (the lifecycle, and the compilers and package managers under it): every
// build phase's process group is recorded in WorkDir/.pgroups while it runs.
func New(cfg Config) (*Strategy, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.UID == 0 {
		cfg.UID = Nobody
	}
	if cfg.GID == 0 {
		cfg.GID = Nobody
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	for _, f := range []string{
		filepath.Join(cfg.LifecycleDir, "lifecycle"),
		filepath.Join(cfg.LifecycleDir, "launcher"),
		filepath.Join(cfg.BuildpacksDir, "order.toml"),
	} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("host builds: %v (run `make lifecycle buildpacks`)", err)
		}
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("host builds: no WorkDir")
	}
	s := &Strategy{cfg: cfg, root: os.Geteuid() == 0, appLocks: map[string]*sync.Mutex{}}
	// Traversable, not listable: each app's uid reaches its own builds
	// (see appDir) and cannot learn the other apps' names here.
	if err := os.MkdirAll(cfg.WorkDir, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(cfg.WorkDir, 0o711); err != nil {
		return nil, err
	}
	// No app is named ".pgroups", and builds cannot write to WorkDir itself.
	var err error
	if s.groups, err = pgroup.Open(filepath.Join(cfg.WorkDir, ".pgroups")); err != nil {
		return nil, fmt.Errorf("host builds: %w", err)
	}
	if _, err := s.groups.Reap(cfg.Logger.With("component", "builds")); err != nil {
		return nil, fmt.Errorf("host builds: removing the records of finished builds: %w", err)
	}
	var suffix [4]byte
	rand.Read(suffix[:])
	s.stage = filepath.Join(cfg.WorkDir, ".cnb", hex.EncodeToString(suffix[:]))
	tmp := s.stage + ".tmp"
	if err := copyTree(cfg.LifecycleDir, filepath.Join(tmp, "lifecycle"), nil); err != nil {
		return nil, fmt.Errorf("staging the lifecycle: %w", err)
	}
	if err := copyTree(cfg.BuildpacksDir, filepath.Join(tmp, "buildpacks"), nil); err != nil {
		return nil, fmt.Errorf("staging the buildpacks: %w", err)
	}
	if err := os.Rename(tmp, s.stage); err != nil {
		return nil, err
	}
	// Older stages belong to earlier runs of pierd; a build of theirs that
	// still runs keeps its open files.
	old, _ := filepath.Glob(filepath.Join(cfg.WorkDir, ".cnb", "*"))
	for _, o := range old {
		if o != s.stage {
			os.RemoveAll(o)
		}
	}
	s.sweepScratch()
	return s, nil
}

// scratchPatterns match what a build leaves in its app's directory when
// pierd is killed during it: its scratch dir, whose platform env dir holds
// the app's config values, and a half-saved cache.
var scratchPatterns = []string{".tmp-*", ".cache.new-*"}

// sweepScratch removes what builds of an earlier, killed pierd left in
// every app's directory (their phases were killed by New): the config
// values must not stay on disk until the app's next build, which may never
// come; and the build dirs those builds never finished (a build gets its
// cnb/ dir last, and only a finished build is recorded), which would stay
// for good.
func (s *Strategy) sweepScratch() {
	var left []string
	for _, pattern := range scratchPatterns {
		l, _ := filepath.Glob(filepath.Join(s.cfg.WorkDir, "*", pattern))
		left = append(left, l...)
	}
	builds, _ := filepath.Glob(filepath.Join(s.cfg.WorkDir, "*", "*"))
	for _, b := range builds {
		if strings.HasPrefix(filepath.Base(b), ".") || strings.HasPrefix(filepath.Base(filepath.Dir(b)), ".") {
			continue // a cache, the records, the stage
		}
		if _, err := os.Lstat(filepath.Join(b, "cnb")); errors.Is(err, fs.ErrNotExist) {
			left = append(left, b)
		}
	}
	for _, l := range left {
		if err := RemoveAll(l); err != nil {
			s.cfg.Logger.Warn("removing what a killed build left", "dir", l, "err", err)
		}
	}
}

// Name is "host".
func (s *Strategy) Name() string { return pier.StrategyHost }

// WorkDir is the build store root.
func (s *Strategy) WorkDir() string { return s.cfg.WorkDir }

// Discard removes a build's directory that no Build row names (see
// pier.BuildDiscarder). Only a build dir of this store is removed.
func (s *Strategy) Discard(res *pier.BuildResult) error {
	rel, err := filepath.Rel(s.cfg.WorkDir, res.Image)
	if err != nil || filepath.IsAbs(rel) || strings.Count(rel, string(filepath.Separator)) != 1 ||
		strings.HasPrefix(rel, ".") || strings.Contains(rel, string(filepath.Separator)+".") {
		return fmt.Errorf("host builds: %s is not a build dir of %s", res.Image, s.cfg.WorkDir)
	}
	return RemoveAll(res.Image)
}

// Close removes the staged lifecycle and buildpacks.
func (s *Strategy) Close() error { return os.RemoveAll(s.stage) }

func (s *Strategy) lock(app string) func() {
	s.mu.Lock()
	l := s.appLocks[app]
	if l == nil {
		l = &sync.Mutex{}
		s.appLocks[app] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// buildUser is the uid and gid req builds as when pierd is root: the
// app's own uid (req.UID), else Config.BuildUser's, else Config.UID/GID.
func (s *Strategy) buildUser(req pier.BuildRequest) (uid, gid int) {
	switch {
	case req.UID != 0:
		return req.UID, req.UID
	case s.cfg.BuildUser != nil:
		return s.cfg.BuildUser(req.App)
	}
	return s.cfg.UID, s.cfg.GID
}

// appDir makes the app's directory of the build store, WorkDir/<app>:
// root's, 0750, group the app's gid, so that the app's processes reach its
// builds and no other app's uid can list or read them. Only root writes it
// (the app's uid owns nothing directly in it but its cache), so the cache
// and the builds can be renamed in it by path.
func (s *Strategy) appDir(dir string, gid int) error {
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	d, err := openDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if s.root {
		// Again at each build: the app's uid may have changed.
		if err := d.Chown(0, gid); err != nil {
			return err
		}
	}
	return d.Chmod(0o750)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Build runs detection and the build of req's source, and stores the
// result under WorkDir/<app>/<build id>.
//
// A build that fails for a full disk, be it the lifecycle's writes (the
// build log says "no space left on device") or Pier's own (the copy of
// the source, the cache), returns pier.NoSpace naming WorkDir, and leaves
// neither its build dir nor a half-saved cache.
func (s *Strategy) Build(ctx context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	res, err := s.newBuild(ctx, req)
	return res, pier.NoSpaceAt(s.cfg.WorkDir, err)
}

func (s *Strategy) newBuild(ctx context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	if err := pier.ValidateAppName(req.App); err != nil {
		return nil, err
	}
	for k := range req.Config {
		// Keys become file names in the platform env dir.
		if !envName.MatchString(k) {
			return nil, pier.Errorf(pier.EINVALID, "config var %q is not a valid environment variable name", k)
		}
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	// Builds of one app share its cache: one at a time. (The SSH builder
	// already serializes pushes per app; this also covers other callers.)
	defer s.lock(req.App)()

	var suffix [3]byte
	rand.Read(suffix[:])
	id := time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(suffix[:])
	return s.build(ctx, req, id, log)
}

// buildIDRE is what Build names a build's directory.
var buildIDRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$`)

// Rebuild builds req again into dir, the build directory an earlier Build
// returned as its Image (recorded in Postgres), which must be gone: after
// a restore on a new machine, Postgres names build outputs that no longer
// exist, and the releases that point at them run again once rebuilt. dir
// must be one of this store's build directories of req.App.
func (s *Strategy) Rebuild(ctx context.Context, req pier.BuildRequest, dir string) (*pier.BuildResult, error) {
	if err := pier.ValidateAppName(req.App); err != nil {
		return nil, err
	}
	id := filepath.Base(dir)
	if filepath.Clean(dir) != filepath.Join(s.cfg.WorkDir, req.App, id) || !buildIDRE.MatchString(id) {
		return nil, fmt.Errorf("host builds: %s is not a build directory of %s in this build store (%s): was the platform restored to another --data-dir path?", dir, req.App, s.cfg.WorkDir)
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	defer s.lock(req.App)()
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("host builds: %s exists already: nothing to rebuild", dir)
	}
	res, err := s.build(ctx, req, id, log)
	return res, pier.NoSpaceAt(s.cfg.WorkDir, err)
}

// build builds req into <WorkDir>/<app>/<id>; the caller holds the app's
// lock.
func (s *Strategy) build(ctx context.Context, req pier.BuildRequest, id string, log io.Writer) (*pier.BuildResult, error) {
	appRoot := filepath.Join(s.cfg.WorkDir, req.App)
	out := filepath.Join(appRoot, id)
	cache := filepath.Join(appRoot, ".cache")
	tmp := filepath.Join(appRoot, ".tmp-"+id)
	// tmp holds the platform env dir, that is the config values: it goes
	// whatever happens.
	defer os.RemoveAll(tmp)
	ok := false
	defer func() {
		if !ok {
			RemoveAll(out)
		}
	}()

	uid, gid := s.buildUser(req)
	if s.root && (uid <= 0 || gid <= 0) {
		return nil, fmt.Errorf("host builds: refusing to build %s as root", req.App)
	}
	if err := s.appDir(appRoot, gid); err != nil {
		return nil, err
	}
	// New swept what a killed pierd's builds left; a cache whose saving
	// failed in this process may be left too. Builds of the app take
	// turns, so none is in use.
	for _, pattern := range scratchPatterns {
		left, _ := filepath.Glob(filepath.Join(appRoot, pattern))
		for _, l := range left {
			if l != tmp {
				RemoveAll(l)
			}
		}
	}
	// Everything below is made by root, and only root can write it until
	// giveTree hands it over: no path here can have been swapped.
	for _, d := range []string{filepath.Join(out, "app"),
		filepath.Join(tmp, "platform", "env"), filepath.Join(tmp, "home"), filepath.Join(tmp, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := copyTree(req.SourceDir, filepath.Join(out, "app"), func(rel string) bool { return rel == ".git" }); err != nil {
		return nil, fmt.Errorf("copying the source: %w", err)
	}
	// Config values go to files, never to argv or a shell: the lifecycle
	// hands them to the buildpacks as environment variables.
	for k, v := range req.Config {
		if err := os.WriteFile(filepath.Join(tmp, "platform", "env", k), []byte(v), 0o600); err != nil {
			return nil, err
		}
	}
	// No analyzer runs (there is no previous image to analyze), so the
	// builder gets an empty analyzed.toml instead of warning about its
	// absence.
	analyzed := filepath.Join(tmp, "analyzed.toml")
	if err := os.WriteFile(analyzed, nil, 0o644); err != nil {
		return nil, err
	}
	layers := filepath.Join(out, "layers")
	if s.root {
		// The build writes its app dir, layers and scratch dir; out stays
		// root's, so the build cannot put anything beside them (cnb/).
		for _, d := range []string{filepath.Join(out, "app"), tmp} {
			if err := giveTree(d, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	owner, ownerGroup := uid, gid
	if !s.root {
		owner, ownerGroup = os.Geteuid(), os.Getegid()
	}
	if err := restoreCache(cache, layers, owner, ownerGroup); err != nil {
		return nil, fmt.Errorf("restoring the build cache: %w", err)
	}
	// From here on a failed build must still give the cache back.
	saved := false
	defer func() {
		if !saved {
			if err := SaveCache(layers, cache); err != nil {
				s.cfg.Logger.Warn("keeping the build cache", "app", req.App, "err", err)
			}
		}
	}()

	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, errTimeout)
	defer cancel()
	start := time.Now()
	bps := filepath.Join(s.stage, "buildpacks")
	group := filepath.Join(tmp, "group.toml")
	plan := filepath.Join(tmp, "plan.toml")
	var detectOut bytes.Buffer
	err := s.phase(ctx, uid, gid, tmp, "detector", &detectOut,
		"-app", filepath.Join(out, "app"), "-buildpacks", bps, "-layers", layers,
		"-order", filepath.Join(bps, "order.toml"), "-platform", filepath.Join(tmp, "platform"),
		"-group", group, "-plan", plan, "-no-color", "-log-level", "warn")
	if err != nil {
		if e := s.timedOut(ctx, log); e != nil {
			return nil, e
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 20 { // the lifecycle's "failed detect"
			fmt.Fprintf(log, " !     No buildpack detected for this app.\n !     Pier recognises: %s.\n",
				buildpacks.Recognised)
			return nil, pier.Errorf(pier.EINVALID, "no buildpack detected: Pier recognises %s", buildpacks.Recognised)
		}
		log.Write(detectOut.Bytes())
		if bytes.Contains(bytes.ToLower(detectOut.Bytes()), []byte(noSpaceText)) {
			return nil, pier.NoSpace(s.cfg.WorkDir)
		}
		return nil, pier.Errorf(pier.EINVALID, "buildpack detection failed: %v", err)
	}
	if ids := groupIDs(tmp); len(ids) > 0 {
		fmt.Fprintf(log, "-----> Buildpacks: %s\n", strings.Join(ids, ", "))
	}
	reason := &reasonWriter{w: log}
	err = s.phase(ctx, uid, gid, tmp, "builder", reason,
		"-app", filepath.Join(out, "app"), "-buildpacks", bps, "-layers", layers,
		"-group", group, "-plan", plan, "-platform", filepath.Join(tmp, "platform"),
		"-analyzed", analyzed, "-no-color", "-log-level", "warn")
	if err != nil {
		if e := s.timedOut(ctx, log); e != nil {
			return nil, e
		}
		if reason.noSpace() {
			// A buildpack's reason ("go build failed") would hide the
			// cause, and the app's code is not at fault.
			return nil, pier.NoSpace(s.cfg.WorkDir)
		}
		if r := reason.reason(); r != "" {
			return nil, pier.Errorf(pier.EINVALID, "build failed: %s", r)
		}
		return nil, pier.Errorf(pier.EINVALID, "build failed (%v); the build log says why", err)
	}
	saved = true
	if err := SaveCache(layers, cache); err != nil {
		return nil, fmt.Errorf("saving the build cache: %w", err)
	}
	if s.root {
		// Immutable from now on: builds and apps run unprivileged.
		if err := lockTree(out, uid, gid); err != nil {
			return nil, fmt.Errorf("making the build read-only: %w", err)
		}
	}
	procs, err := processTypes(layers)
	if err != nil {
		return nil, fmt.Errorf("reading the launch metadata: %w", err)
	}
	if err := s.installLauncher(out, procs); err != nil {
		return nil, err
	}
	types := make([]string, 0, len(procs))
	for t := range procs {
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintf(log, "-----> Build done in %.1fs; process types: %s\n", time.Since(start).Seconds(), strings.Join(types, ", "))
	ok = true
	s.cfg.Logger.Info("build done", "app", req.App, "build", id, "took", time.Since(start))
	return &pier.BuildResult{Image: out, ProcessTypes: procs}, nil
}

var errTimeout = errors.New("build timeout")

// timedOut says so, in the log and as the build's error, when the build's
// own timeout (not the caller's context) ended it.
func (s *Strategy) timedOut(ctx context.Context, log io.Writer) error {
	if context.Cause(ctx) != errTimeout {
		return nil
	}
	err := pier.Errorf(pier.EINVALID, "build timed out after %s (the platform's build timeout)", s.cfg.Timeout)
	fmt.Fprintf(log, " !     %s\n", err.Message)
	return err
}

// phase runs one lifecycle phase. The lifecycle is one binary that picks
// the phase from argv[0]; arguments go in a vector, never through a shell.
func (s *Strategy) phase(ctx context.Context, uid, gid int, tmp, name string, out io.Writer, args ...string) error {
	cmd := exec.Command(filepath.Join(s.stage, "lifecycle", "lifecycle"), args...)
	cmd.Args[0] = name
	cmd.Dir = tmp
	cmd.Env = s.buildEnv(tmp)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.root {
		// The lifecycle refuses to run as root, and builds must not.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if s.cfg.Wrap != nil {
		if err := s.cfg.Wrap(cmd); err != nil {
			return err
		}
	}
	// Output pipes held open by a process that left the group end too.
	cmd.WaitDelay = 5 * time.Second
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// Recorded, so that a pierd killed mid-build has the phase killed
	// when it starts again.
	g, err := s.groups.Track(cmd)
	if err != nil {
		return err
	}
	// Wait kills the stragglers of a finished phase, in its group, and
	// reaps it.
	waitc := make(chan error, 1)
	go func() { waitc <- g.Wait() }()
	select {
	case err := <-waitc:
		return err
	case <-ctx.Done():
		// On timeout or cancel, kill the whole process group: the
		// buildpacks' children (go build, npm) must not outlive the build.
		g.Signal(syscall.SIGKILL)
		<-waitc
		return ctx.Err()
	}
}

// reasonWriter passes a build log through and remembers the last error a
// Pier buildpack reported (" !     ..."), to give the failed build's error
// a reason. Pier's buildpacks never put config values in those lines.
type reasonWriter struct {
	w    io.Writer
	mu   sync.Mutex
	line []byte
	last string
	full bool // a line said "no space left on device"
}

// noSpaceText is how a tool (go, npm, pip, the lifecycle) says ENOSPC:
// strerror's words, lower-cased.
const noSpaceText = "no space left on device"

func (r *reasonWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	for _, c := range p {
		if c != '\n' {
			if len(r.line) < 1024 {
				r.line = append(r.line, c)
			}
			continue
		}
		if s, ok := strings.CutPrefix(string(r.line), " !     "); ok {
			r.last = strings.TrimSpace(s)
		}
		if strings.Contains(strings.ToLower(string(r.line)), noSpaceText) {
			r.full = true
		}
		r.line = r.line[:0]
	}
	r.mu.Unlock()
	return r.w.Write(p)
}

func (r *reasonWriter) noSpace() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.full
}

func (r *reasonWriter) reason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// passedEnv are variables of the server's environment that builds inherit:
// how to reach the network and the package proxies, nothing else.
var passedEnv = []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
	"GOPROXY", "GONOSUMDB", "GOPRIVATE", "GOSUMDB", "GOINSECURE", "SSL_CERT_FILE", "SSL_CERT_DIR"}

func (s *Strategy) buildEnv(tmp string) []string {
	env := []string{
		"CNB_PLATFORM_API=" + PlatformAPI,
		"PATH=" + s.cfg.Path,
		"HOME=" + filepath.Join(tmp, "home"),
		"TMPDIR=" + filepath.Join(tmp, "tmp"),
		"LANG=C.UTF-8",
	}
	for _, k := range passedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// groupIDs reads the buildpacks the detector chose from tmp/group.toml.
// tmp is the build's: the file is opened without following a symlink.
func groupIDs(tmp string) []string {
	var g struct {
		Group []struct {
			ID string `toml:"id"`
		} `toml:"group"`
	}
	b, err := readFileBeneath(tmp, maxToml, "group.toml")
	if err != nil {
		return nil
	}
	if _, err := toml.Decode(string(b), &g); err != nil {
		return nil
	}
	var ids []string
	for _, b := range g.Group {
		ids = append(ids, b.ID)
	}
	return ids
}
