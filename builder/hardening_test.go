package builder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// rawConn dials the server and reads its SSH version line, which it sends
// only to a connection it accepted.
func (h *harness) rawConn(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+h.port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SSH-2.0-Pier") {
		t.Fatalf("server said %q: %v", line, err)
	}
	return c
}

// closedWithin waits for the server to close c and says how long it took.
func closedWithin(t *testing.T, c net.Conn, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(max))
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s", max)
	}
	if n > 0 {
		t.Logf("read %d bytes before the close", n)
	}
	return time.Since(start)
}

// sshClient authenticates with key over a real SSH client.
func (h *harness) sshClient(t *testing.T, key string) *gossh.Client {
	t.Helper()
	b, err := os.ReadFile(key)
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
	t.Cleanup(func() { c.Close() })
	return c
}

// usable says whether an authenticated client still gets answers: a
// refused command comes back with exit status 1.
func usable(c *gossh.Client) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	err = sess.Run("id")
	var exit *gossh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 1 || !strings.HasPrefix(stderr.String(), "pier: ") {
		return errors.New("unexpected answer: " + stderr.String())
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoginGraceTime(t *testing.T) {
	t.Parallel()
	const grace = 500 * time.Millisecond
	h := newHarness(t, func(c *Config) { c.LoginGraceTime = grace })
	ada := h.user("ada", false)

	// A client that connects and never speaks SSH.
	silent := h.rawConn(t)
	// One that trickles its version line, a byte at a time.
	trickle := h.rawConn(t)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range []byte("SSH-2.0-slowloris-forever-and-ever-and-ever") {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := trickle.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	// And one that authenticates, then stays quiet past the grace time.
	client := h.sshClient(t, ada)

	for name, c := range map[string]net.Conn{"silent": silent, "trickling": trickle} {
		if took := closedWithin(t, c, 10*time.Second); took > 5*time.Second {
			t.Errorf("%s connection closed after %s; grace is %s", name, took, grace)
		}
	}
	time.Sleep(grace)
	if err := usable(client); err != nil {
		t.Errorf("an authenticated connection was closed at the grace time: %v", err)
	}
	waitFor(t, "no connection counts as unauthenticated", func() bool { return h.srv.preauth.unauthenticated() == 0 })
	if n := strings.Count(h.logs.String(), "did not authenticate in time"); n != 2 {
		t.Errorf("%d log lines about the grace time, want 2:\n%s", n, h.logs.String())
	}
}

func TestMaxUnauthenticated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxUnauthenticated = 3 })
	ada := h.user("ada", false)

	first := h.rawConn(t)
	h.rawConn(t)
	// An authenticated connection stops counting once authenticated.
	client := h.sshClient(t, ada)
	waitFor(t, "the authenticated client stops counting", func() bool { return h.srv.preauth.unauthenticated() == 2 })
	h.rawConn(t) // the third unauthenticated one

	extra, err := net.Dial("tcp", "127.0.0.1:"+h.port)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	b, err := io.ReadAll(extra)
	if err != nil || len(b) != 0 {
		t.Fatalf("the connection over the limit read %q, %v; want it closed at once", b, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the connection over the limit was closed after %s", took)
	}
	if !strings.Contains(h.logs.String(), "too many unauthenticated ssh connections") {
		t.Errorf("no log line about the refusal:\n%s", h.logs.String())
	}
	if err := usable(client); err != nil {
		t.Errorf("the authenticated client: %v", err)
	}

	// Once one closes, there is room again.
	first.Close()
	waitFor(t, "the closed connection stops counting", func() bool { return h.srv.preauth.unauthenticated() == 2 })
	h.rawConn(t)
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	h := newHarness(t, func(c *Config) { c.IdleTimeout = idle })
	// The deploy prints one line, then nothing for well past the idle
	// timeout, as a long compile does.
	h.deployer.delay = 3 * idle
	ada := h.user("ada", false)
	h.app("shop", "ada")

	// An authenticated client that does nothing is closed.
	client := h.sshClient(t, ada)
	start := time.Now()
	waited := make(chan error, 1)
	go func() { waited <- client.Wait() }()
	select {
	case <-waited:
		if took := time.Since(start); took < idle/2 {
			t.Errorf("closed after %s, before the idle timeout of %s", took, idle)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an idle authenticated connection is still open after 10s")
	}

	// A push whose build is quiet for longer than that still succeeds.
	work := h.workRepo(map[string]string{"a": "b"})
	out, err := h.git(work, ada, "push", h.remote("shop"), "main")
	if err != nil {
		t.Fatalf("a push with a quiet build: %v\n%s", err, out)
	}
	if n := len(h.deployer.Calls()); n != 1 {
		t.Fatalf("%d deploys, want 1", n)
	}
}

func TestRemoveRepo(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	h.app("shop", "ada")
	repos := filepath.Join(h.cfg.DataDir, "repos")
	repo, lock := filepath.Join(repos, "shop.git"), filepath.Join(repos, "shop.lock")
	ctx := context.Background()

	// No repository: nothing to do, nothing written.
	before := h.snapshot()
	if err := h.srv.RemoveRepo(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if after := h.snapshot(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("RemoveRepo of an app with no repository wrote:\nbefore %v\nafter  %v", before, after)
	}

	// Names that are not app names never reach the file system.
	outside := filepath.Join(h.cfg.DataDir, "x.git")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../x", "..", "", "shop/../../x", "/etc", "shop.git", ".init-shop-1"} {
		if err := h.srv.RemoveRepo(ctx, name); pier.ErrorCode(err) != pier.EINVALID {
			t.Errorf("RemoveRepo(%q): %v, want EINVALID", name, err)
		}
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("a directory outside the repos dir: %v", err)
	}

	// A push in progress holds it off until the push is done.
	h.deployer.started = make(chan struct{}, 1)
	h.deployer.release = make(chan struct{})
	work := h.workRepo(map[string]string{"a": "b"})
	pushed := make(chan error, 1)
	go func() {
		out, err := h.git(work, ada, "push", h.remote("shop"), "main")
		if err != nil {
			err = errors.New(err.Error() + "\n" + out)
		}
		pushed <- err
	}()
	select {
	case <-h.deployer.started:
	case err := <-pushed:
		t.Fatalf("the push ended before its deploy: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := h.srv.RemoveRepo(short, "shop"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RemoveRepo during a push, bounded by a context: %v", err)
	}
	removed := make(chan error, 1)
	go func() { removed <- h.srv.RemoveRepo(ctx, "shop") }()
	select {
	case err := <-removed:
		t.Fatalf("RemoveRepo returned (%v) while a push was in progress", err)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := os.Stat(repo); err != nil {
		t.Fatalf("the repository went during the push: %v", err)
	}
	close(h.deployer.release)
	if err := <-pushed; err != nil {
		t.Fatalf("the push: %v", err)
	}
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{repo, lock} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after RemoveRepo: %v", p, err)
		}
	}
	if err := h.srv.RemoveRepo(ctx, "shop"); err != nil {
		t.Errorf("RemoveRepo again: %v", err)
	}

	// The app still exists in the store here: a new push makes a new repo.
	h.deployer.started, h.deployer.release = nil, nil
	h.mustGit(work, ada, "push", h.remote("shop"), "main")
	if _, err := os.Stat(repo); err != nil {
		t.Fatalf("a push after RemoveRepo: %v", err)
	}
}

// A push that waited for the lock while the app was destroyed creates no
// repository for it, whichever of the push and RemoveRepo goes first.
func TestPushWaitingWhileAppIsDestroyed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	h.app("shop", "ada")
	repos := filepath.Join(h.cfg.DataDir, "repos")
	// A push in progress (another process holds the app's lock).
	held, err := acquirePushLock(h.ctx, filepath.Join(repos, "shop.lock"), "shop", time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The push, as git starts it, over a session whose stderr we watch.
	sess, err := h.sshClient(t, ada).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var stderr testenv.Buffer
	sess.Stderr = &stderr
	pushed := make(chan error, 1)
	go func() { pushed <- sess.Run("git-receive-pack '/shop.git'") }()
	waitFor(t, "the push waits for the lock", func() bool { return strings.Contains(stderr.String(), "waiting for another push to shop") })
	if err := h.store.DestroyApp(h.ctx, "shop", "ada"); err != nil {
		t.Fatal(err)
	}
	removed := make(chan error, 1)
	go func() { removed <- h.srv.RemoveRepo(context.Background(), "shop") }()
	time.Sleep(200 * time.Millisecond)
	held.Unlock()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	err = <-pushed
	var exit *gossh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 1 || !strings.Contains(stderr.String(), `pier: app "shop" not found`) {
		t.Errorf("the waiting push: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(repos, "shop.git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a repository for a destroyed app: %v", err)
	}
	if n := len(h.deployer.Calls()); n != 0 {
		t.Errorf("%d deploys, want 0", n)
	}
}

// TestRepoOfARecreatedApp: a builder that never heard of a destroy (one
// running apart from the controller) does not hand the old app's
// repository to a new app of the same name: the first push to the new app
// finds an empty repository, not the old history.
func TestRepoOfARecreatedApp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	bob := h.user("bob", false)
	h.app("shop", "ada")
	old := h.workRepo(map[string]string{"secret.txt": "ada's"})
	oldHead := strings.TrimSpace(h.mustGit(old, "", "rev-parse", "HEAD"))
	h.mustGit(old, ada, "push", h.remote("shop"), "main")
	repo := filepath.Join(h.cfg.DataDir, "repos", "shop.git")
	if out, err := exec.Command("git", "--git-dir="+repo, "cat-file", "-e", oldHead).CombinedOutput(); err != nil {
		t.Fatalf("the first push is not in the repository: %v %s", err, out)
	}

	if err := h.store.DestroyApp(h.ctx, "shop", "ada"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a creation time of its own
	h.app("shop", "bob")
	work := h.workRepo(map[string]string{"hello.txt": "bob's"})
	out, err := h.git(work, bob, "push", h.remote("shop"), "main")
	if err != nil {
		t.Fatalf("bob's first push: %v\n%s", err, out)
	}
	if out, err := exec.Command("git", "--git-dir="+repo, "cat-file", "-e", oldHead).CombinedOutput(); err == nil {
		t.Fatalf("the new app's repository still holds the destroyed app's commit %s %s", oldHead, out)
	}
	// And the same app's next push keeps its repository.
	next := h.commit(work, "second", map[string]string{"hello.txt": "bob's, again"})
	h.mustGit(work, bob, "push", h.remote("shop"), "main")
	if out, err := exec.Command("git", "--git-dir="+repo, "cat-file", "-e", next).CombinedOutput(); err != nil {
		t.Fatalf("the second push: %v %s", err, out)
	}
	first := strings.TrimSpace(h.mustGit(work, "", "rev-parse", "HEAD~1"))
	if out, err := exec.Command("git", "--git-dir="+repo, "cat-file", "-e", first).CombinedOutput(); err != nil {
		t.Fatalf("the app's own first push is gone after its second: %v %s", err, out)
	}
}
