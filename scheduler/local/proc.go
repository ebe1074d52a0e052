package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/pgroup"
)

// proc is one supervised process, such as web.2 of v7. Its mutable fields
// are guarded by Scheduler.mu.
type proc struct {
	s       *Scheduler
	app     *appState
	dep     pier.Deployment
	typ     string
	index   int
	release int
	port    int
	addr    string
	dir     string
	tail    tailBuf

	state     string
	startedAt time.Time
	restarts  int
	crashes   int // consecutive, for the backoff
	pid       int
	ready     bool
	routed    bool   // part of a committed generation: the router may use it
	boot      bool   // Apply is still deciding: an exit is a failed deploy, not a restart
	failure   string // why it went down, for Apply's error

	readyc   chan struct{} // closed the first time it is up
	exitc    chan struct{} // closed when it goes down while booting
	stopc    chan struct{} // closed to ask the supervisor to stop it
	killc    chan struct{} // closed to skip the grace period
	done     chan struct{} // closed when it is gone for good
	once     struct{ ready, exit, stop, kill sync.Once }
	procsDir string
}

func (p *proc) name() string { return p.typ + "." + strconv.Itoa(p.index) }

func (p *proc) stop() { p.once.stop.Do(func() { close(p.stopc) }) }
func (p *proc) kill() {
	p.stop()
	p.once.kill.Do(func() { close(p.killc) })
}

func (s *Scheduler) newProcLocked(a *appState, d pier.Deployment, typ string, index int) *proc {
	s.seq++
	p := &proc{
		s: s, app: a, dep: d, typ: typ, index: index, release: d.Release.Version,
		state: pier.ProcessStarting, boot: true,
		readyc: make(chan struct{}), exitc: make(chan struct{}), stopc: make(chan struct{}),
		killc: make(chan struct{}), done: make(chan struct{}),
	}
	p.dir = filepath.Join(s.cfg.DataDir, "run", a.name, fmt.Sprintf("%s.%d-%d", typ, index, s.seq))
	a.pending[p] = struct{}{}
	return p
}

// supervise runs p until asked to stop, restarting it when it crashes.
func (s *Scheduler) supervise(p *proc) {
	defer close(p.done)
	if err := s.setup(p); err != nil {
		s.mu.Lock()
		p.state = pier.ProcessCrashed
		p.failure = "could not be prepared: " + err.Error()
		p.once.exit.Do(func() { close(p.exitc) })
		s.mu.Unlock()
		s.log.Error("cannot prepare process", "app", p.app.name, "process", p.name(), "err", err)
		<-p.stopc
		s.teardown(p)
		return
	}
	defer s.teardown(p)
	for {
		reason, stopped := s.runOnce(p)
		if stopped {
			return
		}
		s.mu.Lock()
		wasServing := p.ready && p.routed
		p.ready = false
		p.pid = 0
		p.state = pier.ProcessCrashed
		p.failure = reason
		if p.boot {
			p.once.exit.Do(func() { close(p.exitc) })
			s.mu.Unlock()
			p.app.platform("%s crashed on boot: %s", p.name(), reason)
			<-p.stopc
			return
		}
		// A process that ran for a while before crashing starts its backoff
		// over: one crash a day should not wait a minute to come back.
		if time.Since(p.startedAt) >= s.cfg.MaxRestartBackoff {
			p.crashes = 0
		}
		p.crashes++
		p.restarts++
		delay := s.cfg.RestartBackoff << (p.crashes - 1)
		if delay > s.cfg.MaxRestartBackoff || delay <= 0 {
			delay = s.cfg.MaxRestartBackoff
		}
		s.mu.Unlock()
		if wasServing {
			s.notify()
		}
		p.app.platform("%s crashed: %s; restarting in %s", p.name(), reason, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-p.stopc:
			t.Stop()
			return
		}
	}
}

// setup gives p a port and its own working directory, owned by the app's uid.
func (s *Scheduler) setup(p *proc) error {
	port, err := s.ports.get()
	if err != nil {
		return err
	}
	p.port = port
	p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cred, err := s.credential(p.dep)
	if err != nil {
		return err
	}
	return makeDir(cred, p.dir)
}

// makeDir makes dir and its parent, the app's directory under run/, 0700
// and owned by cred (the app's uid and gid) when there is one: no other app
// uid may list or read them. The app can write its directory, so dir may be
// anything it put there (a symlink to /etc, say): what is there is removed
// (RemoveAll does not follow links), dir is made afresh, and its owner is
// set through a descriptor opened without following links.
func makeDir(cred *syscall.Credential, dir string) error {
	appDir := filepath.Dir(dir)
	// run/ is root's and 0711: no app can swap appDir itself.
	if err := os.Mkdir(appDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := own(appDir, cred); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return own(dir, cred)
}

// own makes the directory at path 0700 and cred's, by descriptor; a
// symlink there is refused.
func own(path string, cred *syscall.Credential) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if cred != nil {
		if err := f.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	// Mkdir left an existing directory with whatever mode it had.
	return f.Chmod(0o700)
}

func (s *Scheduler) teardown(p *proc) {
	if p.port != 0 {
		s.ports.put(p.port)
	}
	os.RemoveAll(p.dir)
}

// runOnce starts p and waits until it exits (reason says how) or is
// stopped.
func (s *Scheduler) runOnce(p *proc) (reason string, stopped bool) {
	select {
	case <-p.stopc:
		return "", true
	default:
	}
	cred, err := s.credential(p.dep)
	if err != nil {
		return "could not be launched: " + err.Error(), false
	}
	cmd, err := s.cfg.Launch(p.dep, p.typ)
	if err != nil {
		return "could not be launched: " + err.Error(), false
	}
	if err := s.prepare(cmd, p.dep, cred, p.dir, "PORT="+strconv.Itoa(p.port), "DYNO="+p.name()); err != nil {
		return "could not be launched: " + err.Error(), false
	}
	limits := p.dep.Limits[p.typ]
	b, err := s.openBox(p.app.name+"."+p.name(), limits, cmd)
	if err != nil {
		return "could not be started within its limits: " + err.Error(), false
	}
	defer b.close()
	r, w, err := os.Pipe()
	if err != nil {
		return "could not be started: " + err.Error(), false
	}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = w, w
	p.app.platform("Starting %s for v%d", p.name(), p.release)
	err = s.start(cmd, b)
	w.Close()
	if err != nil {
		r.Close()
		return "could not be started: " + err.Error(), false
	}
	// The group is recorded before anything else: should pierd die from
	// here on, the next start of pierd kills what the process forked.
	g, err := s.groups.Track(cmd)
	if err != nil {
		r.Close()
		s.log.Error("cannot record process group", "app", p.app.name, "process", p.name(), "err", err)
		return "could not be started: " + err.Error(), false
	}
	if err := b.started(g.Pid()); err != nil {
		// A process that could not be bounded does not run.
		g.Signal(syscall.SIGKILL)
		g.Wait()
		r.Close()
		return "could not be started within its limits: " + err.Error(), false
	}
	pid := g.Pid()
	started := time.Now()
	s.mu.Lock()
	p.pid = pid
	p.startedAt = started
	if p.state != pier.ProcessStopping {
		p.state = pier.ProcessStarting
	}
	s.mu.Unlock()

	outDone := make(chan struct{})
	go func() {
		copyLines(r, p.app.logs, p.name(), &p.tail)
		r.Close()
		close(outDone)
	}()
	// Wait kills whatever the process left behind in its group once it
	// exits, reaps it and drops the group's record.
	waitc := make(chan error, 1)
	go func() { waitc <- g.Wait() }()
	runDone := make(chan struct{})
	timedOut := make(chan struct{})
	// Its sockets are made by the uid it was started as.
	uid := os.Geteuid()
	if cred != nil {
		uid = int(cred.Uid)
	}
	go s.probe(p, g, uid, runDone, timedOut)

	// drained waits (boundedly) for the output to reach the log, so that a
	// crash message follows the process's last words.
	drained := func() {
		select {
		case <-outDone:
		case <-time.After(time.Second):
		}
	}
	select {
	case err := <-waitc:
		close(runDone)
		drained()
		select {
		case <-timedOut:
			return fmt.Sprintf("did not accept connections on its port within %s", s.cfg.StartTimeout), false
		default:
		}
		if b.oomKilled() {
			return oomReason(limits), false
		}
		return exitReason(err), false
	case <-p.stopc:
		s.mu.Lock()
		p.state = pier.ProcessStopping
		p.ready = false
		s.mu.Unlock()
		// The whole group: what the process forked (npm's node, a
		// shell's python) is asked to stop too.
		g.Signal(syscall.SIGTERM)
		t := time.NewTimer(s.cfg.StopGrace)
		select {
		case <-waitc:
		case <-t.C:
			p.app.platform("%s did not stop within %s: killing it", p.name(), s.cfg.StopGrace)
			g.Signal(syscall.SIGKILL)
			<-waitc
		case <-p.killc:
			g.Signal(syscall.SIGKILL)
			<-waitc
		}
		t.Stop()
		close(runDone)
		drained()
		p.app.platform("Stopped %s of v%d", p.name(), p.release)
		return "", true
	}
}

func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

// probe marks p up: a web process once a process of its group listens on
// its port and accepts a TCP connection there, any other once it has run
// for UpAfter. A web process that does not listen within StartTimeout is
// killed, which counts as a crash. A web process that is up is watched:
// should its group let go of the listener (and a neighbour take the port),
// it leaves the routes until it listens again (owner.go).
func (s *Scheduler) probe(p *proc, g *pgroup.Group, uid int, runDone, timedOut chan struct{}) {
	if p.typ != "web" {
		t := time.NewTimer(s.cfg.UpAfter)
		defer t.Stop()
		select {
		case <-t.C:
			s.markReady(p, runDone)
		case <-runDone:
		}
		return
	}
	for {
		sockets, ok := s.awaitListener(p, g, uid, runDone, timedOut)
		if !ok {
			return
		}
		s.markReady(p, runDone)
		if !s.watchListener(p, g, sockets, runDone) {
			return
		}
		s.unready(p)
	}
}

// awaitListener waits until p's own group listens on its port and returns
// the listening sockets, or false when p exits first or StartTimeout ends
// (then it kills p).
func (s *Scheduler) awaitListener(p *proc, g *pgroup.Group, uid int, runDone, timedOut chan struct{}) ([]uint64, bool) {
	deadline := time.NewTimer(s.cfg.StartTimeout)
	defer deadline.Stop()
	delay := 5 * time.Millisecond
	said := ""
	for {
		sockets, why := s.listens(p, g, uid)
		if sockets != nil {
			return sockets, true
		}
		if why != "" && why != said {
			said = why
			p.app.platform("%s", why)
			s.log.Warn("a process's port is not its own", "app", p.app.name, "process", p.name(), "port", p.port, "why", why)
		}
		t := time.NewTimer(delay)
		select {
		case <-runDone:
			t.Stop()
			return nil, false
		case <-deadline.C:
			t.Stop()
			close(timedOut)
			g.Signal(syscall.SIGKILL)
			return nil, false
		case <-t.C:
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

func (s *Scheduler) markReady(p *proc, runDone chan struct{}) {
	s.mu.Lock()
	select {
	case <-runDone: // it exited meanwhile: too late
		s.mu.Unlock()
		return
	default:
	}
	if p.state == pier.ProcessStopping {
		s.mu.Unlock()
		return
	}
	p.ready = true
	p.state = pier.ProcessUp
	p.once.ready.Do(func() { close(p.readyc) })
	serving := p.routed && p.typ == "web"
	s.mu.Unlock()
	if serving {
		s.notify()
	}
}

// prepare sets what every process of an app gets, whoever built the command:
// the environment (config and extra on top of the command's own, never on
// argv), a working dir, its own process group, the app's credentials and the
// death signal.
func (s *Scheduler) prepare(cmd *exec.Cmd, d pier.Deployment, cred *syscall.Credential, dir string, extra ...string) error {
	env := cmd.Env
	if env == nil {
		env = []string{"PATH=" + defaultPath}
	}
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+dir)
	}
	for _, k := range sortedKeys(d.Release.Config) {
		env = append(env, k+"="+d.Release.Config[k])
	}
	// Later entries win in exec.Cmd, so Pier's own (PORT) override config.
	cmd.Env = append(env, extra...)
	if cmd.Dir == "" {
		cmd.Dir = dir
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	a := cmd.SysProcAttr
	a.Setpgid, a.Pgid = true, 0
	a.Credential = cred
	setDeathSignal(a)
	if s.cfg.Wrap != nil {
		return s.cfg.Wrap(cmd, dir)
	}
	return nil
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// Run starts a one-off process with the release's environment, wires its
// stdio to opts and returns its exit status (128+signal when killed).
func (s *Scheduler) Run(ctx context.Context, d pier.Deployment, opts pier.RunOptions) (int, error) {
	if len(opts.Command) == 0 || opts.Command[0] == "" {
		return -1, pier.Errorf(pier.EINVALID, "no command given: say what to run, such as `pier run -- ls`")
	}
	a, err := s.appFor(d.App)
	if err != nil {
		return -1, err
	}
	var cmd *exec.Cmd
	if s.cfg.RunCommand != nil {
		cmd, err = s.cfg.RunCommand(d, opts.Command)
		if err != nil {
			return -1, err
		}
	} else {
		cmd = exec.Command(opts.Command[0], opts.Command[1:]...)
	}
	cred, err := s.credential(d)
	if err != nil {
		return -1, err
	}
	s.mu.Lock()
	a.runSeq++
	s.seq++
	name := "run." + strconv.Itoa(a.runSeq)
	dir := filepath.Join(s.cfg.DataDir, "run", a.name, fmt.Sprintf("%s-%d", name, s.seq))
	s.mu.Unlock()
	if err := makeDir(cred, dir); err != nil {
		return -1, fmt.Errorf("run: %w", err)
	}
	defer os.RemoveAll(dir)
	port, err := s.ports.get()
	if err != nil {
		return -1, fmt.Errorf("run: %w", err)
	}
	defer s.ports.put(port)
	if err := s.prepare(cmd, d, cred, dir, "PORT="+strconv.Itoa(port), "DYNO="+name); err != nil {
		return -1, fmt.Errorf("run: %w", err)
	}
	limits := d.Limits["run"]
	b, err := s.openBox(a.name+"."+name, limits, cmd)
	if err != nil {
		return -1, fmt.Errorf("run: %w", err)
	}
	defer b.close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, orDiscard(opts.Stdout), orDiscard(opts.Stderr)
	// The caller's stdin may never reach EOF (an SSH session): it reaches
	// the process through a pump of our own, which Wait does not wait for
	// (exec's own would hold Wait in a read of stdin, WaitDelay or not).
	var stdin io.WriteCloser
	if opts.Stdin != nil {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return -1, fmt.Errorf("run: %w", err)
		}
	}
	// Output pipes held open by a process that left the group end too.
	cmd.WaitDelay = time.Second
	// The command is not logged: people paste secrets into commands.
	a.platform("Starting %s for v%d", name, d.Release.Version)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return -1, pier.Errorf(pier.ECONFLICT, "the scheduler is shutting down")
	}
	if err := s.start(cmd, b); err != nil {
		s.mu.Unlock()
		a.platform("%s could not be started", name)
		why := err
		if u := errors.Unwrap(err); u != nil {
			why = u // the bare reason: the path is named once, clipped
		}
		return -1, pier.Errorf(pier.EINVALID, "cannot run %s: %v", clip(opts.Command[0]), why)
	}
	g, err := s.groups.Track(cmd)
	if err != nil {
		s.mu.Unlock()
		a.platform("%s could not be started", name)
		return -1, fmt.Errorf("run: %w", err)
	}
	s.runs[g] = struct{}{}
	s.runWG.Add(1)
	s.mu.Unlock()
	if err := b.started(g.Pid()); err != nil {
		g.Signal(syscall.SIGKILL) // a process that could not be bounded does not run
		a.platform("%s could not be started within its limits: %v", name, err)
	}
	if stdin != nil {
		go func() {
			// Ends at the caller's EOF, or at the first write after the
			// process is reaped (Wait closes the pipe).
			io.Copy(stdin, opts.Stdin)
			stdin.Close()
		}()
	}
	// Wait kills what the command left in its group, then reaps it.
	waitc := make(chan error, 1)
	go func() { waitc <- g.Wait() }()
	var werr error
	select {
	case werr = <-waitc:
	case <-ctx.Done():
		g.Signal(syscall.SIGKILL)
		werr = <-waitc
	}
	s.mu.Lock()
	delete(s.runs, g)
	s.mu.Unlock()
	s.runWG.Done()
	code := -1
	if st := cmd.ProcessState; st != nil {
		code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	if b.oomKilled() {
		a.platform("%s %s", name, oomReason(limits))
	}
	a.platform("%s exited with status %d", name, code)
	if code < 0 {
		return code, fmt.Errorf("run: %w", werr)
	}
	if ctx.Err() != nil {
		return code, ctx.Err()
	}
	return code, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
