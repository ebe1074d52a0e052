// Package builder is Pier's git front door: an SSH server that lets app
// members `git push` to an app (and `git clone` it), keeps one bare
// repository per app, and hands a push to main or master to a Deployer.
//
// Nothing a client sends ever reaches a shell: the exec request is parsed
// strictly (see parseCommand), git runs with argument vectors and a fixed
// environment, and refs are compared by the server itself rather than by
// hooks inside the repository.
package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/pierpaas/pier"
)

// Defaults for Config's zero values.
const (
	DefaultAddr         = ":2222"
	DefaultMaxPushBytes = 500 << 20
	// No traffic either way for this long ends a connection. A build may
	// be quiet for minutes (compiling): during a deploy the server sends
	// keepalives, so only a client that stalls counts as idle.
	DefaultIdleTimeout = 10 * time.Minute
	// Covers a push, a queued push before it, and a build (15 min default).
	DefaultMaxTimeout = time.Hour
	// A queued push waits this long for the one before it to finish.
	DefaultLockTimeout = 20 * time.Minute
	// A connection must authenticate within this (OpenSSH's LoginGraceTime).
	DefaultLoginGraceTime = 30 * time.Second
	// At most this many connections may be authenticating at once; more
	// are closed as soon as they are accepted (OpenSSH's MaxStartups).
	DefaultMaxUnauthenticated = 64
)

// Authorizer answers who a key belongs to and what they may do to an app:
// pier.Store does, in pierd all; a builder running alone asks the
// controller (builder/remote).
type Authorizer interface {
	UserForKey(ctx context.Context, fingerprint string) (*pier.User, error)
	// AppAccess returns the app, and the user's role on it; ENOTFOUND
	// when the app does not exist or the user may not see it.
	AppAccess(ctx context.Context, app, username string) (*pier.App, string, error)
}

// Config configures a Server. DataDir, Store and Deployer are required.
type Config struct {
	Addr         string // listen address for ListenAndServe; DefaultAddr if empty
	DataDir      string // holds the host key and repos/<app>.git
	Store        Authorizer
	Deployer     Deployer
	Logger       *slog.Logger  // slog.Default() if nil
	MaxPushBytes int64         // bytes a push may send; DefaultMaxPushBytes if 0, no limit if < 0
	IdleTimeout  time.Duration // connection closed after this long without traffic either way; none if < 0
	MaxTimeout   time.Duration // connection closed after this long whatever happens; none if < 0
	LockTimeout  time.Duration // how long a push waits for another push to the same app
	// TreeDir is where pushes are checked out while they build
	// (DeployRequest.TreeDir); the caller empties it at start
	// (ResetTreeDir). "": the system's temporary directory.
	TreeDir string

	// LoginGraceTime closes a connection that has not authenticated this
	// long after it was accepted; DefaultLoginGraceTime if 0, none if < 0.
	LoginGraceTime time.Duration
	// MaxUnauthenticated caps the connections not yet authenticated; one
	// more is closed at once. DefaultMaxUnauthenticated if 0, none if < 0.
	MaxUnauthenticated int
}

// Server is the builder's SSH server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	git      string // path of the git binary
	hostKey  gossh.Signer
	reposDir string
	ssh      *gliderssh.Server
	preauth  *preauth

	mu   sync.Mutex
	addr net.Addr
}

// New checks cfg, loads (or creates, the first time) the host key in the
// data dir, and returns a Server ready to Serve.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.DataDir == "":
		return nil, errors.New("builder: Config.DataDir is required")
	case cfg.Store == nil:
		return nil, errors.New("builder: Config.Store is required")
	case cfg.Deployer == nil:
		return nil, errors.New("builder: Config.Deployer is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPushBytes == 0 {
		cfg.MaxPushBytes = DefaultMaxPushBytes
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.LoginGraceTime == 0 {
		cfg.LoginGraceTime = DefaultLoginGraceTime
	}
	if cfg.MaxUnauthenticated == 0 {
		cfg.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("builder: git is needed to receive pushes: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "builder"),
		git:      git,
		reposDir: filepath.Join(cfg.DataDir, "repos"),
	}
	s.preauth = &preauth{grace: cfg.LoginGraceTime, max: cfg.MaxUnauthenticated, log: s.log}
	// Repos hold every app's source: only pierd may read them; builds get
	// a copy (CheckoutTree).
	if err := os.MkdirAll(s.reposDir, 0o700); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	s.hostKey, err = loadOrCreateHostKey(filepath.Join(cfg.DataDir, hostKeyFile))
	if err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	s.ssh = &gliderssh.Server{
		Addr:             cfg.Addr,
		Handler:          s.handle,
		HostSigners:      []gliderssh.Signer{s.hostKey},
		Version:          "Pier",
		PublicKeyHandler: s.authorizeKey,
		// git never asks for a terminal, and gliderlabs rewrites "\n" to
		// "\r\n" on a pty, which would corrupt git's protocol.
		PtyCallback: func(gliderssh.Context, gliderssh.Pty) bool { return false },
		// Hostile clients: a bounded number of connections may be
		// authenticating, each for a bounded time (preauth); then the idle
		// and absolute timeouts apply.
		ConnCallback:         s.preauth.accept,
		ServerConfigCallback: s.preauth.serverConfig,
		IdleTimeout:          cfg.IdleTimeout,
		MaxTimeout:           cfg.MaxTimeout,
		// Only sessions: no port forwarding, no subsystems (sftp), no
		// global requests. Non-nil maps keep gliderlabs' defaults out.
		ChannelHandlers:   map[string]gliderssh.ChannelHandler{"session": gliderssh.DefaultSessionHandler},
		SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
		RequestHandlers:   map[string]gliderssh.RequestHandler{},
		ConnectionFailedCallback: func(c net.Conn, err error) {
			s.log.Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		},
	}
	s.log.Info("builder ready", "host_key", s.HostKeyFingerprint(), "data_dir", cfg.DataDir)
	return s, nil
}

// HostKeyFingerprint is the SHA256 fingerprint of the host key, for users
// to check the first time they connect.
func (s *Server) HostKeyFingerprint() string { return gossh.FingerprintSHA256(s.hostKey.PublicKey()) }

// ListenAndServe listens on Config.Addr and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve serves SSH on l until Shutdown, after which it returns nil.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.addr = l.Addr()
	s.mu.Unlock()
	err := s.ssh.Serve(l)
	if errors.Is(err, gliderssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Addr is the address being served, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops accepting connections and waits for the ones open (pushes
// and their deploys) to finish until ctx ends; then it closes them, which
// cancels their git processes and deploys.
func (s *Server) Shutdown(ctx context.Context) error {
	s.preauth.close()
	err := s.ssh.Shutdown(ctx)
	if err != nil {
		s.ssh.Close()
	}
	return err
}

// ctxUserKey holds, in the SSH connection's context, the user the last
// accepted key belongs to. golang.org/x/crypto/ssh guarantees that the last
// key passed to the auth callback is the one the client authenticated with,
// and the session handler looks the key up again anyway.
type ctxUserKey struct{}

// authorizeKey accepts a key only if a user has registered it, so unknown
// keys are refused before any command is read.
func (s *Server) authorizeKey(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	fp := gossh.FingerprintSHA256(key)
	u, err := s.cfg.Store.UserForKey(ctx, fp)
	if err != nil {
		if pier.ErrorCode(err) != pier.ENOTFOUND {
			s.log.Error("looking up ssh key", "fingerprint", fp, "err", err)
		} else {
			s.log.Debug("unknown ssh key", "fingerprint", fp, "remote", ctx.RemoteAddr().String())
		}
		ctx.SetValue(ctxUserKey{}, nil)
		return false
	}
	ctx.SetValue(ctxUserKey{}, u.Username)
	return true
}

// handle runs one SSH session and always ends it with an exit status.
func (s *Server) handle(sess gliderssh.Session) {
	defer func() {
		// A panic (in a Deployer, say) ends this push, not every push.
		if v := recover(); v != nil {
			s.log.Error("panic in ssh session", "panic", v, "stack", string(debug.Stack()))
			fmt.Fprintln(sess.Stderr(), "pier: internal error; the server log has the details")
			sess.Exit(1)
		}
	}()
	code := s.session(sess)
	if err := sess.Exit(code); err != nil {
		s.log.Debug("ending ssh session", "err", err)
	}
}

// noAccess is the same for an unknown app and an app the user is not a
// member of, so that a key cannot be used to probe which apps exist.
const noAccess = "app %q not found, or you are not one of its members (see `pier apps` and `pier perms`)"

func (s *Server) session(sess gliderssh.Session) int {
	ctx := sess.Context()
	stderr := sess.Stderr()
	log := s.log.With("remote", sess.RemoteAddr().String())
	refuse := func(format string, args ...any) int {
		reason := fmt.Sprintf(format, args...)
		fmt.Fprintf(stderr, "pier: %s\n", reason)
		log.Info("git command refused", "reason", reason)
		return 1
	}

	key := sess.PublicKey()
	if key == nil {
		return refuse("public key authentication is required")
	}
	user, err := s.cfg.Store.UserForKey(ctx, gossh.FingerprintSHA256(key))
	if err != nil {
		if pier.ErrorCode(err) == pier.ENOTFOUND {
			return refuse("%s", pier.ErrorMessage(err))
		}
		log.Error("looking up ssh key", "err", err)
		return refuse("%s", s.reason(err, "internal error; try again"))
	}
	log = log.With("user", user.Username)

	cmd, err := parseCommand(sess.RawCommand())
	if err != nil {
		return refuse("%s", err.Error())
	}
	log = log.With("app", cmd.App, "service", cmd.Service)

	_, role, err := s.cfg.Store.AppAccess(ctx, cmd.App, user.Username)
	switch {
	case pier.ErrorCode(err) == pier.ENOTFOUND && user.Admin:
		return refuse("app %q does not exist: create it with `pier apps:create %s`", cmd.App, cmd.App)
	case pier.ErrorCode(err) == pier.ENOTFOUND:
		return refuse(noAccess, cmd.App)
	case err != nil:
		log.Error("checking app access", "err", err)
		return refuse("internal error; try again")
	case role == "" && !user.Admin:
		return refuse(noAccess, cmd.App)
	}

	if cmd.Service == uploadPack {
		return s.upload(sess, cmd.App, log, refuse)
	}
	return s.receive(sess, user.Username, user.Admin, cmd.App, log, refuse)
}

func (s *Server) repoDir(app string) string { return RepoDir(s.cfg.DataDir, app) }

// RepoDir is where the builder keeps app's bare repository under its data
// dir (Config.DataDir), for readers beside it: the rebuild after a restore.
func RepoDir(dataDir, app string) string { return filepath.Join(dataDir, "repos", app+".git") }

// lockPath is beside the repo rather than in it: the lock also guards the
// repo's creation on the first push.
func (s *Server) lockPath(app string) string { return filepath.Join(s.reposDir, app+".lock") }

// upload serves a fetch or clone. It takes no lock: git keeps a repository
// readable while a push updates it.
func (s *Server) upload(sess gliderssh.Session, app string, log *slog.Logger, refuse func(string, ...any) int) int {
	dir := s.repoDir(app)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return refuse("app %q has no code yet: git push to it first", app)
	}
	log.Info("git fetch")
	// --strict: serve dir itself, never dir/.git.
	res := s.runGit(sess, 0, gitProtocolEnv(sess.Environ()), "upload-pack", "--strict", dir)
	if res.err != nil {
		log.Error("git upload-pack", "err", res.err)
		return refuse("internal error; try again")
	}
	return res.code
}

// receive serves a push: lock, receive, compare refs, deploy main.
func (s *Server) receive(sess gliderssh.Session, username string, admin bool, app string, log *slog.Logger, refuse func(string, ...any) int) int {
	ctx := sess.Context()
	stderr := sess.Stderr()

	lock, err := acquirePushLock(ctx, s.lockPath(app), app, s.cfg.LockTimeout, stderr)
	if err != nil {
		var busy errPushBusy
		switch {
		case errors.As(err, &busy):
			return refuse("%s", busy.Error())
		case ctx.Err() != nil:
			return 1 // the pusher went away
		}
		log.Error("locking app for push", "err", err)
		return refuse("%s", s.failure(err))
	}
	defer lock.Unlock()
	// The app may have been destroyed while this push waited (RemoveRepo
	// held the lock), or the pusher removed from it: no repository for an
	// app that is gone, no push by someone who is no longer a member. The
	// store answers a non-member with the app and an empty role.
	a, role, err := s.cfg.Store.AppAccess(ctx, app, username)
	switch {
	case pier.ErrorCode(err) == pier.ENOTFOUND:
		return refuse(noAccess, app)
	case err != nil:
		log.Error("checking app access", "err", err)
		return refuse("internal error; try again")
	case role == "" && !admin:
		return refuse(noAccess, app)
	}

	dir, err := s.ensureRepo(ctx, app, a.CreatedAt, log)
	if err != nil {
		log.Error("creating repository", "err", err)
		return refuse("%s", s.failure(err))
	}
	s.recoverJournal(ctx, dir, log)
	before, err := s.listRefs(ctx, dir)
	if err != nil {
		log.Error("listing refs", "err", err)
		return refuse("%s", s.failure(err))
	}

	// Hooks are off (core.hooksPath names no directory): the server does
	// what hooks would, after receive-pack, without a shell. The automatic
	// gc runs in the foreground, under our lock, rather than as a detached
	// process holding the session's output open and outliving pierd.
	res := s.runGit(sess, s.cfg.MaxPushBytes, gitProtocolEnv(sess.Environ()),
		"-c", "core.hooksPath=/dev/null", "-c", "gc.autoDetach=false", "receive-pack", dir)
	if res.tooLarge || res.err != nil || res.code != 0 {
		// A killed receive-pack may leave its quarantine behind; we hold
		// the lock, so no other push is using one.
		s.removeQuarantine(dir)
	}
	if res.tooLarge {
		log.Info("push too large", "limit", s.cfg.MaxPushBytes)
		return refuse("push refused: it is larger than the limit of %s; remove large files from the history, or ask the operator to raise the limit", formatBytes(s.cfg.MaxPushBytes))
	}
	if res.err != nil {
		log.Error("git receive-pack", "err", res.err)
		return refuse("%s", s.failure(res.err))
	}

	after, err := s.listRefs(ctx, dir)
	if err != nil {
		log.Error("listing refs", "err", err)
		return refuse("%s", s.failure(err))
	}
	changed := diffRefs(before, after)
	// A client with nothing to push sends a flush packet alone ("0000").
	// Nothing stored, and the disk is why: git's own words name a lock
	// file or a temporary object, not the cause nor what to do.
	if len(changed) == 0 && res.received > 4 && (res.noSpace || nearlyFull(dir)) {
		log.Error("push failed: disk full", "repos", s.reposDir, "git_said_so", res.noSpace)
		return refuse("push refused: %s", pier.NoSpace(s.reposDir).Message)
	}
	if len(changed) == 0 {
		// Nothing stored: "Everything up-to-date", or a push git refused
		// (receive-pack has told the pusher why).
		return res.code
	}
	log.Info("push received", "refs", len(changed))

	ref, commit := deployTarget(changed)
	if ref == "" {
		for _, r := range []string{"refs/heads/main", "refs/heads/master"} {
			if c, ok := changed[r]; ok && c.new == "" {
				fmt.Fprintf(stderr, "pier: %s deleted: nothing deployed; the app keeps its current release\n", strings.TrimPrefix(r, "refs/heads/"))
				return res.code
			}
		}
		fmt.Fprintf(stderr, "not deployed: push to main to deploy\n")
		return res.code
	}
	s.pointHEAD(ctx, dir, ref, log)

	j := journal{Ref: ref, Old: changed[ref].old, New: commit}
	if err := s.writeJournal(dir, j); err != nil {
		log.Error("writing the deploy journal", "err", err)
		s.undoOrWarn(dir, j, log)
		return refuse("%s", s.failure(err))
	}
	start := time.Now()
	log.Info("deploying", "ref", ref, "commit", commit)
	stopKeepalive := s.keepalive(ctx)
	err = s.cfg.Deployer.Deploy(ctx, DeployRequest{
		App:     app,
		User:    username,
		Repo:    dir,
		Commit:  commit,
		Ref:     ref,
		Log:     stderr,
		TreeDir: s.cfg.TreeDir,
	})
	stopKeepalive()
	if err != nil {
		log.Warn("deploy failed", "commit", commit, "err", err, "duration", time.Since(start))
		fmt.Fprintf(stderr, "pier: deploy failed: %s\n", oneLine(s.reason(err, pier.ErrorMessage(err))))
		if s.undoOrWarn(dir, j, log) {
			fmt.Fprintf(stderr, "pier: %s was not updated: push again to retry\n", strings.TrimPrefix(ref, "refs/heads/"))
		}
		return 1
	}
	if err := s.clearJournal(dir); err != nil {
		log.Warn("removing the deploy journal", "err", err)
	}
	log.Info("deployed", "commit", commit, "duration", time.Since(start))
	return res.code
}

// failure is what the pusher is told of an error of the server's own: a
// full disk, and what to do, or an internal error (the log has it).
func (s *Server) failure(err error) string {
	if pier.IsNoSpace(err) {
		return "push refused: " + pier.NoSpace(s.reposDir).Message
	}
	return "internal error; try again"
}

// undoOrWarn undoes a deploy's ref update and clears its journal. It runs
// even when the pusher has gone (the session's context is done).
func (s *Server) undoOrWarn(dir string, j journal, log *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.undoRef(ctx, dir, j); err != nil {
		log.Warn("undoing the ref update of a failed deploy", "err", err)
		return false
	}
	if err := s.clearJournal(dir); err != nil {
		log.Warn("removing the deploy journal", "err", err)
	}
	return true
}

// maxKeepaliveEvery bounds the interval between keepalives.
const maxKeepaliveEvery = time.Minute

// keepalive sends the client a keepalive request every so often until
// stop is called: a build may print nothing for minutes (compiling), and
// the idle timeout must not end a push while the server is the one at work.
// The request wants no reply; sending it is traffic. (While the client is
// the one that should talk, as in receive-pack, none are sent: a stalled
// client holding the app's push lock is ended by the idle timeout.)
func (s *Server) keepalive(ctx gliderssh.Context) (stop func()) {
	conn, ok := ctx.Value(gliderssh.ContextKeyConn).(*gossh.ServerConn)
	every := min(s.cfg.IdleTimeout/3, maxKeepaliveEvery)
	if !ok || every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if _, _, err := conn.SendRequest("keepalive@openssh.com", false, nil); err != nil {
					return
				}
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// RemoveRepo deletes the bare repository of app and its lock file, for an
// app that has been destroyed. It waits for a push to the app in progress
// to finish (it takes the app's push lock), for as long as ctx allows. It
// removes nothing and returns nil when the app has no repository; an
// invalid app name is refused, so nothing outside the repos directory can
// ever be named.
func (s *Server) RemoveRepo(ctx context.Context, app string) error {
	if err := pier.ValidateAppName(app); err != nil {
		return err
	}
	dir, lockPath := s.repoDir(app), s.lockPath(app)
	_, errRepo := os.Lstat(dir)
	_, errLock := os.Lstat(lockPath)
	if errors.Is(errRepo, fs.ErrNotExist) && errors.Is(errLock, fs.ErrNotExist) {
		return nil
	}
	lock, err := acquirePushLock(ctx, lockPath, app, 0, io.Discard)
	if err != nil {
		return fmt.Errorf("removing the repository of %s: %w", app, err)
	}
	defer lock.Unlock()
	var errs []error
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	// What a crash in ensureRepo left: ".init-<app>-<digits>" (the digits
	// tell it from the leftover of an app whose name extends this one's).
	tmps, _ := filepath.Glob(filepath.Join(s.reposDir, ".init-"+app+"-*"))
	for _, t := range tmps {
		if rest := strings.TrimPrefix(filepath.Base(t), ".init-"+app+"-"); rest != "" && strings.Trim(rest, "0123456789") == "" {
			if err := os.RemoveAll(t); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Removed while held: a push that waited on this file finds it gone
	// once it gets the lock, and locks a new one (see acquirePushLock).
	if err := os.Remove(lockPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing the repository of %s: %w", app, err)
	}
	s.log.Info("repository removed", "app", app)
	return nil
}

// ensureRepo returns the app's bare repository, creating it on the first
// push. It is made under a temporary name and renamed into place, so a
// crash never leaves a half-made repository behind. The caller holds the
// app's push lock.
//
// The repository records when its app was created (repoAppFile): a
// repository left by a destroyed app of the same name, which a builder
// running apart from the controller never hears of (RemoveRepo), is
// replaced rather than handed to the new app's owner.
func (s *Server) ensureRepo(ctx context.Context, app string, created time.Time, log *slog.Logger) (string, error) {
	dir := s.repoDir(app)
	mark := created.UTC().Format(time.RFC3339Nano) + "\n"
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		had, err := os.ReadFile(filepath.Join(dir, repoAppFile))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Made before repositories were marked: this app's.
			return dir, os.WriteFile(filepath.Join(dir, repoAppFile), []byte(mark), 0o644)
		case err != nil:
			return "", err
		case string(had) == mark:
			return dir, nil
		}
		log.Info("the repository is a destroyed app's of the same name: starting a new one")
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp(s.reposDir, ".init-"+app+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	// --template= : no sample hooks or other template files.
	if _, err := s.gitOutput(ctx, "init", "--bare", "--quiet", "--template=", "--initial-branch=main", tmp); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, repoAppFile), []byte(mark), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// repoAppFile, in a bare repository, holds its app's creation time. git
// leaves files it does not know alone.
const repoAppFile = "pier-app"

// pointHEAD makes the repo's HEAD name ref if HEAD names no existing
// branch, so that `git clone` checks out the deployed branch (a repo whose
// first push was to master has a dangling HEAD -> main).
func (s *Server) pointHEAD(ctx context.Context, dir, ref string, log *slog.Logger) {
	if _, err := s.gitOutput(ctx, "--git-dir="+dir, "rev-parse", "--verify", "--quiet", "HEAD"); err == nil {
		return
	}
	// ref is one of our two constants, never user input.
	if _, err := s.gitOutput(ctx, "--git-dir="+dir, "symbolic-ref", "HEAD", ref); err != nil {
		log.Warn("pointing HEAD", "ref", ref, "err", err)
	}
}

// removeQuarantine deletes what an interrupted receive-pack can leave:
// its quarantine directory (git ≥ 2.11) and temporary packs.
func (s *Server) removeQuarantine(dir string) {
	for _, pattern := range []string{"objects/incoming-*", "objects/pack/tmp_*", "objects/tmp_*"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				s.log.Warn("removing leftover of an interrupted push", "path", m, "err", err)
			}
		}
	}
}

// refChange is a ref's object before and after a push ("" if absent).
type refChange struct{ old, new string }

// listRefs returns every ref of the repo and the object it points to.
func (s *Server) listRefs(ctx context.Context, dir string) (map[string]string, error) {
	out, err := s.gitOutput(ctx, "--git-dir="+dir, "for-each-ref", "--format=%(objectname) %(refname)")
	if err != nil {
		return nil, err
	}
	refs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if sha, ref, ok := strings.Cut(line, " "); ok {
			refs[ref] = sha
		}
	}
	return refs, nil
}

func diffRefs(before, after map[string]string) map[string]refChange {
	changed := map[string]refChange{}
	for ref, old := range before {
		if after[ref] != old {
			changed[ref] = refChange{old: old, new: after[ref]}
		}
	}
	for ref, sha := range after {
		if _, ok := before[ref]; !ok {
			changed[ref] = refChange{new: sha}
		}
	}
	return changed
}

// deployTarget picks the ref to deploy from a push's changes: main, else
// master, if it now points to a commit. A push of both deploys main.
func deployTarget(changed map[string]refChange) (ref, commit string) {
	for _, r := range []string{"refs/heads/main", "refs/heads/master"} {
		if c, ok := changed[r]; ok && c.new != "" {
			return r, c.new
		}
	}
	return "", ""
}

// gitOutput runs git with args (never through a shell) and returns its
// stdout; the error carries its stderr.
func (s *Server) gitOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.git, args...)
	cmd.Env = gitEnv(nil)
	var stdout, stderr strings.Builder
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// gitResult is how a git service run over the session ended.
type gitResult struct {
	code     int   // exit status to give the client
	tooLarge bool  // the client sent more than the limit
	err      error // git could not be run at all
	noSpace  bool  // git said "No space left on device"
	received int64 // bytes the client sent
}

// errPushTooLarge ends the copy of the session into git.
var errPushTooLarge = errors.New("push too large")

// runGit runs a git service with the session as its stdin and stdout and
// the session's stderr as its stderr. If limit > 0, git is stopped once the
// client has sent more than limit bytes.
func (s *Server) runGit(sess gliderssh.Session, limit int64, env []string, args ...string) gitResult {
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, s.git, args...)
	cmd.Env = gitEnv(env)
	var noSpace atomic.Bool
	cmd.Stdout = &spaceWatch{w: sess, seen: &noSpace}
	cmd.Stderr = &spaceWatch{w: sess.Stderr(), seen: &noSpace}
	// SIGTERM first: receive-pack then removes its quarantine itself.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	// Our own stdin pump rather than cmd.Stdin = sess: it counts bytes, and
	// Wait does not wait for it (it may sit in a read of the session after
	// git has exited, until the session closes).
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return gitResult{err: err}
	}
	if err := cmd.Start(); err != nil {
		return gitResult{err: err}
	}
	var tooLarge atomic.Bool
	src := &capReader{r: sess, max: limit}
	go func() {
		defer stdin.Close()
		if _, err := io.Copy(stdin, src); errors.Is(err, errPushTooLarge) {
			tooLarge.Store(true)
			cancel()
		}
	}()
	err = cmd.Wait()
	if tooLarge.Load() {
		return gitResult{code: 1, tooLarge: true}
	}
	res := gitResult{noSpace: noSpace.Load(), received: src.n.Load()}
	var exit *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
		if res.code <= 0 {
			res.code = 1 // killed by a signal
		}
	default:
		return gitResult{err: err}
	}
	return res
}

// capReader counts the bytes read, and fails with errPushTooLarge once
// more than max (if max > 0) were read.
type capReader struct {
	r   io.Reader
	n   atomic.Int64 // read after git exits, while the copy may go on
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	total := c.n.Add(int64(n))
	if c.max > 0 && total > c.max {
		return 0, errPushTooLarge
	}
	return n, err
}

// gitEnv is the whole environment git runs with: the pierd process's own
// environment (and any operator or user git config) stays out.
func gitEnv(extra []string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{
		"PATH=" + path,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	}
	return append(env, extra...)
}

var gitProtocolRE = regexp.MustCompile(`^version=[0-9]$`)

// gitProtocolEnv passes on the one environment variable git clients send
// (over SSH's env request) that matters: GIT_PROTOCOL, which asks for
// protocol v2, and only in its known form. Everything else a client sends
// (LANG, LC_*, ...) is ignored.
func gitProtocolEnv(environ []string) []string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok && gitProtocolRE.MatchString(v) {
			return []string{"GIT_PROTOCOL=" + v}
		}
	}
	return nil
}

// oneLine keeps a message on one line, so it reads as one reason.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// reason is what the pusher is told of err: that Pier's database is not
// answering, when the store says so (pier.StoreHealth), else def.
func (s *Server) reason(err error, def string) string {
	if h, ok := s.cfg.Store.(pier.StoreHealth); ok && h.Outage(err) {
		return pier.OutageMessage
	}
	return def
}
