package builder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness is a builder on 127.0.0.1 over a real store, driven with the
// real OpenSSH client and git.
type harness struct {
	t        *testing.T
	ctx      context.Context
	store    *postgres.DB
	dsn      string // store's
	cfg      Config
	srv      *Server
	port     string
	deployer *fakeDeployer
	home     string // HOME of the git and ssh clients
	logs     *testenv.Buffer
}

func newHarness(t *testing.T, configure func(*Config)) *harness {
	t.Helper()
	for _, bin := range []string{"git", "ssh", "ssh-keyscan"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed: %v", bin, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dsn := testenv.Database(t)
	store, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	h := &harness{
		t: t, ctx: ctx, store: store, dsn: dsn,
		deployer: &fakeDeployer{checkouts: t.TempDir()},
		home:     t.TempDir(),
		logs:     &testenv.Buffer{},
	}
	h.cfg = Config{
		DataDir:  t.TempDir(),
		Store:    store,
		Deployer: h.deployer,
		Logger:   slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(&h.cfg)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs.String())
		}
	})
	h.start()
	return h
}

// start runs a Server on the harness's data dir, stopped when the test ends.
func (h *harness) start() {
	h.t.Helper()
	srv, err := New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	h.srv = srv
	_, h.port, _ = net.SplitHostPort(l.Addr().String())
	h.t.Cleanup(func() { h.stop(srv, done) })
}

func (h *harness) stop(srv *Server, done chan error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		h.t.Errorf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		h.t.Errorf("Serve: %v", err)
	}
}

// keyFile writes a new ed25519 private key for `ssh -i` and returns its
// path and public half.
func (h *harness) keyFile() (path, authorized, fingerprint string) {
	h.t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		h.t.Fatal(err)
	}
	path = filepath.Join(h.t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		h.t.Fatal(err)
	}
	pub, err := gossh.NewPublicKey(priv.Public())
	if err != nil {
		h.t.Fatal(err)
	}
	return path, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))), gossh.FingerprintSHA256(pub)
}

// user registers a user with one key and returns the key's file.
func (h *harness) user(name string, admin bool) string {
	h.t.Helper()
	u := &pier.User{Username: name, Email: name + "@example.com", Admin: admin}
	if err := h.store.CreateUser(h.ctx, u, "hash-of-"+name); err != nil {
		h.t.Fatal(err)
	}
	path, authorized, fp := h.keyFile()
	if err := h.store.AddKey(h.ctx, &pier.Key{Username: name, Name: "laptop", Fingerprint: fp, PublicKey: authorized}); err != nil {
		h.t.Fatal(err)
	}
	return path
}

func (h *harness) app(name, owner string, members ...string) {
	h.t.Helper()
	if _, err := h.store.CreateApp(h.ctx, &pier.App{Name: name}, owner); err != nil {
		h.t.Fatal(err)
	}
	for _, m := range members {
		if err := h.store.AddMember(h.ctx, name, m, owner); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) sshArgs(key string) []string {
	return []string{
		"-F", "/dev/null", "-i", key, "-p", h.port,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
	}
}

func (h *harness) clientEnv(key string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + h.home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"SSH_AUTH_SOCK=",
		"GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com",
		// git runs this through a shell; it holds only our temp paths.
		"GIT_SSH_COMMAND=ssh " + strings.Join(h.sshArgs(key), " "),
	}
}

// ssh runs the real ssh client with a raw remote command ("" for none)
// and returns its stdout, stderr and exit status.
func (h *harness) ssh(t *testing.T, key string, command ...string) (stdout, stderr string, code int) {
	t.Helper()
	args := append(h.sshArgs(key), "-T", "git@127.0.0.1")
	args = append(args, command...)
	cmd := exec.CommandContext(h.ctx, "ssh", args...)
	cmd.Env = h.clientEnv(key)
	cmd.Stdin = strings.NewReader("")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// git runs git in dir with key for SSH; it returns the combined output.
func (h *harness) git(dir, key string, args ...string) (string, error) {
	h.t.Helper()
	cmd := exec.CommandContext(h.ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = h.clientEnv(key)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h *harness) mustGit(dir, key string, args ...string) string {
	h.t.Helper()
	out, err := h.git(dir, key, args...)
	if err != nil {
		h.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h *harness) remote(app string) string {
	return fmt.Sprintf("ssh://git@127.0.0.1:%s/%s.git", h.port, app)
}

// workRepo makes a local repository with one commit of files.
func (h *harness) workRepo(files map[string]string) string {
	h.t.Helper()
	dir := h.t.TempDir()
	h.mustGit(dir, "", "init", "-q", "-b", "main")
	h.commit(dir, "first", files)
	return dir
}

func (h *harness) commit(dir, msg string, files map[string]string) string {
	h.t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			h.t.Fatal(err)
		}
	}
	h.mustGit(dir, "", "add", "-A")
	h.mustGit(dir, "", "commit", "-q", "-m", msg)
	return strings.TrimSpace(h.mustGit(dir, "", "rev-parse", "HEAD"))
}

// snapshot lists everything under the data dir with its size, to show
// that a refused request wrote nothing.
func (h *harness) snapshot() []string {
	h.t.Helper()
	var out []string
	err := filepath.WalkDir(h.cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d", p, fi.Size()))
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// fakeDeployer records deploys and checks out each commit the way the real
// one will, with CheckoutTree.
type fakeDeployer struct {
	checkouts string
	delay     time.Duration
	started   chan struct{} // if not nil, told when a deploy starts
	release   chan struct{} // if not nil, a deploy waits for it to close

	mu    sync.Mutex
	err   error
	calls []deployCall
}

type deployCall struct {
	req        DeployRequest
	tree       string // where the commit was checked out
	start, end time.Time
}

func (f *fakeDeployer) Deploy(ctx context.Context, req DeployRequest) error {
	start := time.Now()
	fmt.Fprintf(req.Log, "-----> fake build of %s at %s\n", req.App, req.Commit[:7])
	tree, err := os.MkdirTemp(f.checkouts, "tree-")
	if err != nil {
		return err
	}
	if err := CheckoutTree(ctx, req.Repo, req.Commit, tree); err != nil {
		return err
	}
	if f.started != nil {
		f.started <- struct{}{}
	}
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	req.Log = nil
	f.calls = append(f.calls, deployCall{req: req, tree: tree, start: start, end: time.Now()})
	return f.err
}

func (f *fakeDeployer) Calls() []deployCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func TestPushDeploysMainOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	cy := h.user("cy", false)
	h.app("shop", "ada", "cy")

	work := h.workRepo(map[string]string{"index.html": "hello v1", "src/app.go": "package main"})
	os.Chmod(filepath.Join(work, "src/app.go"), 0o755)
	os.Symlink("src/app.go", filepath.Join(work, "link"))
	sha := h.commit(work, "exec bit and link", nil)
	h.mustGit(work, "", "remote", "add", "pier", h.remote("shop"))

	out := h.mustGit(work, ada, "push", "pier", "main")
	t.Logf("git push pier main:\n%s", out)
	if want := "-----> fake build of shop at " + sha[:7]; !strings.Contains(out, want) {
		t.Errorf("push output lacks the Deployer's %q:\n%s", want, out)
	}
	calls := h.deployer.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d deploys, want 1", len(calls))
	}
	want := DeployRequest{App: "shop", User: "ada", Repo: filepath.Join(h.cfg.DataDir, "repos", "shop.git"), Commit: sha, Ref: "refs/heads/main"}
	if calls[0].req != want {
		t.Errorf("DeployRequest = %+v, want %+v", calls[0].req, want)
	}
	tree := calls[0].tree
	if b, _ := os.ReadFile(filepath.Join(tree, "index.html")); string(b) != "hello v1" {
		t.Errorf("checked-out index.html = %q", b)
	}
	if fi, err := os.Stat(filepath.Join(tree, "src/app.go")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("src/app.go lost its executable bit: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(tree, "link")); err != nil || target != "src/app.go" {
		t.Errorf("link = %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(h.cfg.DataDir, "repos", "shop.git", "hooks")); err == nil {
		if ents, _ := os.ReadDir(filepath.Join(h.cfg.DataDir, "repos", "shop.git", "hooks")); len(ents) > 0 {
			t.Errorf("repo has hooks: %v %v", fi, ents)
		}
	}

	// Another branch is stored, not deployed.
	h.mustGit(work, "", "checkout", "-q", "-b", "feature")
	h.commit(work, "feature work", map[string]string{"index.html": "feature"})
	out = h.mustGit(work, ada, "push", "pier", "feature")
	if !strings.Contains(out, "not deployed: push to main to deploy") {
		t.Errorf("push of feature: %s", out)
	}
	if n := len(h.deployer.Calls()); n != 1 {
		t.Errorf("%d deploys after a feature push, want 1", n)
	}

	// A collaborator clones: main is checked out.
	clone := filepath.Join(t.TempDir(), "shop")
	h.mustGit("", cy, "clone", "-q", h.remote("shop"), clone)
	if b, _ := os.ReadFile(filepath.Join(clone, "index.html")); string(b) != "hello v1" {
		t.Errorf("cloned index.html = %q", b)
	}
	if got := strings.TrimSpace(h.mustGit(clone, "", "rev-parse", "HEAD")); got != sha {
		t.Errorf("clone HEAD = %s, want %s", got, sha)
	}

	// The collaborator pushes to main too, via scp-like syntax (no slash).
	sha2 := h.commit(clone, "v2", map[string]string{"index.html": "hello v2"})
	scpCmd := "ssh " + strings.Join(h.sshArgs(cy), " ")
	cmd := exec.Command("git", "-c", "core.sshCommand="+scpCmd, "push", "git@127.0.0.1:shop.git", "main")
	cmd.Dir, cmd.Env = clone, h.clientEnv(cy)
	// scp-like URLs have no port: give it through ssh's -p in sshArgs.
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scp-style push: %v\n%s", err, out)
	}
	calls = h.deployer.Calls()
	if len(calls) != 2 || calls[1].req.Commit != sha2 || calls[1].req.User != "cy" {
		t.Errorf("after cy's push: %+v", calls)
	}

	// git itself refuses to delete the branch HEAD names; nothing deploys.
	if out, err := h.git(work, ada, "push", "pier", ":main"); err == nil || !strings.Contains(out, "deletion of the current branch prohibited") {
		t.Errorf("deleting main: %v\n%s", err, out)
	}
	if n := len(h.deployer.Calls()); n != 2 {
		t.Errorf("%d deploys after deleting main, want 2", n)
	}
}

func TestPushMasterDeploys(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", true) // admins need no membership
	h.user("bob", false)
	h.app("shop", "bob")
	work := h.workRepo(map[string]string{"Procfile": "web: ./run"})
	h.mustGit(work, "", "branch", "-m", "master")
	sha := strings.TrimSpace(h.mustGit(work, "", "rev-parse", "HEAD"))
	h.mustGit(work, ada, "push", h.remote("shop"), "master")
	calls := h.deployer.Calls()
	if len(calls) != 1 || calls[0].req.Ref != "refs/heads/master" || calls[0].req.Commit != sha || calls[0].req.User != "ada" {
		t.Fatalf("deploys: %+v", calls)
	}
	// HEAD follows the deployed branch, so a clone checks out master.
	clone := filepath.Join(t.TempDir(), "c")
	h.mustGit("", ada, "clone", "-q", h.remote("shop"), clone)
	if _, err := os.Stat(filepath.Join(clone, "Procfile")); err != nil {
		t.Errorf("clone has no checkout: %v", err)
	}

	// main, pushed later, deploys too; deleting it (HEAD is master)
	// deploys nothing and says so.
	h.mustGit(work, ada, "push", h.remote("shop"), "master:main")
	if n := len(h.deployer.Calls()); n != 2 {
		t.Fatalf("%d deploys after pushing main, want 2", n)
	}
	out := h.mustGit(work, ada, "push", h.remote("shop"), ":main")
	if !strings.Contains(out, "pier: main deleted: nothing deployed") {
		t.Errorf("deleting main: %s", out)
	}
	if n := len(h.deployer.Calls()); n != 2 {
		t.Errorf("%d deploys after deleting main, want 2", n)
	}
}

func TestDeployErrorFailsPush(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	h.app("shop", "ada")
	h.deployer.err = pier.Errorf(pier.EINVALID, "build failed: no buildpack detected\n(looked for go.mod, package.json)")
	work := h.workRepo(map[string]string{"README": "x"})
	out, err := h.git(work, ada, "push", h.remote("shop"), "main")
	t.Logf("git push with a failing deploy:\n%s", out)
	if err == nil {
		t.Fatalf("push succeeded despite the failed deploy:\n%s", out)
	}
	if !strings.Contains(out, "pier: deploy failed: build failed: no buildpack detected; (looked for go.mod, package.json)") {
		t.Errorf("push output lacks the reason on one line:\n%s", out)
	}
	if !strings.Contains(out, "-----> fake build") {
		t.Errorf("deploy output did not reach the pusher:\n%s", out)
	}

	// Errors that are not pier's are not shown: they may hold internals.
	h.deployer.mu.Lock()
	h.deployer.err = errors.New("dial unix /run/secret.sock: connection refused")
	h.deployer.mu.Unlock()
	h.commit(work, "again", map[string]string{"README": "y"})
	out, err = h.git(work, ada, "push", h.remote("shop"), "main")
	if err == nil || !strings.Contains(out, "deploy failed: internal error") || strings.Contains(out, "secret.sock") {
		t.Errorf("internal deploy error: %v\n%s", err, out)
	}
}

// TestDeployOutageNamed: a deploy that failed because Pier's database
// stopped answering tells the pusher so, rather than "internal error".
func TestDeployOutageNamed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	h.app("shop", "ada")
	// What the store returns while its database is cut off.
	restore := testenv.CutOff(t, h.dsn)
	_, storeErr := h.store.FindUser(h.ctx, "ada")
	restore()
	if storeErr == nil {
		t.Fatal("the store answered while cut off")
	}
	h.deployer.err = storeErr
	work := h.workRepo(map[string]string{"README": "x"})
	out, err := h.git(work, ada, "push", h.remote("shop"), "main")
	if err == nil || !strings.Contains(out, "pier: deploy failed: "+pier.OutageMessage) {
		t.Errorf("push whose deploy met the outage: %v\n%s", err, out)
	}
}

func TestRefusedCleanly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	bob := h.user("bob", false)
	root := h.user("root", true)
	h.app("shop", "ada")
	stranger, _, _ := h.keyFile() // registered to no one
	before := h.snapshot()

	work := h.workRepo(map[string]string{"a": "b"})

	t.Run("unknown key", func(t *testing.T) {
		_, stderr, code := h.ssh(t, stranger, "git-receive-pack '/shop.git'")
		if code == 0 || !strings.Contains(stderr, "Permission denied (publickey)") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
		if out, err := h.git(work, stranger, "push", h.remote("shop"), "main"); err == nil {
			t.Errorf("push with an unknown key succeeded:\n%s", out)
		}
	})
	t.Run("non-member push", func(t *testing.T) {
		out, err := h.git(work, bob, "push", h.remote("shop"), "main")
		if err == nil || !strings.Contains(out, `pier: app "shop" not found, or you are not one of its members`) {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("non-member clone", func(t *testing.T) {
		out, err := h.git(t.TempDir(), bob, "clone", h.remote("shop"), "c")
		if err == nil || !strings.Contains(out, `not one of its members`) {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("nonexistent app", func(t *testing.T) {
		out, err := h.git(work, ada, "push", h.remote("ghost"), "main")
		if err == nil || !strings.Contains(out, `pier: app "ghost" not found`) {
			t.Errorf("%v\n%s", err, out)
		}
		out, err = h.git(work, root, "push", h.remote("ghost"), "main")
		if err == nil || !strings.Contains(out, `pier: app "ghost" does not exist`) {
			t.Errorf("admin: %v\n%s", err, out)
		}
	})
	t.Run("clone before any push", func(t *testing.T) {
		out, err := h.git(t.TempDir(), ada, "clone", h.remote("shop"), "c")
		if err == nil || !strings.Contains(out, "has no code yet") {
			t.Errorf("%v\n%s", err, out)
		}
	})

	commands := map[string]struct {
		command []string // nil: no command (a shell)
		reason  string
	}{
		"dotdot":         {[]string{"git-receive-pack '../x.git'"}, `repository "../x.git" refused`},
		"leading dash":   {[]string{"git-receive-pack '-x.git'"}, `repository "-x.git" refused`},
		"option":         {[]string{"git-upload-pack '--upload-pack=touch /tmp/pwned.git'"}, "refused"},
		"semicolon":      {[]string{"git-receive-pack 'a;id.git'"}, `repository "a;id.git" refused`},
		"space":          {[]string{"git-receive-pack 'a b.git'"}, "refused"},
		"absolute path":  {[]string{"git-receive-pack '/etc/shop.git'"}, "refused"},
		"id":             {[]string{"id"}, `command "id" refused: only git push and git clone`},
		"sh -c":          {[]string{"sh -c 'touch /tmp/x'"}, "refused: only git push and git clone"},
		"no command":     {nil, "no shell here"},
		"archive":        {[]string{"git-upload-archive '/shop.git'"}, "only git push and git clone"},
		"newline":        {[]string{"git-receive-pack '/shop.git'\nid"}, "control characters"},
		"unknown app":    {[]string{"git-receive-pack '/ghost.git'"}, `app "ghost" not found`},
		"not a member":   {[]string{"git-upload-pack '/shop.git'"}, "not one of its members"}, // sent by bob below
		"reserved name":  {[]string{"git-receive-pack '/admin.git'"}, "reserved"},
		"missing suffix": {[]string{"git-receive-pack '/shop'"}, "expected '<app>.git'"},
	}
	t.Run("commands", func(t *testing.T) {
		for name, tc := range commands {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				key := ada
				if name == "not a member" {
					key = bob
				}
				stdout, stderr, code := h.ssh(t, key, tc.command...)
				if code != 1 {
					t.Errorf("exit status %d, want 1", code)
				}
				if stdout != "" {
					t.Errorf("stdout %q, want nothing", stdout)
				}
				lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
				if len(lines) != 1 || !strings.HasPrefix(lines[0], "pier: ") || !strings.Contains(lines[0], tc.reason) {
					t.Errorf("stderr %q: want one line \"pier: ...%s...\"", stderr, tc.reason)
				}
			})
		}
	})
	t.Run("subsystem", func(t *testing.T) {
		args := append(h.sshArgs(ada), "-T", "-s", "git@127.0.0.1", "sftp")
		cmd := exec.Command("ssh", args...)
		cmd.Env = h.clientEnv(ada)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("sftp subsystem accepted: %s", out)
		}
	})
	t.Run("forwarding and other requests", func(t *testing.T) {
		b, err := os.ReadFile(ada)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := gossh.ParsePrivateKey(b)
		if err != nil {
			t.Fatal(err)
		}
		c, err := gossh.Dial("tcp", "127.0.0.1:"+h.port, &gossh.ClientConfig{
			User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil {
			t.Error("direct-tcpip channel accepted")
		}
		if ok, _, _ := c.SendRequest("tcpip-forward", true, gossh.Marshal(struct {
			Addr string
			Port uint32
		}{"127.0.0.1", 0})); ok {
			t.Error("tcpip-forward accepted")
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err == nil {
			t.Error("pty accepted")
		}
		sess.Setenv("LD_PRELOAD", "/tmp/evil.so") // accepted or not, never passed on
		var stderr bytes.Buffer
		sess.Stderr = &stderr
		err = sess.Run("git-receive-pack '../x.git'")
		var exit *gossh.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 1 || !strings.HasPrefix(stderr.String(), "pier: ") {
			t.Errorf("Run: %v, stderr %q", err, stderr.String())
		}
	})

	if after := h.snapshot(); !slices.Equal(before, after) {
		t.Errorf("refused requests wrote to the data dir:\nbefore %v\nafter  %v", before, after)
	}
	if n := len(h.deployer.Calls()); n != 0 {
		t.Errorf("%d deploys, want 0", n)
	}
	if _, err := os.Stat("/tmp/pwned.git"); err == nil {
		t.Error("/tmp/pwned.git exists")
	}
}

func TestConcurrentPushesAreSerialized(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.deployer.delay = 600 * time.Millisecond
	ada := h.user("ada", false)
	h.app("shop", "ada")
	repos := []string{
		h.workRepo(map[string]string{"who": "first"}),
		h.workRepo(map[string]string{"who": "second"}),
	}
	var shas []string
	for _, r := range repos {
		shas = append(shas, strings.TrimSpace(h.mustGit(r, "", "rev-parse", "HEAD")))
	}
	outs := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, r := range repos {
		wg.Go(func() {
			// --force: the histories are unrelated; whichever goes second
			// replaces the first.
			outs[i], errs[i] = h.git(r, ada, "push", "--force", h.remote("shop"), "main")
		})
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Errorf("push %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	calls := h.deployer.Calls()
	if len(calls) != 2 {
		t.Fatalf("%d deploys, want 2", len(calls))
	}
	if !calls[0].end.Before(calls[1].start) {
		t.Errorf("deploys overlap: [%v, %v] and [%v, %v]", calls[0].start, calls[0].end, calls[1].start, calls[1].end)
	}
	got := []string{calls[0].req.Commit, calls[1].req.Commit}
	slices.Sort(got)
	slices.Sort(shas)
	if !slices.Equal(got, shas) {
		t.Errorf("deployed %v, want %v", got, shas)
	}
	if !strings.Contains(outs[0]+outs[1], "waiting for another push to shop to finish...") {
		t.Errorf("neither pusher was told to wait:\n%s\n---\n%s", outs[0], outs[1])
	}
}

func TestPushLockTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.LockTimeout = 300 * time.Millisecond })
	ada := h.user("ada", false)
	h.app("shop", "ada")
	// Another process holds the app's lock (flock works across processes).
	lock, err := acquirePushLock(h.ctx, filepath.Join(h.cfg.DataDir, "repos", "shop.lock"), "shop", time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	out, err := h.git(h.workRepo(map[string]string{"a": "b"}), ada, "push", h.remote("shop"), "main")
	if err == nil || !strings.Contains(out, "waiting for another push to shop") || !strings.Contains(out, "pier: another push to shop is still running") {
		t.Errorf("%v\n%s", err, out)
	}
}

func TestHostKeyStableAcrossRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	scan := func() string {
		t.Helper()
		out, err := exec.Command("ssh-keyscan", "-p", h.port, "-t", "ed25519", "127.0.0.1").Output()
		if err != nil || !strings.Contains(string(out), "ssh-ed25519") {
			t.Fatalf("ssh-keyscan: %v %q", err, out)
		}
		return string(out)
	}
	first := scan()
	fi, err := os.Stat(filepath.Join(h.cfg.DataDir, hostKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v %v", fi, err)
	}
	fp := h.srv.HostKeyFingerprint()
	h.start() // a second server on the same data dir, as after a restart
	if second := scan(); first[strings.Index(first, "ssh-ed25519"):] != second[strings.Index(second, "ssh-ed25519"):] {
		t.Errorf("host key changed across restart:\n%s\n%s", first, second)
	}
	if h.srv.HostKeyFingerprint() != fp {
		t.Error("fingerprint changed")
	}

	// A key others can read is refused, as sshd does.
	os.Chmod(filepath.Join(h.cfg.DataDir, hostKeyFile), 0o644)
	if _, err := New(h.cfg); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("New with a 0644 host key: %v", err)
	}
}

func TestPushSizeLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxPushBytes = 64 << 10 })
	ada := h.user("ada", false)
	h.app("shop", "ada")
	big := make([]byte, 512<<10)
	rand.Read(big) // incompressible
	work := h.workRepo(map[string]string{"blob.bin": string(big)})
	out, err := h.git(work, ada, "push", h.remote("shop"), "main")
	t.Logf("git push over the size limit:\n%s", out)
	if err == nil || !strings.Contains(out, "pier: push refused: it is larger than the limit of 64 KiB") {
		t.Fatalf("%v\n%s", err, out)
	}
	repo := filepath.Join(h.cfg.DataDir, "repos", "shop.git")
	if refs := h.mustGit("", "", "--git-dir="+repo, "for-each-ref"); refs != "" {
		t.Errorf("refs stored from a refused push: %s", refs)
	}
	if left, _ := filepath.Glob(filepath.Join(repo, "objects", "incoming-*")); len(left) > 0 {
		t.Errorf("quarantine left behind: %v", left)
	}
	if n := len(h.deployer.Calls()); n != 0 {
		t.Errorf("%d deploys, want 0", n)
	}
	// The repository is still good for a push within the limit.
	small := h.workRepo(map[string]string{"a": "small"})
	h.mustGit(small, ada, "push", h.remote("shop"), "main")
	if n := len(h.deployer.Calls()); n != 1 {
		t.Errorf("%d deploys after a small push, want 1", n)
	}
}
