package main_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier/postgres/embedded"
)

// stack is `pierd all` with a signed-in user whose SSH key may push: what a
// newcomer has after `make run`, `pier register` and `pier keys:add`.
type stack struct {
	t       *testing.T
	data    string
	env     []string
	d       *daemon
	c       *cli
	key     string // private key file
	sshPort string
	attr    *syscall.SysProcAttr // pierd's process attributes; nil: none
	prefix  []string             // the command that runs pierd (launchVia); nil: none
}

// startStack starts pierd all on a fresh data dir and signs a user in.
func startStack(t *testing.T, env ...string) *stack {
	t.Helper()
	return newStack(t, nil, env...)
}

// newStack is startStack with pierd's process attributes (nil: none).
func newStack(t *testing.T, attr *syscall.SysProcAttr, env ...string) *stack {
	t.Helper()
	s := &stack{t: t, data: newDataDir(t), attr: attr}
	s.env = append([]string{"PIER_DATA_DIR=" + s.data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0", "PIER_SSH_ADDR=127.0.0.1:0"}, env...)
	s.start()
	s.signIn(filepath.Join(s.data, "bootstrap-token"))
	return s
}

// signIn registers the first user with the bootstrap token in tokenFile
// and adds an SSH key for pushes.
func (s *stack) signIn(tokenFile string) {
	t := s.t
	t.Helper()
	s.c = newCLI(t)
	s.c.must("push test password\n", "register", s.d.url, "--username", "dev", "--bootstrap-token-file", tokenFile, "--password-stdin")
	s.key = filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", s.key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	s.c.must("", "keys:add", s.key+".pub")
}

// start (re)starts pierd on the stack's data dir. Its ports change, so the
// CLI logs in again at the new URL.
func (s *stack) start() {
	s.t.Helper()
	c := launchVia(s.t, s.prefix, []string{"all"}, s.attr, s.env, listening, 2*time.Minute)
	s.d = &daemon{component: c, url: "http://" + c.addr}
	if m := sshListening.FindStringSubmatch(s.d.out.String()); m != nil {
		s.sshPort = m[1][strings.LastIndex(m[1], ":")+1:]
	} else if !slices.Contains(s.env, "PIER_SSH_ADDR=off") {
		s.t.Fatalf("no builder address:\n%s", s.d.out)
	}
	if s.c != nil {
		s.c.must("push test password\n", "login", s.d.url, "--username", "dev", "--password-stdin")
	}
}

// httpPort is the router's port.
func (s *stack) httpPort() string { return s.d.url[strings.LastIndex(s.d.url, ":")+1:] }

// get fetches path of app through the router, as a browser at
// http://<app>.pier.localhost:PORT would.
func (s *stack) get(client *http.Client, app, path string) (int, string, error) {
	req, err := http.NewRequest("GET", s.d.url+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = app + ".pier.localhost:" + s.httpPort()
	res, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b)), err
}

// body fetches path of app and fails the test unless it is a 200.
func (s *stack) body(app, path string) string {
	s.t.Helper()
	code, b, err := s.get(http.DefaultClient, app, path)
	if err != nil || code != 200 {
		s.t.Fatalf("GET %s%s: %d %v %s", app, path, code, err, b)
	}
	return b
}

// repo is a git work tree whose `pier` remote is an app.
type repo struct {
	s   *stack
	dir string
	app string
}

// newRepo copies a sample into a new git repository, commits it and runs
// `pier apps:create app` inside it, which adds the pier remote.
func (s *stack) newRepo(sample, app string) *repo {
	s.t.Helper()
	r := &repo{s: s, dir: s.t.TempDir(), app: app}
	copyTree(s.t, sample, r.dir)
	r.git("init", "-q", "-b", "main")
	r.git("add", ".")
	r.git("commit", "-q", "-m", "first")
	create := exec.Command(filepath.Join(binDir, "pier"), "apps:create", app)
	create.Dir = r.dir
	create.Env = append(os.Environ(), "XDG_CONFIG_HOME="+s.c.config, "HOME="+s.c.config)
	if out, err := create.CombinedOutput(); err != nil || !strings.Contains(string(out), "Git remote pier added") {
		s.t.Fatalf("apps:create in the repo: %v\n%s", err, out)
	}
	return r
}

// clone is a second work tree of the app, as a teammate has.
func (r *repo) clone() *repo {
	r.s.t.Helper()
	c := &repo{s: r.s, dir: r.s.t.TempDir(), app: r.app}
	r.gitIn("", "clone", "-q", r.dir, c.dir)
	url := strings.TrimSpace(r.git("remote", "get-url", "pier"))
	c.git("remote", "add", "pier", url)
	return c
}

func (r *repo) command(args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(),
		// The remote is re-pointed at the current port: pierd's port
		// changes when a test restarts it.
		"GIT_SSH_COMMAND=ssh -i "+r.s.key+" -p "+r.s.sshPort+" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR",
		"GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev", "GIT_COMMITTER_EMAIL=dev@example.com",
		"HOME="+r.s.c.config)
	return cmd
}

// git runs git in the work tree and fails the test if it fails.
func (r *repo) git(args ...string) string {
	r.s.t.Helper()
	return r.gitIn(r.dir, args...)
}

func (r *repo) gitIn(dir string, args ...string) string {
	r.s.t.Helper()
	cmd := r.command(args...)
	if dir == "" {
		cmd.Dir = ""
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.s.t.Fatalf("git %s: %v\n%s\npierd:\n%s", strings.Join(args, " "), err, out, r.s.d.out)
	}
	return string(out)
}

// push runs `git push pier main` (and any extra args) with the remote
// pointed at pierd's current SSH port.
func (r *repo) push(args ...string) (string, error) {
	r.s.t.Helper()
	r.pointRemote()
	cmd := r.command(append([]string{"push", "pier", "main"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *repo) mustPush(args ...string) string {
	r.s.t.Helper()
	out, err := r.push(args...)
	if err != nil {
		r.s.t.Fatalf("git push: %v\n%s", err, out)
	}
	return out
}

func (r *repo) pointRemote() {
	r.s.t.Helper()
	r.git("remote", "set-url", "pier", "ssh://git@localhost:"+r.s.sshPort+"/"+r.app+".git")
}

// edit replaces old by new in a file of the work tree and commits.
func (r *repo) edit(file, old, new, msg string) {
	r.s.t.Helper()
	p := filepath.Join(r.dir, file)
	b, err := os.ReadFile(p)
	if err != nil {
		r.s.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		r.s.t.Fatalf("%s does not contain %q", file, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		r.s.t.Fatal(err)
	}
	r.git("commit", "-q", "-am", msg)
}

func (r *repo) head() string { return strings.TrimSpace(r.git("rev-parse", "HEAD")) }

// copyTree copies a sample directory tree.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// markedProcesses lists the pids of processes whose environment holds
// NAME=value: app processes get their config vars in their environment, so
// a config var set to a fresh value finds every process of that app.
func markedProcesses(t *testing.T, name, value string) []int {
	t.Helper()
	want := []byte(name + "=" + value + "\x00")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or not ours to read
		}
		if strings.Contains(string(env), string(want)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %s: %s", what, timeout, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newDataDir is a fresh data dir for pierd. As root, pierd keeps the
// embedded Postgres cluster and the runtime dir (builds, app processes)
// under /var/lib/pier, keyed by the data dir's path (postgres/embedded,
// runtimeDir in platform.go): they go too when the test ends, after every
// pierd on it has stopped (this cleanup is registered before any pierd
// starts, and cleanups run last first).
func newDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := embedded.New(dir).Destroy(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Logf("removing the embedded Postgres of %s: %v", dir, err)
		}
		if os.Geteuid() == 0 {
			os.RemoveAll(embedded.RelocatedDir("rt", dir))
		}
	})
	return dir
}
