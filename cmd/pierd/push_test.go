package main_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierpaas/pier"
)

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("builds apps with the CNB lifecycle")
	}
}

// TestGitPush: the embedded default end to end, with the real git and
// OpenSSH client: push a Go app, see it served through the router, change
// its config and push new code under load without a failed request, scale
// it, roll back, and survive failed builds, crashes on boot and two
// pushes at once.
func TestGitPush(t *testing.T) {
	skipShort(t)
	s := startStack(t)
	r := s.newRepo("testdata/hello", "hello")
	if remote := r.git("remote", "get-url", "pier"); strings.TrimSpace(remote) != "ssh://git@localhost:"+s.sshPort+"/hello.git" {
		t.Fatalf("pier remote is %q", remote)
	}
	out := r.mustPush()
	if !strings.Contains(out, "-----> Go app detected") || !strings.Contains(out, "Released v2") || !strings.Contains(out, "http://hello.pier.localhost:"+s.httpPort()) {
		t.Fatalf("push output:\n%s", out)
	}
	if got := s.body("hello", "/"); got != "hello  from one" {
		t.Fatalf("first deploy serves %q", got)
	}

	// config:set redeploys with the new value, and no request fails
	// while it does.
	var load loadResult
	load.during(t, s, "hello", func() { s.c.must("", "config:set", "GREETING=world", "-a", "hello") })
	load.check(t, "config:set", "hello  from one", "hello world from one")
	if got := s.body("hello", "/"); got != "hello world from one" {
		t.Fatalf("after config:set: %q", got)
	}

	// A one-line change, pushed under load: the new code serves, and not
	// one request fails during the switch (acceptance point 3).
	r.edit("main.go", `"one"`, `"two"`, "second")
	load = loadResult{}
	load.during(t, s, "hello", func() {
		start := time.Now()
		out = r.mustPush()
		t.Logf("warm push to serving: %s", time.Since(start))
	})
	if !strings.Contains(out, "Released v4") {
		t.Fatalf("second push output:\n%s", out)
	}
	load.check(t, "git push", "hello world from one", "hello world from two")

	// Scale out: three processes, and requests reach each of them.
	s.c.must("", "scale", "web=3", "-a", "hello")
	pids := map[string]int{}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 60; i++ {
		code, pid, err := s.get(client, "hello", "/pid")
		if err != nil || code != 200 {
			t.Fatalf("GET /pid: %d %v", code, err)
		}
		pids[pid]++
	}
	if len(pids) != 3 {
		t.Fatalf("60 requests to web=3 reached %d processes: %v", len(pids), pids)
	}
	// ps shows them (once the replaced web.1 of v3 has drained: it stays
	// "stopping" for the scheduler's drain delay after leaving the routes);
	// logs has what they printed; run runs a command with the release's
	// environment and exits with its status.
	eventually(t, 10*time.Second, "ps shows web.1-3 of v4 up, and nothing else", func() (bool, string) {
		out := s.c.must("", "ps", "-a", "hello")
		return strings.Contains(out, "=== web (3)") && strings.Contains(out, "web.1: up") && strings.Contains(out, "web.3: up") &&
			strings.Contains(out, "v4") && !strings.Contains(out, "stopping"), out
	})
	var procs []pier.Process
	jsonOut(t, s.c.must("", "ps", "-a", "hello", "--json"), &procs)
	if len(procs) != 3 {
		t.Fatalf("ps --json: %+v", procs)
	}
	eventually(t, 10*time.Second, "logs show web.3 starting", func() (bool, string) {
		out := s.c.must("", "logs", "-a", "hello", "-n", "200")
		return strings.Contains(out, "app[web.3]: version two listening"), out
	})
	out, err := s.c.run("", "run", "-a", "hello", "--", "sh", "-c", "echo greeting=$GREETING; echo oops >&2; exit 7")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || !strings.Contains(out, "greeting=world") || !strings.Contains(out, "oops") {
		t.Fatalf("pier run: %v\n%s", err, out)
	}
	if out := s.c.must("", "builds:info", "-a", "hello"); !strings.Contains(out, "Go app detected") || !strings.Contains(out, "succeeded") {
		t.Fatalf("builds:info:\n%s", out)
	}
	// ps:restart replaces every process, without a failed request.
	load = loadResult{}
	load.during(t, s, "hello", func() { s.c.must("", "ps:restart", "-a", "hello") })
	load.check(t, "ps:restart", "hello world from two", "hello world from two")
	for i := 0; i < 30; i++ {
		if _, pid, _ := s.get(client, "hello", "/pid"); pids[pid] > 0 {
			t.Fatalf("process %s still serves after ps:restart", pid)
		}
	}
	s.c.must("", "scale", "web=1", "-a", "hello")

	// A custom domain reaches the app through the router.
	s.c.must("", "domains:add", "www.hello.test", "-a", "hello")
	eventually(t, 10*time.Second, "www.hello.test serves the app", func() (bool, string) {
		req, _ := http.NewRequest("GET", s.d.url+"/", nil)
		req.Host = "www.hello.test"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode == 200 && strings.TrimSpace(string(b)) == "hello world from two", fmt.Sprintf("%d %s", res.StatusCode, b)
	})

	// A build that fails, and code that crashes on boot: each push exits
	// non-zero with the reason, and v4 keeps serving.
	good, _ := os.ReadFile(r.dir + "/main.go")
	r.edit("main.go", "func main() {", "func broken() { undefined() }\n\nfunc main() {", "does not compile")
	if out, err := r.push(); err == nil || !strings.Contains(out, "undefined") {
		t.Fatalf("push of code that does not compile: %v\n%s", err, out)
	}
	if got := s.body("hello", "/"); got != "hello world from two" {
		t.Fatalf("after a failed build: %q", got)
	}
	if out := s.c.must("", "builds:info", "-a", "hello"); !strings.Contains(out, "failed") || !strings.Contains(out, "undefined: undefined") {
		t.Fatalf("builds:info of the failed build:\n%s", out)
	}
	os.WriteFile(r.dir+"/main.go", []byte(strings.Replace(string(good), `func main() {`, `func main() {
	if len(os.Args) > 0 {
		fmt.Fprintln(os.Stderr, "boom: refusing to start")
		os.Exit(3)
	}`, 1)), 0o644)
	r.git("commit", "-q", "-am", "crashes on boot")
	if out, err := r.push(); err == nil || !strings.Contains(out, "boom: refusing to start") {
		t.Fatalf("push of code that crashes on boot: %v\n%s", err, out)
	}
	if got := s.body("hello", "/"); got != "hello world from two" {
		t.Fatalf("after a crash on boot: %q", got)
	}
	var rels []pier.Release
	jsonOut(t, s.c.must("", "releases", "-a", "hello", "--json"), &rels)
	// The build that failed made no release; the code that crashed is on
	// record as v5, failed, and v4 stays current.
	if rels[0].Version != 5 || rels[0].Status != pier.ReleaseFailed || !strings.Contains(rels[0].Failure, "boom: refusing to start") || rels[1].Version != 4 || rels[1].Status != pier.ReleaseSucceeded {
		t.Fatalf("after the failed pushes, releases %+v", rels[:2])
	}
	if out := s.c.must("", "apps:info", "-a", "hello"); !strings.Contains(out, "v4") {
		t.Fatalf("apps:info after a crash on boot:\n%s", out)
	}

	// Rollback to v3: the old code serves again.
	s.c.must("", "releases:rollback", "v3", "-a", "hello")
	if got := s.body("hello", "/"); got != "hello world from one" {
		t.Fatalf("after rollback: %q", got)
	}

	// Two teammates push at once (acceptance point 6): the pushes are
	// serialized, both deploy, with consecutive releases, and the one
	// that went second serves.
	os.WriteFile(r.dir+"/main.go", good, 0o644)
	r.git("commit", "-q", "-am", "fixed")
	a, b := r, r.clone()
	a.edit("main.go", `"two"`, `"A"`, "A's change")
	b.edit("main.go", `"two"`, `"B"`, "B's change")
	outs := make([]string, 2)
	var wg sync.WaitGroup
	for i, w := range []*repo{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := w.push("--force")
			if err != nil {
				out += fmt.Sprintf("\n(exit: %v)", err)
			}
			outs[i] = out
		}()
	}
	wg.Wait()
	released := regexp.MustCompile(`Released v(\d+)`)
	var versions []string
	for _, out := range outs {
		m := released.FindStringSubmatch(out)
		if m == nil || strings.Contains(out, "(exit:") {
			t.Fatalf("concurrent pushes:\n--- A:\n%s\n--- B:\n%s", outs[0], outs[1])
		}
		versions = append(versions, m[1])
	}
	sort.Strings(versions)
	if versions[0] != "7" || versions[1] != "8" {
		t.Fatalf("concurrent pushes released %v, want v7 and v8:\n--- A:\n%s\n--- B:\n%s", versions, outs[0], outs[1])
	}
	if !strings.Contains(outs[0]+outs[1], "waiting for another push to hello") {
		t.Errorf("neither push waited for the other:\n--- A:\n%s\n--- B:\n%s", outs[0], outs[1])
	}
	last := "A"
	if strings.Contains(outs[1], "Released v8") {
		last = "B"
	}
	if got := s.body("hello", "/"); got != "hello world from "+last {
		t.Fatalf("after concurrent pushes (v8 from %s) serves %q", last, got)
	}
	s.d.stop(t)
}

// loadResult counts what a load loop saw.
type loadResult struct {
	mu       sync.Mutex
	requests int
	bodies   map[string]int
	failures []string
}

// during runs fn while a load loop requests the app through the router,
// then a little longer, so that the loop spans the whole switch. The loop
// is bounded: about a thousand requests a second at most.
func (l *loadResult) during(t *testing.T, s *stack, app string, fn func()) {
	t.Helper()
	l.bodies = map[string]int{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 10 * time.Second}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			code, body, err := s.get(client, app, "/")
			l.mu.Lock()
			l.requests++
			if err != nil || code != 200 {
				if len(l.failures) < 10 {
					l.failures = append(l.failures, fmt.Sprintf("%d %v %.100s", code, err, body))
				} else {
					l.failures = append(l.failures, "")
				}
			} else {
				l.bodies[body]++
			}
			l.mu.Unlock()
		}
	}()
	fn()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
}

// check fails the test if any request failed, if the loop did not see
// both the old and the new answer (it would not have spanned the switch),
// or if it saw any other.
func (l *loadResult) check(t *testing.T, what, old, new string) {
	t.Helper()
	t.Logf("%s under load: %d requests, %d failed, answers %v", what, l.requests, len(l.failures), l.bodies)
	if len(l.failures) > 0 {
		t.Errorf("%s: %d of %d requests failed, first: %q", what, len(l.failures), l.requests, l.failures)
	}
	if l.bodies[old] == 0 || l.bodies[new] == 0 || len(l.bodies) != map[bool]int{true: 1, false: 2}[old == new] {
		t.Errorf("%s: the load loop did not span the switch from %q to %q: %v", what, old, new, l.bodies)
	}
}
