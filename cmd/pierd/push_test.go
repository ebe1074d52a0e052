package main_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
)

// TestGitPush: the embedded default end to end, with the real git and
// OpenSSH client: push a Go app, see it served through the router, change
// its config, push new code, roll back.
func TestGitPush(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("builds an app with the CNB lifecycle")
	}
	data := filepath.Join(t.TempDir(), "data")
	d := startPierd(t, []string{"PIER_DATA_DIR=" + data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0", "PIER_SSH_ADDR=127.0.0.1:0"}, "all")
	m := sshListening.FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("no builder address:\n%s", d.out)
	}
	sshAddr := m[1]
	c := newCLI(t)
	c.must("push test password\n", "register", d.url, "--username", "dev", "--bootstrap-token-file", filepath.Join(data, "bootstrap-token"), "--password-stdin")

	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	c.must("", "keys:add", key+".pub")
	src := t.TempDir()
	copySample(t, "testdata/hello", src)
	port := sshAddr[strings.LastIndex(sshAddr, ":")+1:]
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(),
			"GIT_SSH_COMMAND=ssh -i "+key+" -p "+port+" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR",
			"GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev", "GIT_COMMITTER_EMAIL=dev@example.com",
			"HOME="+c.config)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s\npierd:\n%s", strings.Join(args, " "), err, out, d.out)
		}
		return string(out)
	}
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	// apps:create inside the repo adds the 'pier' remote, as heroku create does.
	create := exec.Command(filepath.Join(binDir, "pier"), "apps:create", "hello")
	create.Dir = src
	create.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.config, "HOME="+c.config)
	if out, err := create.CombinedOutput(); err != nil || !strings.Contains(string(out), "Git remote pier added") {
		t.Fatalf("apps:create in the repo: %v\n%s", err, out)
	}
	if remote := git("remote", "get-url", "pier"); strings.TrimSpace(remote) != "ssh://git@localhost:"+port+"/hello.git" {
		t.Fatalf("pier remote is %q", remote)
	}
	out := git("push", "pier", "main")
	if !strings.Contains(out, "Go app detected") || !strings.Contains(out, "Released v2") {
		t.Fatalf("push output:\n%s", out)
	}
	get := func() string {
		t.Helper()
		req, _ := http.NewRequest("GET", d.url+"/", nil)
		req.Host = "hello.pier.localhost" + d.url[strings.LastIndex(d.url, ":"):]
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET hello: %d %s", res.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	if got := get(); got != "hello  from one" {
		t.Fatalf("first deploy serves %q", got)
	}

	// config:set redeploys with the new value.
	c.must("", "config:set", "GREETING=world", "-a", "hello")
	if got := get(); got != "hello world from one" {
		t.Fatalf("after config:set: %q", got)
	}

	// A one-line change, pushed: the new code serves.
	b, _ := os.ReadFile(filepath.Join(src, "main.go"))
	os.WriteFile(filepath.Join(src, "main.go"), []byte(strings.Replace(string(b), `"one"`, `"two"`, 1)), 0o644)
	git("commit", "-q", "-am", "second")
	start := time.Now()
	out = git("push", "pier", "main")
	t.Logf("warm push to serving: %s", time.Since(start))
	if !strings.Contains(out, "Released v4") {
		t.Fatalf("second push output:\n%s", out)
	}
	if got := get(); got != "hello world from two" {
		t.Fatalf("after the second push: %q", got)
	}

	// A build that fails, and code that crashes on boot: each push exits
	// non-zero with the reason, and v4 keeps serving.
	gitFails := func(want string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(),
			"GIT_SSH_COMMAND=ssh -i "+key+" -p "+port+" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR",
			"HOME="+c.config)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("git %s: %v, want a failure saying %q:\n%s", strings.Join(args, " "), err, want, out)
		}
	}
	good, _ := os.ReadFile(filepath.Join(src, "main.go"))
	os.WriteFile(filepath.Join(src, "main.go"), append(good, []byte("\nfunc broken() { undefined() }\n")...), 0o644)
	git("commit", "-q", "-am", "does not compile")
	gitFails("undefined", "push", "pier", "main")
	if got := get(); got != "hello world from two" {
		t.Fatalf("after a failed build: %q", got)
	}
	os.WriteFile(filepath.Join(src, "main.go"), []byte(strings.Replace(string(good), `func main() {`, `func main() {
	if len(os.Args) > 0 {
		fmt.Fprintln(os.Stderr, "boom: refusing to start")
		os.Exit(3)
	}`, 1)), 0o644)
	git("commit", "-q", "-am", "crashes on boot")
	gitFails("boom: refusing to start", "push", "pier", "main")
	if got := get(); got != "hello world from two" {
		t.Fatalf("after a crash on boot: %q", got)
	}
	var rels []pier.Release
	jsonOut(t, c.must("", "releases", "-a", "hello", "--json"), &rels)
	if rels[0].Version != 4 {
		t.Fatalf("failed pushes made releases: %+v", rels[0])
	}

	// Rollback to v3: the old code serves again.
	c.must("", "releases:rollback", "v3", "-a", "hello")
	if got := get(); got != "hello world from one" {
		t.Fatalf("after rollback: %q", got)
	}
	d.stop(t)
}

func copySample(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
