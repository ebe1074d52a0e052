package main_test

// End-to-end tests: the real pierd and pier binaries, as a user runs them.

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres/embedded"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		dir, err := os.MkdirTemp("", "pier-e2e-bin")
		if err != nil {
			panic(err)
		}
		binDir = dir
		for _, pkg := range []string{"./cmd/pierd", "./cmd/pier"} {
			cmd := exec.Command("go", "build", "-o", dir, pkg)
			cmd.Dir = "../.."
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				panic(fmt.Sprintf("build %s: %v", pkg, err))
			}
		}
		// pierd all finds the lifecycle and buildpacks beside itself.
		lc, err := testenv.CNBTools(filepath.Join(dir, "buildpacks"))
		if err != nil {
			panic(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "lifecycle"), 0o755); err != nil {
			panic(err)
		}
		for _, name := range []string{"lifecycle", "launcher"} {
			b, err := os.ReadFile(filepath.Join(lc, name))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "lifecycle", name), b, 0o755)
			}
			if err != nil {
				panic(err)
			}
		}
	}
	// The binaries (170 MB) go when the tests end: a defer here would
	// never run, as testenv.Main exits.
	testenv.Main(m, func() {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	})
}

// daemon is a running pierd all or pierd controller.
type daemon struct {
	*component
	url string // http://127.0.0.1:PORT
}

// component is a running pierd process: all, controller, router or
// builder.
type component struct {
	cmd  *exec.Cmd
	out  *testenv.Buffer
	addr string // 127.0.0.1:PORT, as its listening line says
	done chan error
}

var (
	listening    = regexp.MustCompile(`Pier API listening on (127\.0\.0\.1:\d+)`)
	sshListening = regexp.MustCompile(`Builder \(git push over SSH\) listening on (127\.0\.0\.1:\d+)`)
)

// startPierd runs `pierd args...` and waits until it serves.
func startPierd(t *testing.T, env []string, args ...string) *daemon {
	t.Helper()
	return startPierdAttr(t, nil, env, args...)
}

// startPierdAttr is startPierd with the process attributes attr (nil:
// none), such as a process group of its own.
func startPierdAttr(t *testing.T, attr *syscall.SysProcAttr, env []string, args ...string) *daemon {
	t.Helper()
	c := launch(t, args, attr, env, listening, 2*time.Minute)
	return &daemon{component: c, url: "http://" + c.addr}
}

// launch runs `pierd args...` with env added to the environment and the
// process attributes attr (nil: none), and waits until it prints a line
// that ready matches, whose first group is the address it listens on. It
// is stopped, if still running, when the test ends.
func launch(t *testing.T, args []string, attr *syscall.SysProcAttr, env []string, ready *regexp.Regexp, wait time.Duration) *component {
	t.Helper()
	return launchVia(t, nil, args, attr, env, ready, wait)
}

// launchVia is launch with pierd run by the command prefix (nil: none),
// which must end by executing pierd with its arguments (TestFullDisk's
// runs it in a mount namespace of its own).
func launchVia(t *testing.T, prefix, args []string, attr *syscall.SysProcAttr, env []string, ready *regexp.Regexp, wait time.Duration) *component {
	t.Helper()
	c := &component{out: &testenv.Buffer{}, done: make(chan error, 1)}
	argv := append(append(slices.Clip(prefix), filepath.Join(binDir, "pierd")), args...)
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.SysProcAttr = attr
	pr, pw := io.Pipe()
	c.cmd.Stdout = io.MultiWriter(c.out, pw)
	c.cmd.Stderr = c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(40 * time.Second):
				c.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("pierd %v output:\n%s", args, c.out)
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatalf("pierd %v exited before listening:\n%s", args, c.out)
		}
		c.addr = addr
		go io.Copy(io.Discard, pr)
	case <-time.After(wait):
		t.Fatalf("pierd %v did not start:\n%s", args, c.out)
	}
	return c
}

// stop sends SIGINT, as Ctrl-C does, and checks pierd exits cleanly.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("pierd exited with %v after Ctrl-C:\n%s", err, d.out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("pierd did not stop after Ctrl-C:\n%s", d.out)
	}
}

// cli runs the pier CLI with its own config dir.
type cli struct {
	t      *testing.T
	config string
	env    []string
}

func newCLI(t *testing.T, env ...string) *cli {
	return &cli{t: t, config: t.TempDir(), env: env}
}

func (c *cli) run(stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "pier"), args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.config, "HOME="+c.config)
	cmd.Env = append(cmd.Env, c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Dir = c.config // not inside a git repo: -a is needed
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cli) must(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, args...)
	if err != nil {
		c.t.Fatalf("pier %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestFirstSession is acceptance point 1: pierd with its embedded Postgres,
// the bootstrap token, and the first CLI session; then Ctrl-C, and a second
// start that reuses the data.
func TestFirstSession(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pierd and Postgres")
	}
	data := newDataDir(t)
	env := []string{"PIER_DATA_DIR=" + data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0", "PIER_SSH_ADDR=127.0.0.1:0"}
	d := startPierd(t, env, "all")
	token, err := os.ReadFile(filepath.Join(data, "bootstrap-token"))
	if err != nil {
		t.Fatalf("no bootstrap token file: %v\n%s", err, d.out)
	}
	if !strings.Contains(d.out.String(), strings.TrimSpace(string(token))) {
		t.Fatalf("bootstrap token not printed:\n%s", d.out)
	}

	c := newCLI(t)
	c.must("s3cret password\n", "register", d.url, "--username", "ada", "--bootstrap-token-file", filepath.Join(data, "bootstrap-token"), "--password-stdin")
	c.must("", "logout")
	if out, err := c.run("", "apps"); err == nil {
		t.Fatalf("apps after logout worked:\n%s", out)
	}
	c.must("s3cret password\n", "login", d.url, "--username", "ada", "--password-stdin")
	if out := c.must("", "whoami"); !strings.Contains(out, "ada") {
		t.Fatalf("whoami: %s", out)
	}
	c.must("", "apps:create", "myapp")
	c.must("", "config:set", "A=1", "B=x y", "-a", "myapp")
	out := c.must("", "releases", "-a", "myapp")
	if !strings.Contains(out, "v1") || !strings.Contains(out, "v2") || !strings.Contains(out, "Initial release") || !strings.Contains(out, "Set A, B") {
		t.Fatalf("releases:\n%s", out)
	}
	// A canary secret: it must reach no log line of pierd's.
	canary := fmt.Sprintf("canary-%d-secret", time.Now().UnixNano())
	c.must("", "config:set", "SECRET="+canary, "-a", "myapp")
	c.must("", "config:unset", "SECRET", "-a", "myapp")
	c.must("", "releases:rollback", "v2", "-a", "myapp")
	c.must("", "releases:rollback", "v1", "-a", "myapp")
	c.must("", "scale", "web=2", "-a", "myapp")
	var rels []pier.Release
	jsonOut(t, c.must("", "releases", "-a", "myapp", "--json"), &rels)
	if len(rels) != 6 || rels[0].Version != 6 || rels[0].Note != "Rollback to v1" || rels[1].Note != "Rollback to v2" {
		t.Fatalf("releases after rollback: %+v", rels)
	}
	var info pier.AppInfo
	jsonOut(t, c.must("", "apps:info", "-a", "myapp", "--json"), &info)
	if info.Formation["web"] != 2 {
		t.Fatalf("formation: %v", info.Formation)
	}
	c.must("", "apps:create", "keeper")
	if out, err := c.run("", "apps:destroy", "-a", "myapp"); err == nil {
		t.Fatalf("apps:destroy without --confirm and no terminal worked:\n%s", out)
	}
	c.must("", "apps:destroy", "-a", "myapp", "--confirm", "myapp")

	d.stop(t)
	pglog, err := os.ReadFile(embedded.New(data).LogFile)
	if err != nil {
		t.Fatalf("embedded Postgres log: %v", err)
	}
	for _, secret := range []string{canary, "s3cret password", readToken(t, c)} {
		if strings.Contains(d.out.String(), secret) || strings.Contains(string(pglog), secret) {
			t.Fatalf("pierd's output holds a secret (%.12s...):\n%s", secret, d.out)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "bootstrap-token")); err != nil {
		t.Fatalf("bootstrap token file gone too early: %v", err)
	}

	// A second start reuses the data: the same user, the surviving app, and
	// no new bootstrap token (the used one is cleaned up).
	d = startPierd(t, env, "all")
	if _, err := os.Stat(filepath.Join(data, "bootstrap-token")); !os.IsNotExist(err) {
		t.Fatalf("used bootstrap token still on disk: %v", err)
	}
	c.must("s3cret password\n", "login", d.url, "--username", "ada", "--password-stdin")
	var apps []pier.App
	jsonOut(t, c.must("", "apps", "--json"), &apps)
	if len(apps) != 1 || apps[0].Name != "keeper" {
		t.Fatalf("apps after restart: %+v", apps)
	}
	d.stop(t)
}

// TestTwoControllers is acceptance point 2: 20 concurrent config:set calls
// spread over two pierd processes on one database give 20 distinct,
// consecutive versions, and the final config holds every key.
func TestTwoControllers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pierd and Postgres")
	}
	dsn := testenv.Database(t)
	d1 := startPierd(t, []string{"PIER_DATA_DIR=" + t.TempDir(), "PIER_HTTP_ADDR=127.0.0.1:0"}, "controller", "--database-url", dsn)
	d2 := startPierd(t, []string{"PIER_DATA_DIR=" + t.TempDir(), "PIER_HTTP_ADDR=127.0.0.1:0"}, "controller", "--database-url", dsn)
	boot := regexp.MustCompile(`pierboot_[A-Za-z0-9_-]+`).FindString(d1.out.String() + d2.out.String())
	if boot == "" {
		t.Fatalf("no bootstrap token printed:\n%s\n%s", d1.out, d2.out)
	}
	admin := newCLI(t)
	admin.must("pw for the admin\n", "register", d1.url, "--username", "admin", "--bootstrap-token", boot, "--password-stdin")
	admin.must("", "apps:create", "busy")
	// A session from one controller is good on the other: the signing key is shared.
	token := readToken(t, admin)
	c2 := newCLI(t, "PIER_URL="+d2.url, "PIER_TOKEN="+token)
	c2.must("", "whoami")

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			url := d1.url
			if i%2 == 1 {
				url = d2.url
			}
			c := &cli{t: t, config: admin.config, env: []string{"PIER_URL=" + url, "PIER_TOKEN=" + token}}
			if out, err := c.run("", "config:set", fmt.Sprintf("KEY_%02d=value %d", i, i), "-a", "busy"); err != nil {
				errs <- fmt.Errorf("config:set %d via %s: %v\n%s", i, url, err, out)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var rels []pier.Release
	jsonOut(t, admin.must("", "releases", "-a", "busy", "-n", "100", "--json"), &rels)
	var versions []int
	for _, r := range rels {
		versions = append(versions, r.Version)
	}
	sort.Ints(versions)
	if len(versions) != n+1 {
		t.Fatalf("%d releases, want %d: %v", len(versions), n+1, versions)
	}
	for i, v := range versions {
		if v != i+1 {
			t.Fatalf("versions are not 1..%d: %v", n+1, versions)
		}
	}
	var cfg pier.Config
	jsonOut(t, admin.must("", "config", "-a", "busy", "--json"), &cfg)
	for i := 0; i < n; i++ {
		if k := fmt.Sprintf("KEY_%02d", i); cfg[k] != fmt.Sprintf("value %d", i) {
			t.Errorf("final config lacks %s: %v", k, cfg)
		}
	}
}

func readToken(t *testing.T, c *cli) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.config, "pier", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ Token string }
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Token == "" {
		t.Fatalf("CLI config %s: %v", b, err)
	}
	return cfg.Token
}

// jsonOut decodes --json output: either a bare value or an API list.
func jsonOut(t *testing.T, out string, v any) {
	t.Helper()
	var l struct {
		Items json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &l); err == nil && l.Items != nil {
		out = string(l.Items)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
}
