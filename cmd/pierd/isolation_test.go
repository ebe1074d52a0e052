package main_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier/postgres/embedded"
)

// TestTenantIsolation is issue 14's acceptance on the embedded default, as
// root: two apps of two users, pushed for real, and each one's `pier run`
// tries what an attacker's code would. Neither can list or read the other's
// source, build output, environment, logs or port, nor pierd's data dir;
// and blog-75204 and payments, whose names collided under the old hashed
// uids, run as distinct uids.
func TestTenantIsolation(t *testing.T) {
	skipShort(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs the tests as root: per-app uids need it")
		}
		t.Skip("per-app uids need root")
	}
	s := startStack(t)
	// Only the data dir's own mode may keep apps out: open up the test's
	// temporary parents, which are 0700.
	for d := filepath.Dir(s.data); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// dev (the admin) owns payments; eve, a second user, owns blog-75204
	// and pushes it with her own key.
	s.c.must("eve's password\n", "register", s.d.url, "--username", "eve", "--password-stdin")
	eve := newCLI(t)
	eve.must("eve's password\n", "login", s.d.url, "--username", "eve", "--password-stdin")
	eveStack := *s
	eveStack.c = eve
	eveStack.key = filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", eveStack.key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	eve.must("", "keys:add", eveStack.key+".pub")
	eve.must("", "apps:create", "blog-75204")
	blog := &repo{s: &eveStack, dir: t.TempDir(), app: "blog-75204"}
	copyTree(t, "testdata/hello", blog.dir)
	blog.git("init", "-q", "-b", "main")
	blog.git("add", ".")
	blog.git("commit", "-q", "-m", "first")
	blog.git("remote", "add", "pier", "ssh://git@localhost:"+s.sshPort+"/blog-75204.git")
	blog.mustPush()

	pay := s.newRepo("testdata/hello", "payments")
	pay.mustPush()

	// A secret in each app's config: its processes have it in their
	// environment, and it finds them.
	secret := map[string]string{}
	for app, c := range map[string]*cli{"payments": s.c, "blog-75204": eve} {
		secret[app] = fmt.Sprintf("canary-%s-%d", app, time.Now().UnixNano())
		c.must("", "config:set", "SECRET="+secret[app], "-a", app)
	}
	run := func(c *cli, app string, args ...string) (string, error) {
		return c.run("", append([]string{"run", "-a", app, "--"}, args...)...)
	}
	uid := map[string]int{}
	for app, c := range map[string]*cli{"payments": s.c, "blog-75204": eve} {
		out, err := run(c, app, "id", "-u")
		if err != nil {
			t.Fatalf("pier run -a %s -- id -u: %v\n%s", app, err, out)
		}
		lines := strings.Fields(out)
		if len(lines) == 0 {
			t.Fatalf("pier run -a %s -- id -u printed nothing", app)
		}
		n, err := strconv.Atoi(lines[len(lines)-1])
		if err != nil || n == 0 || n == 65534 {
			t.Fatalf("%s runs as uid %q", app, out)
		}
		uid[app] = n
	}
	if uid["payments"] == uid["blog-75204"] {
		t.Fatalf("payments and blog-75204 share uid %d", uid["payments"])
	}
	t.Logf("uids: %v", uid)

	rt := embedded.RelocatedDir("rt", s.data)
	for _, pair := range [][2]string{{"blog-75204", "payments"}, {"payments", "blog-75204"}} {
		attacker, victim := pair[0], pair[1]
		c := s.c
		if attacker == "blog-75204" {
			c = eve
		}
		// What the victim has, found as root: each path exists, so a
		// refusal below is the wall, not a wrong path.
		builds := filepath.Join(rt, "builds", victim)
		ents, err := os.ReadDir(builds)
		if err != nil {
			t.Fatal(err)
		}
		var buildDir string
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				buildDir = filepath.Join(builds, e.Name())
			}
		}
		if buildDir == "" {
			t.Fatalf("no build of %s under %s", victim, builds)
		}
		pids := markedProcesses(t, "SECRET", secret[victim])
		if len(pids) == 0 {
			t.Fatalf("no process of %s found", victim)
		}
		port := listeningPort(t, uid[victim])
		logFile := filepath.Join(rt, "scheduler", "logs", victim+".log")
		paths := []string{
			builds, // list its builds
			filepath.Join(buildDir, "app", "main.go"), // its source, as built
			filepath.Join(buildDir, "layers"),         // its build output
			filepath.Join(builds, ".cache"),           // its build cache
			fmt.Sprintf("/proc/%d/environ", pids[0]),  // its environment
			logFile,                                   // its logs
			s.data,                                    // pierd's data dir
		}
		dataFiles, err := os.ReadDir(s.data)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range dataFiles {
			if e.Type().IsRegular() {
				paths = append(paths, filepath.Join(s.data, e.Name()))
			}
		}
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("%s: %v (the test's path is wrong)", p, err)
			}
			var out string
			if fi, _ := os.Stat(p); fi.IsDir() {
				out, err = run(c, attacker, "ls", "-a", p)
			} else {
				out, err = run(c, attacker, "cat", p)
			}
			if err == nil || strings.Contains(out, secret[victim]) {
				t.Errorf("%s's process read %s: %v\n%s", attacker, p, err, out)
			}
		}
		// Its port: the victim serves on loopback, and the router (root)
		// reaches it, but not the attacker's code.
		probe := fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3", port)
		if out, err := run(c, attacker, "bash", "-c", probe); err == nil || strings.Contains(out, "hello") {
			t.Errorf("%s's process reached %s's port %d: %v\n%s", attacker, victim, port, err, out)
		}
		if got := s.body(victim, "/"); !strings.HasPrefix(got, "hello") {
			t.Errorf("%s through the router: %q", victim, got)
		}
	}
	// The control: an app reads its own environment.
	if out, err := run(s.c, "payments", "sh", "-c", "echo $SECRET"); err != nil || !strings.Contains(out, secret["payments"]) {
		t.Fatalf("payments cannot read its own config: %v\n%s", err, out)
	}
}

// listeningPort finds the TCP port a process of uid listens on, from
// /proc/net/tcp (the kernel records each socket's owner).
func listeningPort(t *testing.T, uid int) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[3] != "0A" || fs[7] != strconv.Itoa(uid) {
			continue
		}
		_, hexPort, _ := strings.Cut(fs[1], ":")
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err == nil {
			return int(port)
		}
	}
	t.Fatalf("no TCP listener of uid %d", uid)
	return 0
}
