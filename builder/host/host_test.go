package host_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/host"
	"github.com/pierpaas/pier/internal/testenv"
)

// These tests build real sample apps with the real lifecycle and run them
// with the real launcher: a heavy tier, skipped with -short unless CI=true.
func heavy(t *testing.T) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("builds real apps with the CNB lifecycle; skipped with -short")
	}
}

func TestMain(m *testing.M) {
	switch os.Getenv("PIER_TEST_HELPER") {
	case "build":
		buildMain()
		return
	case "swap":
		swapMain()
		return
	case "remove":
		if err := host.RemoveAll(os.Getenv("REMOVE_DIR")); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		return
	}
	code := m.Run()
	if bpDir != "" {
		os.RemoveAll(filepath.Dir(bpDir))
	}
	os.Exit(code)
}

var (
	toolsOnce sync.Once
	toolsErr  error
	lcDir     string
	bpDir     string
)

// tools builds the lifecycle (the version pinned in go.mod, cached in
// $HOME/.cache/pier/lifecycle-<version> across runs) and Pier's buildpacks
// (fresh for every run: they are the code under test).
func tools(t *testing.T) (lifecycleDir, buildpacksDir string) {
	t.Helper()
	toolsOnce.Do(func() { lcDir, bpDir, toolsErr = buildTools() })
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return lcDir, bpDir
}

func buildTools() (string, string, error) {
	dir, err := os.MkdirTemp("", "pier-buildpacks-")
	if err != nil {
		return "", "", err
	}
	bpDir = filepath.Join(dir, "installed") // for TestMain to clean up, even on failure
	lc, err := testenv.CNBTools(bpDir)
	return lc, bpDir, err
}

// workDir is a build store the unprivileged build user can reach.
func workDir(t *testing.T) string {
	t.Helper()
	// Not t.TempDir: its parent directory is private to the test's user.
	dir, err := os.MkdirTemp("", "pier-host-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newStrategy(t *testing.T, timeout time.Duration, opts ...func(*host.Config)) *host.Strategy {
	t.Helper()
	lc, bps := tools(t)
	cfg := host.Config{LifecycleDir: lc, BuildpacksDir: bps, WorkDir: workDir(t), Timeout: timeout}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := host.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func build(t *testing.T, s *host.Strategy, app, sample string, config pier.Config) (*pier.BuildResult, string, error) {
	t.Helper()
	var log testenv.Buffer
	start := time.Now()
	res, err := s.Build(context.Background(), pier.BuildRequest{
		App: app, Commit: "0123456789abcdef", SourceDir: filepath.Join("testdata", sample),
		Config: config, Log: &log,
	})
	t.Logf("build of %s took %s", sample, time.Since(start).Round(time.Millisecond))
	return res, log.String(), err
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// serve runs a process type of a build as the scheduler would (launcher,
// PORT, unprivileged when root) and GETs path, expecting 200 and want.
func serve(t *testing.T, res *pier.BuildResult, path, want string) {
	t.Helper()
	port := freePort(t)
	exe, env := host.LaunchCommand(res.Image, "web")
	home := workDir(t)
	cmd := exec.Command(exe)
	cmd.Dir = filepath.Join(res.Image, "app")
	cmd.Env = append(env, "PORT="+port, "HOME="+home)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		// As the app's uid, as the scheduler would: the app's build dir
		// belongs to its group, and no other uid may enter it.
		fi, err := os.Stat(filepath.Dir(res.Image))
		if err != nil {
			t.Fatal(err)
		}
		id := fi.Sys().(*syscall.Stat_t).Gid
		os.Chmod(home, 0o777)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: id, Gid: id}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + path)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
				t.Fatalf("GET %s: %d %q, want 200 with %q", path, resp.StatusCode, body, want)
			}
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("web process exited (%v) before serving:\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("web process not serving on port %s after 20s: %v\n%s", port, err, out.String())
		}
	}
}

func TestSamples(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0)
	for _, tc := range []struct {
		sample, app, path, want, detected string
		config                            pier.Config
	}{
		{sample: "node-hello", app: "node-hello", path: "/", want: "hello from node, built with hi-from-config",
			detected: "-----> Node.js app detected", config: pier.Config{"GREETING": "hi-from-config"}},
		{sample: "python-hello", app: "python-hello", path: "/", want: "hello from python", detected: "-----> Python app detected"},
		{sample: "static-site", app: "static-site", path: "/", want: "hello from static", detected: "-----> Static site detected"},
		{sample: "procfile-shell", app: "procfile-shell", path: "/hello.txt", want: "hello from the shell", detected: "-----> Procfile detected"},
	} {
		t.Run(tc.sample, func(t *testing.T) {
			res, log, err := build(t, s, tc.app, tc.sample, tc.config)
			if err != nil {
				t.Fatalf("build: %v\n%s", err, log)
			}
			if !strings.Contains(log, tc.detected) {
				t.Errorf("build log lacks %q:\n%s", tc.detected, log)
			}
			if _, ok := res.ProcessTypes["web"]; !ok {
				t.Fatalf("no web process type: %v\n%s", res.ProcessTypes, log)
			}
			for _, v := range tc.config {
				if strings.Contains(log, v) {
					t.Errorf("a config value reached the build log:\n%s", log)
				}
			}
			// The platform env dir (config values in files) goes with the build.
			entries, _ := os.ReadDir(filepath.Join(s.WorkDir(), tc.app))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".tmp") {
					t.Errorf("the build left %s (its platform dir) behind", e.Name())
				}
			}
			t.Logf("process types: %v", res.ProcessTypes)
			if testing.Verbose() {
				t.Logf("build log:\n%s", log)
			}
			serve(t, res, tc.path, tc.want)
		})
	}
}

// TestGoColdWarm builds the Go sample twice: the second build reuses the
// cached GOCACHE and must be much faster, and both builds keep working.
// (The Go sample is here rather than in TestSamples: a cold Go build
// compiles the standard library and is the slowest step of the tier.)
func TestGoColdWarm(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0)
	start := time.Now()
	first, log, err := build(t, s, "go-warm", "go-hello", nil)
	if err != nil {
		t.Fatalf("cold build: %v\n%s", err, log)
	}
	cold := time.Since(start)
	start = time.Now()
	second, log, err := build(t, s, "go-warm", "go-hello", nil)
	if err != nil {
		t.Fatalf("warm build: %v\n%s", err, log)
	}
	warm := time.Since(start)
	t.Logf("Go sample: cold build %s, warm build %s", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
	if first.Image == second.Image {
		t.Fatalf("two builds share a directory: %s", first.Image)
	}
	if _, err := os.Stat(filepath.Join(first.Image, "layers", "pier_go", "go-cache")); !os.IsNotExist(err) {
		t.Errorf("the cache layer is part of the build output (%v)", err)
	}
	if warm > 5*time.Second {
		t.Errorf("warm build took %s; the cache was not used?", warm)
	}
	if !strings.Contains(log, "-----> Go app detected") {
		t.Errorf("build log lacks the Go header:\n%s", log)
	}
	if testing.Verbose() {
		t.Logf("warm build log:\n%s", log)
	}
	serve(t, first, "/", "hello from go") // the older build still runs
	serve(t, second, "/", "hello from go")
}

func TestNoBuildpackDetected(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0)
	_, log, err := build(t, s, "nothing", "nothing", nil)
	if err == nil {
		t.Fatal("built an app no buildpack recognises")
	}
	t.Logf("error: %v\nlog:\n%s", err, log)
	if pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("error code %q, want %q", pier.ErrorCode(err), pier.EINVALID)
	}
	for _, f := range []string{"go.mod", "package.json", "requirements.txt", "index.html", "public/", "Procfile"} {
		if !strings.Contains(err.Error(), f) || !strings.Contains(log, f) {
			t.Errorf("the message does not name %s:\nerror: %v\nlog: %s", f, err, log)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.WorkDir(), "nothing"))
	for _, e := range entries {
		if e.Name() != ".cache" {
			t.Errorf("a failed build left %s behind", e.Name())
		}
	}
}

func TestTimeout(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 6*time.Second)
	start := time.Now()
	_, log, err := build(t, s, "slow", "slow", nil)
	if err == nil || !strings.Contains(err.Error(), "timed out after 6s") || !strings.Contains(log, "timed out after 6s") {
		t.Fatalf("err = %v, want a timeout, in the log too\n%s", err, log)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the build ran %s past a 6s timeout", took)
	}
}

// TestProcfileOverrides: a Procfile next to a language's files replaces
// the language buildpack's default web process and adds its own types.
// It also builds as an app's own uid, with no user account behind it.
func TestProcfileOverrides(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0, func(c *host.Config) {
		c.BuildUser = func(app string) (int, int) { return 61234, 61234 }
	})
	res, log, err := build(t, s, "static-procfile", "static-procfile", nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	for _, want := range []string{"-----> Static site detected", "-----> Procfile detected"} {
		if !strings.Contains(log, want) {
			t.Errorf("build log lacks %q:\n%s", want, log)
		}
	}
	if web := res.ProcessTypes["web"]; !strings.HasPrefix(web, "cd public && exec python3") {
		t.Errorf("web = %q, want the Procfile's", web)
	}
	if res.ProcessTypes["worker"] != "sleep infinity" {
		t.Errorf("process types %v lack the Procfile's worker", res.ProcessTypes)
	}
	serve(t, res, "/", "hello via procfile")
}

// TestPythonIndexUnreachable: PyPI cannot be reached from these machines,
// and the build says so plainly rather than with pip's retry noise alone.
func TestPythonIndexUnreachable(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0)
	_, log, err := build(t, s, "python-offline", "python-offline", nil)
	if err == nil {
		t.Skip("the package index is reachable from here")
	}
	const want = "the package index is unreachable from this host"
	if !strings.Contains(err.Error(), want) || !strings.Contains(log, want) {
		t.Fatalf("err = %v, want it (and the log) to say %q\nlog:\n%s", err, want, log)
	}
}

// TestPythonWarm: the second build reuses the cached virtualenv, moved to
// the new build's directory, with its scripts pointing there.
func TestPythonWarm(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0)
	if _, log, err := build(t, s, "python-warm", "python-hello", nil); err != nil {
		t.Fatalf("cold build: %v\n%s", err, log)
	}
	res, log, err := build(t, s, "python-warm", "python-hello", nil)
	if err != nil {
		t.Fatalf("warm build: %v\n%s", err, log)
	}
	if !strings.Contains(log, "Reusing virtualenv") {
		t.Errorf("the warm build did not reuse the virtualenv:\n%s", log)
	}
	venv := filepath.Join(res.Image, "layers", "pier_python", "venv")
	pip, err := os.ReadFile(filepath.Join(venv, "bin", "pip"))
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(pip), "\n"); !strings.HasPrefix(first, "#!"+filepath.Join(venv, "bin", "python")) {
		t.Errorf("bin/pip starts %q, want the new venv's python", first)
	}
	serve(t, res, "/", "hello from python")
}

// TestConcurrentBuilds: builds of one app share its cache, so they take
// turns; each gets its own directory and both succeed.
func TestConcurrentBuilds(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0)
	var wg sync.WaitGroup
	results := make([]*pier.BuildResult, 2)
	errs := make([]error, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Build(context.Background(), pier.BuildRequest{
				App: "twice", SourceDir: filepath.Join("testdata", "static-site"), Log: io.Discard,
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if results[0].Image == results[1].Image {
		t.Fatalf("two builds share %s", results[0].Image)
	}
	serve(t, results[1], "/", "hello from static")
}

// fakeLifecycle is a lifecycle whose detector passes and whose builder
// starts a long compile in the background (`sleep 300`, in the phase's
// process group), prints its pid and waits for it.
const fakeLifecycle = `#!/bin/sh
case " $* " in
*" -analyzed "*) sleep 300 & echo "compiler $!"; wait ;;
esac
exit 0
`

// fakeTools writes a lifecycle dir and a buildpacks dir good enough for
// New and a build with fakeLifecycle.
func fakeTools(t *testing.T) (lifecycleDir, buildpacksDir string) {
	t.Helper()
	return fakeToolsWith(t, fakeLifecycle)
}

// fakeToolsWith is fakeTools with lifecycle as the lifecycle's text.
func fakeToolsWith(t *testing.T, lifecycle string) (lifecycleDir, buildpacksDir string) {
	t.Helper()
	dir := workDir(t)
	lifecycleDir, buildpacksDir = filepath.Join(dir, "lifecycle"), filepath.Join(dir, "buildpacks")
	for _, d := range []string{lifecycleDir, buildpacksDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		filepath.Join(lifecycleDir, "lifecycle"):   lifecycle,
		filepath.Join(lifecycleDir, "launcher"):    "#!/bin/sh\nexit 1\n",
		filepath.Join(buildpacksDir, "order.toml"): "",
	} {
		if err := os.WriteFile(name, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return lifecycleDir, buildpacksDir
}

// buildMain plays pierd in a build: it builds with the fake lifecycle of
// LIFECYCLE_DIR and waits to be killed in the middle.
func buildMain() {
	s, err := host.New(host.Config{LifecycleDir: os.Getenv("LIFECYCLE_DIR"), BuildpacksDir: os.Getenv("BUILDPACKS_DIR"), WorkDir: os.Getenv("WORK_DIR")})
	if err != nil {
		panic(err)
	}
	_, err = s.Build(context.Background(), pier.BuildRequest{App: "killed", SourceDir: filepath.Join("testdata", "nothing"), Log: os.Stdout})
	fmt.Println("build ended:", err)
}

// A build has no death signal: killed with pierd, its phase runs on. The
// next New on the same WorkDir kills it, from the record of its group, and
// removes its scratch dir (config values), half-saved cache and unfinished
// build dir.
func TestNewReapsTheBuildOfAKilledPierd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process group records need Linux")
	}
	lc, bps := fakeTools(t)
	work := workDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pierd := exec.Command(self)
	pierd.Env = append(os.Environ(), "PIER_TEST_HELPER=build", "LIFECYCLE_DIR="+lc, "BUILDPACKS_DIR="+bps, "WORK_DIR="+work)
	out, err := pierd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pierd.Stderr = os.Stderr
	if err := pierd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		pierd.Process.Kill()
		pierd.Wait()
	}()
	var compiler int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "compiler "); ok {
			compiler, _ = strconv.Atoi(rest)
			break
		}
		t.Logf("build: %s", sc.Text())
	}
	if compiler == 0 {
		t.Fatal("the build never started its compiler")
	}
	defer syscall.Kill(compiler, syscall.SIGKILL) // should the test fail
	// The phase's record is written just after it starts, and its child
	// may print first: wait for the record (pierd killed in that window
	// leaves a group nobody recorded; see pgroup).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		recs, _ := os.ReadDir(filepath.Join(work, ".pgroups"))
		n := 0
		for _, r := range recs {
			if !strings.HasPrefix(r.Name(), ".") { // not one being written
				n++
			}
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records of running phases: %v", recs)
		}
	}
	pierd.Process.Kill()
	pierd.Wait()
	// The test is real: the compiler outlives the killed pierd.
	time.Sleep(200 * time.Millisecond)
	if !alive(compiler) {
		t.Fatal("the compiler died with pierd: nothing left to reap")
	}

	// Its scratch dir, which holds the config values, is left too, and
	// its unfinished build dir; and a half-saved cache.
	scratch, _ := filepath.Glob(filepath.Join(work, "killed", ".tmp-*"))
	half, _ := filepath.Glob(filepath.Join(work, "killed", "2*"))
	if len(scratch) != 1 || len(half) != 1 {
		t.Fatalf("scratch dirs of the killed build: %v, build dirs: %v", scratch, half)
	}
	if err := os.Mkdir(filepath.Join(work, "killed", ".cache.new-1"), 0o700); err != nil {
		t.Fatal(err)
	}

	var logs testenv.Buffer
	s, err := host.New(host.Config{LifecycleDir: lc, BuildpacksDir: bps, WorkDir: work, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for alive(compiler) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d, left by the killed build, still runs after New", compiler)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if recs, _ := os.ReadDir(filepath.Join(work, ".pgroups")); len(recs) != 0 {
		t.Fatalf("records left after New: %v", recs)
	}
	for _, pattern := range []string{".tmp-*", ".cache.new-*", "2*"} {
		if left, _ := filepath.Glob(filepath.Join(work, "killed", pattern)); len(left) != 0 {
			t.Errorf("left by the killed build after New: %v", left)
		}
	}
	if !strings.Contains(logs.String(), "pid="+strconv.Itoa(compiler)) {
		t.Errorf("the log does not say what was killed:\n%s", logs.String())
	}
}

// alive says whether pid is a live process (a zombie is dead).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}
