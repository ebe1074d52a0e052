package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier/builder/host"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres/embedded"
)

// The Go sample the end-to-end test pushes; benchmarks edit a copy.
var sampleDir = filepath.Join("..", "cmd", "pierd", "testdata", "hello")

// versionConst is the sample's one line that a warm push changes.
var versionConst = regexp.MustCompile(`(?m)^const version = "[^"]*"$`)

// pushTimeout bounds one push, from git push to the new body being served
// (the cold one compiles Go's standard library).
const pushTimeout = 10 * time.Minute

// BenchmarkPush measures `git push` to the new code serving, for the Go
// sample (cmd/pierd/testdata/hello), against the real pierd and pier
// binaries, git and OpenSSH, as the end-to-end test runs them; and, as its
// floor, the CNB lifecycle's detector and builder run bare on the same
// source with the same flags (see floor).
//
//   - cold (printed): the app's first push, fresh caches, until a GET
//     through the router (Host: hello.pier.localhost:PORT) returns its
//     body; then the bare lifecycle's first run on the same source, with
//     an empty cache of its own.
//   - Warm: each iteration (a round) makes a one-line change (the version
//     const) and commits it; builds that source with the bare lifecycle,
//     timed on its own (metric bare-p50-ms); then pushes it, timed until
//     the new body is served (ns/op, p50-ms, max-ms: only the push is on
//     the benchmark's timer). Alternating the two keeps a change in the
//     machine's load from favouring either.
//
// Run it with a count, `-benchtime 5x` (make bench-push); see README.md.
func BenchmarkPush(b *testing.B) {
	e := newPushEnv(b)
	f := newFloor(b, e.dir, e.bin)

	setVersion(b, e.src, "one")
	e.git(b, "init", "-q", "-b", "main")
	e.git(b, "add", ".")
	e.git(b, "commit", "-q", "-m", "first")
	e.createApp(b)
	cold := pushRound{push: e.push(b, "one")}
	setVersion(b, f.src, "one")
	var err error
	if cold.bare, err = f.build(); err != nil {
		b.Fatal(err)
	}

	var warm []pushRound
	n := 0 // every round gets a fresh version
	b.Run("Warm", func(b *testing.B) {
		warm = warm[:0]
		for range b.N {
			b.StopTimer()
			n++
			v := fmt.Sprintf("warm-%d", n)
			setVersion(b, e.src, v)
			e.git(b, "commit", "-q", "-am", "version "+v)
			setVersion(b, f.src, v)
			bare, err := f.build()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			warm = append(warm, pushRound{push: e.push(b, v), bare: bare})
		}
		b.StopTimer()
		serve := roundTimes(warm, func(r pushRound) time.Duration { return r.push.serve })
		var sum time.Duration
		for _, d := range serve {
			sum += d
		}
		b.ReportMetric(float64(sum)/float64(len(serve)), "ns/op")
		b.ReportMetric(ms(percentile(serve, 50)), "p50-ms")
		b.ReportMetric(ms(serve[len(serve)-1]), "max-ms")
		b.ReportMetric(ms(percentile(roundTimes(warm, func(r pushRound) time.Duration { return r.bare }), 50)), "bare-p50-ms")
	})
	fmt.Print(pushSummary(cold, warm))
}

// pushRound is one push and the bare lifecycle's build of the same source.
type pushRound struct {
	push pushResult
	bare time.Duration // detector + builder
}

// roundTimes returns one duration of each round, sorted.
func roundTimes(rs []pushRound, of func(pushRound) time.Duration) []time.Duration {
	ds := make([]time.Duration, len(rs))
	for i, r := range rs {
		ds[i] = of(r)
	}
	slices.Sort(ds)
	return ds
}

// pushTarget is the project's target for a warm push, to serving.
const pushTarget = 2 * time.Second

// pushSummary is the benchmark's table: medians (nearest rank) and maxima
// of the warm rounds.
func pushSummary(cold pushRound, warm []pushRound) string {
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	var sb strings.Builder
	fmt.Fprintf(&sb, "git push to serving, Go sample (cmd/pierd/testdata/hello)\n")
	fmt.Fprintf(&sb, "  %-22s %12s %12s %12s %16s %7s\n", "", "to serving", "push exits", "pierd build", "bare lifecycle", "ratio")
	row := func(name string, serve, exit, build, bare time.Duration, ratio bool) {
		fmt.Fprintf(&sb, "  %-22s %12s %12s %12s %16s", name, sec(serve), sec(exit), sec(build), sec(bare))
		if ratio {
			fmt.Fprintf(&sb, " %6.2f×", serve.Seconds()/bare.Seconds())
		}
		sb.WriteByte('\n')
	}
	row("cold (first push)", cold.push.serve, cold.push.exit, cold.push.build, cold.bare, true)
	if len(warm) == 0 {
		return sb.String()
	}
	med := func(of func(pushRound) time.Duration) time.Duration { return percentile(roundTimes(warm, of), 50) }
	top := func(of func(pushRound) time.Duration) time.Duration { return slices.Max(roundTimes(warm, of)) }
	serve := func(r pushRound) time.Duration { return r.push.serve }
	exit := func(r pushRound) time.Duration { return r.push.exit }
	build := func(r pushRound) time.Duration { return r.push.build }
	bare := func(r pushRound) time.Duration { return r.bare }
	row(fmt.Sprintf("warm median (%d)", len(warm)), med(serve), med(exit), med(build), med(bare), true)
	row(fmt.Sprintf("warm max (%d)", len(warm)), top(serve), top(exit), top(build), top(bare), false)
	verdict := "ok"
	if med(serve) > pushTarget {
		verdict = "MISSED"
	}
	fmt.Fprintf(&sb, "  target: warm push to serving ≤ %s (median): %s, %s\n", sec(pushTarget), sec(med(serve)), verdict)
	fmt.Fprintf(&sb, "  (ratio = to serving / bare lifecycle, medians when warm; pierd build = the host strategy's \"Build done in\")\n")
	return sb.String()
}

// ---- Pier, end to end ----

// pushEnv is a running `pierd all` on a fresh data dir, a registered user
// with an SSH key, and a git repository holding a copy of the sample.
type pushEnv struct {
	dir    string // everything the benchmark makes (0755: the floor's build user reads in it)
	bin    string // pierd, pier, lifecycle/, buildpacks/
	data   string // pierd's data dir
	home   string // the CLI's config and git's HOME
	key    string // private key file
	src    string // the app's repository
	pierd  *exec.Cmd
	out    *testenv.Buffer
	url    string // http://127.0.0.1:PORT: the API, and the router
	host   string // hello.pier.localhost:PORT
	sshArg string // GIT_SSH_COMMAND
	client *http.Client
}

var (
	apiListening = regexp.MustCompile(`Pier API listening on (127\.0\.0\.1:(\d+))`)
	sshListening = regexp.MustCompile(`Builder \(git push over SSH\) listening on 127\.0\.0\.1:(\d+)`)
)

func newPushEnv(tb testing.TB) *pushEnv {
	tb.Helper()
	for _, tool := range []string{"go", "git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("needs %s: %v", tool, err)
		}
	}
	if _, err := embedded.FindBinaries(); err != nil {
		tb.Skip(err)
	}
	dir, err := os.MkdirTemp("", "pier-bench-push-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { host.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	e := &pushEnv{
		dir: dir, bin: filepath.Join(dir, "bin"), data: filepath.Join(dir, "data"),
		home: filepath.Join(dir, "home"), src: filepath.Join(dir, "src"),
		out:    &testenv.Buffer{},
		client: &http.Client{Timeout: 5 * time.Second},
	}
	for _, d := range []string{e.bin, e.home, e.src} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	e.buildTools(tb)
	copyDir(tb, sampleDir, e.src)

	e.key = filepath.Join(e.home, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", e.key).CombinedOutput(); err != nil {
		tb.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	sshPort := e.startPierd(tb)
	e.sshArg = "ssh -i " + e.key + " -p " + sshPort +
		" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR"
	e.pier(tb, "bench password\n", "register", e.url, "--username", "bench",
		"--bootstrap-token-file", filepath.Join(e.data, "bootstrap-token"), "--password-stdin")
	e.pier(tb, "", "keys:add", e.key+".pub")
	return e
}

// buildTools builds pierd and pier (go build, as the end-to-end test does),
// and puts the lifecycle and Pier's buildpacks beside them, where pierd all
// finds them.
func (e *pushEnv) buildTools(tb testing.TB) {
	tb.Helper()
	for _, pkg := range []string{"./cmd/pierd", "./cmd/pier"} {
		cmd := exec.Command("go", "build", "-o", e.bin+string(os.PathSeparator), pkg)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	lc, err := testenv.CNBTools(filepath.Join(e.bin, "buildpacks"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"lifecycle", "launcher"} {
		if err := copyFile(filepath.Join(lc, name), filepath.Join(e.bin, "lifecycle", name), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
}

// startPierd runs `pierd all` with its embedded Postgres on the fresh data
// dir and loopback ports chosen by the kernel, and returns the SSH port.
func (e *pushEnv) startPierd(tb testing.TB) (sshPort string) {
	tb.Helper()
	e.pierd = exec.Command(filepath.Join(e.bin, "pierd"), "all")
	e.pierd.Env = append(os.Environ(), "PIER_DATA_DIR="+e.data, "DATABASE_URL=",
		"PIER_HTTP_ADDR=127.0.0.1:0", "PIER_SSH_ADDR=127.0.0.1:0")
	pr, pw := io.Pipe()
	e.pierd.Stdout = io.MultiWriter(e.out, pw)
	e.pierd.Stderr = e.out
	if err := e.pierd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.pierd.Wait(); pw.Close(); close(done) }()
	tb.Cleanup(func() { e.stop(tb, done) })

	type addrs struct{ api, apiPort, ssh string }
	found := make(chan addrs, 1)
	go func() {
		var a addrs
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := sshListening.FindStringSubmatch(sc.Text()); m != nil {
				a.ssh = m[1]
			}
			if m := apiListening.FindStringSubmatch(sc.Text()); m != nil {
				a.api, a.apiPort = m[1], m[2]
				found <- a
				break
			}
		}
		close(found)
		io.Copy(io.Discard, pr)
	}()
	select {
	case a, ok := <-found:
		if !ok || a.ssh == "" {
			tb.Fatalf("pierd exited, or listens without its builder:\n%s", e.out)
		}
		e.url = "http://" + a.api
		e.host = "hello.pier.localhost:" + a.apiPort
		return a.ssh
	case <-time.After(2 * time.Minute):
		tb.Fatalf("pierd did not start:\n%s", e.out)
	}
	return ""
}

// stop stops pierd as Ctrl-C does, then removes what it keeps outside the
// data dir when run as root: the relocated embedded cluster and the runtime
// dir (builds, app processes' dirs).
func (e *pushEnv) stop(tb testing.TB, done <-chan struct{}) {
	e.pierd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(time.Minute):
		tb.Logf("pierd did not stop after Ctrl-C; killing it")
		e.pierd.Process.Kill()
		<-done
	}
	if tb.Failed() {
		tb.Logf("pierd output:\n%s", e.out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := embedded.New(e.data).Destroy(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) {
		tb.Logf("removing pierd's embedded cluster: %v", err)
	}
	if os.Geteuid() == 0 {
		// As cmd/pierd's runtimeDir names it.
		abs, _ := filepath.Abs(e.data)
		sum := sha256.Sum256([]byte(abs))
		host.RemoveAll(filepath.Join("/var/lib/pier", "rt-"+hex.EncodeToString(sum[:8])))
	}
}

// pier runs the CLI with the benchmark's config dir.
func (e *pushEnv) pier(tb testing.TB, stdin string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(filepath.Join(e.bin, "pier"), args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+e.home, "HOME="+e.home)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Dir = e.src
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("pier %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// createApp runs apps:create in the repository, which adds the pier remote.
func (e *pushEnv) createApp(tb testing.TB) {
	tb.Helper()
	if out := e.pier(tb, "", "apps:create", "hello"); !strings.Contains(out, "Git remote pier added") {
		tb.Fatalf("apps:create added no git remote:\n%s", out)
	}
}

func (e *pushEnv) gitCmd(args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = e.src
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND="+e.sshArg,
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.com",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.com",
		"HOME="+e.home)
	return cmd
}

func (e *pushEnv) git(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := e.gitCmd(args...).CombinedOutput(); err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// pushResult is one push: until the new body was served, until git push
// exited (which pierd makes wait for the release), and the build's own
// time as the host strategy reports it in the push's output.
type pushResult struct{ serve, exit, build time.Duration }

var buildDone = regexp.MustCompile(`Build done in ([0-9.]+)s`)

// push runs git push pier main and, meanwhile, GETs the app through the
// router every 10 ms until it answers with version's body.
func (e *pushEnv) push(tb testing.TB, version string) pushResult {
	tb.Helper()
	want := " from " + version // the sample says "hello $GREETING from <version>"
	type exited struct {
		at  time.Duration
		out []byte
		err error
	}
	start := time.Now()
	cmd := e.gitCmd("push", "pier", "main")
	ch := make(chan exited, 1)
	go func() {
		out, err := cmd.CombinedOutput()
		ch <- exited{time.Since(start), out, err}
	}()
	var (
		r      pushResult
		ex     *exited
		served bool
		last   string
	)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(pushTimeout)
	for !served || ex == nil {
		select {
		case x := <-ch:
			ex = &x
			r.exit = x.at
			if x.err != nil {
				tb.Fatalf("git push: %v\n%s\npierd:\n%s", x.err, x.out, e.out)
			}
			if m := buildDone.FindSubmatch(x.out); m != nil {
				secs, _ := strconv.ParseFloat(string(m[1]), 64)
				r.build = time.Duration(secs * float64(time.Second))
			}
		case <-tick.C:
			if served {
				continue
			}
			if body, err := e.get(); err == nil && strings.HasSuffix(body, want) {
				r.serve, served = time.Since(start), true
			} else if err != nil {
				last = err.Error()
			} else {
				last = body
			}
			if ex != nil && !served && time.Since(start) > ex.at+30*time.Second {
				tb.Fatalf("30 s after git push exited, the app still answers %q, not ...%q\n%s", last, want, ex.out)
			}
		case <-deadline:
			cmd.Process.Kill()
			tb.Fatalf("push of %s: not served after %s (last answer %q)", version, pushTimeout, last)
		}
	}
	return r
}

// get GETs / of the app through the router.
func (e *pushEnv) get() (string, error) {
	req, err := http.NewRequest("GET", e.url+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = e.host
	res, err := e.client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %.100s", res.StatusCode, b)
	}
	return strings.TrimSpace(string(b)), err
}

// ---- the floor: the bare lifecycle ----

// floor runs the lifecycle's detector and builder directly, with the flags,
// platform dir, layers and environment of builder/host, over the same
// buildpacks, on a copy of the sample. Only the two phases are timed: none
// of Pier's work (git receive, copying the source, moving the cache, the
// release, starting the process, routing) is. The build user is the
// caller, or nobody when the benchmark runs as root (the lifecycle refuses
// root, as pierd's builds do).
type floor struct {
	dir        string // builds/<n>, cache/, src/
	lifecycle  string // the lifecycle binary
	buildpacks string
	src        string
	cache      string // the cache layers kept between runs, as host's <app>/.cache
	root       bool
	n          int
}

func newFloor(tb testing.TB, parent, bin string) *floor {
	tb.Helper()
	f := &floor{
		dir:        filepath.Join(parent, "floor"),
		lifecycle:  filepath.Join(bin, "lifecycle", "lifecycle"),
		buildpacks: filepath.Join(bin, "buildpacks"),
		root:       os.Geteuid() == 0,
	}
	f.src, f.cache = filepath.Join(f.dir, "src"), filepath.Join(f.dir, "cache")
	for _, d := range []string{f.src, f.cache, filepath.Join(f.dir, "builds")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	copyDir(tb, sampleDir, f.src)
	return f
}

// build runs detector then builder on a fresh build directory of the
// source, with the cache layers of the previous run restored (renamed in,
// as host.RestoreCache does) and saved back afterwards, and returns the
// wall time of the two phases.
func (f *floor) build() (time.Duration, error) {
	f.n++
	out := filepath.Join(f.dir, "builds", fmt.Sprint(f.n))
	app, layers, tmp := filepath.Join(out, "app"), filepath.Join(out, "layers"), filepath.Join(out, "tmp")
	platform := filepath.Join(tmp, "platform")
	for _, d := range []string{app, layers, filepath.Join(platform, "env"), filepath.Join(tmp, "home"), filepath.Join(tmp, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	defer host.RemoveAll(out)
	if err := copyTree(f.src, app); err != nil {
		return 0, err
	}
	analyzed := filepath.Join(tmp, "analyzed.toml")
	if err := os.WriteFile(analyzed, nil, 0o644); err != nil {
		return 0, err
	}
	if f.root {
		if err := chownTree(out, host.Nobody, host.Nobody); err != nil {
			return 0, err
		}
	}
	// After the chown: the cache is restored to the owner of layers.
	if err := host.RestoreCache(f.cache, layers); err != nil {
		return 0, err
	}
	group, plan := filepath.Join(tmp, "group.toml"), filepath.Join(tmp, "plan.toml")
	order := filepath.Join(f.buildpacks, "order.toml")

	start := time.Now()
	if err := f.phase(tmp, "detector",
		"-app", app, "-buildpacks", f.buildpacks, "-layers", layers,
		"-order", order, "-platform", platform,
		"-group", group, "-plan", plan, "-no-color", "-log-level", "warn"); err != nil {
		return 0, err
	}
	if err := f.phase(tmp, "builder",
		"-app", app, "-buildpacks", f.buildpacks, "-layers", layers,
		"-group", group, "-plan", plan, "-platform", platform,
		"-analyzed", analyzed, "-no-color", "-log-level", "warn"); err != nil {
		return 0, err
	}
	took := time.Since(start)

	md, err := os.ReadFile(filepath.Join(layers, "config", "metadata.toml"))
	if err != nil || !strings.Contains(string(md), `type = "web"`) {
		return 0, fmt.Errorf("the bare build made no web process (%v):\n%s", err, md)
	}
	return took, host.SaveCache(layers, f.cache)
}

// phase runs one lifecycle phase as builder/host's Strategy.phase does:
// argv[0] names the phase, the working directory is the build's tmp, the
// environment is host's buildEnv, in its own process group.
func (f *floor) phase(tmp, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), host.DefaultTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.lifecycle, args...)
	cmd.Args[0] = name
	cmd.Dir = tmp
	cmd.Env = buildEnv(tmp)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if f.root {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: host.Nobody, Gid: host.Nobody}
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		return fmt.Errorf("bare %s: %v\n%s", name, err, &out)
	}
	return nil
}

// passedEnv is builder/host's list of the server's variables that builds
// inherit.
var passedEnv = []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
	"GOPROXY", "GONOSUMDB", "GOPRIVATE", "GOSUMDB", "GOINSECURE", "SSL_CERT_FILE", "SSL_CERT_DIR"}

// buildEnv is builder/host's buildEnv with its default PATH.
func buildEnv(tmp string) []string {
	env := []string{
		"CNB_PLATFORM_API=" + host.PlatformAPI,
		"PATH=" + host.DefaultPath,
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

// setVersion rewrites the sample's version const in dir/main.go.
func setVersion(tb testing.TB, dir, v string) {
	tb.Helper()
	p := filepath.Join(dir, "main.go")
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	if !versionConst.Match(b) {
		tb.Fatalf("%s has no `const version = \"...\"` line to change", p)
	}
	b = versionConst.ReplaceAll(b, []byte(fmt.Sprintf("const version = %q", v)))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func copyDir(tb testing.TB, from, to string) {
	tb.Helper()
	if err := copyTree(from, to); err != nil {
		tb.Fatal(err)
	}
}

// copyTree copies the regular files and directories of src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, target, 0o644)
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
