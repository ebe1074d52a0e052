package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier/postgres/embedded"
)

// TestPostmasterKilled is issue 15's first acceptance point: the embedded
// Postgres's postmaster killed with SIGKILL (as the OOM killer would)
// under request loops. pierd starts it again; meanwhile the API answers
// only 200 or 503 (never 500), and is back to 200 within the bound; the
// app, served by the router from its own table, answers 200 throughout,
// and so does /healthz. Ctrl-C then stops pierd and its Postgres, which
// is not started again.
func TestPostmasterKilled(t *testing.T) {
	skipShort(t)
	s := startStack(t)
	r := s.newRepo("testdata/hello", "steady")
	r.mustPush()
	token := readToken(t, s.c)
	cluster := embedded.New(s.data)
	pid := postmasterPID(t, cluster)

	// A one-off command adopts the running cluster and leaves it running.
	migrate := exec.Command(filepath.Join(binDir, "pierd"), "migrate")
	migrate.Env = append(os.Environ(), s.env...)
	if out, err := migrate.CombinedOutput(); err != nil || !strings.Contains(string(out), "Migrations applied") {
		t.Fatalf("pierd migrate beside pierd all: %v\n%s", err, out)
	}
	if now := postmasterPID(t, cluster); now != pid || syscall.Kill(pid, 0) != nil {
		t.Fatalf("pierd migrate stopped or replaced the running postmaster %d (now %d)", pid, now)
	}

	loops := newLoops()
	api := func(path string) func(*http.Client) (int, error) {
		return func(c *http.Client) (int, error) {
			req, err := http.NewRequest("GET", s.d.url+path, nil)
			if err != nil {
				return 0, err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			return status(c.Do(req))
		}
	}
	loops.run("api app", api("/v1/apps/steady"))
	loops.run("api releases", api("/v1/apps/steady/releases"))
	loops.run("app", func(c *http.Client) (int, error) {
		code, body, err := s.get(c, "steady", "/")
		if err == nil && code == 200 && body != "hello  from one" {
			return 0, fmt.Errorf("body %q", body)
		}
		return code, err
	})
	loops.run("healthz", func(c *http.Client) (int, error) {
		return status(c.Get(s.d.url + "/healthz"))
	})
	time.Sleep(2 * time.Second) // some answers before the kill

	killed := time.Now()
	loops.mark(killed)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Postgres is back once a new postmaster says it is ready.
	var pgBack time.Duration
	eventually(t, 60*time.Second, "a new postmaster is ready", func() (bool, string) {
		lines := pidLines(cluster)
		if len(lines) >= 8 && strings.TrimSpace(lines[0]) != strconv.Itoa(pid) && strings.TrimSpace(lines[7]) == "ready" {
			pgBack = time.Since(killed)
			return true, ""
		}
		return false, strings.Join(lines, "|")
	})
	// The bound is generous: it is no timing assertion, only the end of
	// waiting.
	eventually(t, 60*time.Second, "the API answers 200 again", func() (bool, string) {
		return loops.backAfter("api app") && loops.backAfter("api releases"), loops.String()
	})
	time.Sleep(2 * time.Second) // and keeps answering
	loops.stop()

	for _, name := range []string{"api app", "api releases"} {
		l := loops.get(name)
		for code, n := range l.codes {
			if code != 200 && code != 503 {
				t.Errorf("%s: %d answers of %d (only 200 and 503 are allowed): %v", name, n, code, l.errs)
			}
		}
		t.Logf("%s: %v; last non-200 %s after the kill, back to 200 %s after the kill",
			name, l.codes, l.lastBad.Sub(killed).Round(time.Millisecond), l.firstGood.Sub(killed).Round(time.Millisecond))
	}
	for _, name := range []string{"app", "healthz"} {
		l := loops.get(name)
		if len(l.codes) != 1 || l.codes[200] == 0 {
			t.Errorf("%s: answers %v, want only 200s (errors: %v)", name, l.codes, l.errs)
		}
		t.Logf("%s: %v", name, l.codes)
	}
	t.Logf("Postgres was ready again %s after the kill", pgBack.Round(time.Millisecond))
	for _, line := range []string{"embedded postgres: started again", "the database answers again; converging every app"} {
		if !strings.Contains(s.d.out.String(), line) {
			t.Errorf("pierd did not log %q:\n%s", line, s.d.out)
		}
	}

	// After the outage the platform works as before: a change converges.
	s.c.must("", "config:set", "GREETING=again", "-a", "steady")
	if b := s.body("steady", "/"); b != "hello again from one" {
		t.Fatalf("after config:set: %q", b)
	}

	// Ctrl-C: the supervisor stops first, then Postgres, for good.
	s.d.stop(t)
	time.Sleep(3 * time.Second)
	if lines := pidLines(cluster); len(lines) > 0 {
		if p, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && syscall.Kill(p, 0) == nil {
			t.Fatalf("a postmaster (pid %d) runs after pierd stopped:\n%s", p, s.d.out)
		}
	}
}

// TestExternalPostgresRestart: pierd on a Postgres of its own (--database-url,
// as compose and the chart run it) that stops: the API and /readyz answer
// 503, /healthz 200; once the server is back, pierd answers 200 again
// without a restart.
func TestExternalPostgresRestart(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	base := t.TempDir()
	pg := embedded.New(base)
	pg.Fast = true
	t.Cleanup(func() { embedded.New(base).Destroy(context.Background()) })
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "pier"); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, "DATABASE_URL="+pg.DSN("pier"))
	s.c.must("", "apps:create", "outlasts")
	token := readToken(t, s.c)
	get := func(path string, auth bool) (int, string) {
		req, _ := http.NewRequest("GET", s.d.url+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		var b strings.Builder
		fmt.Fprint(&b, res.Header.Get("Retry-After"), " ")
		buf := make([]byte, 4096)
		n, _ := res.Body.Read(buf)
		b.Write(buf[:n])
		return res.StatusCode, b.String()
	}
	eventually(t, 60*time.Second, "pierd is ready", func() (bool, string) {
		code, b := get("/readyz", false)
		return code == 200, b
	})

	stopped := time.Now()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	code, b := get("/v1/apps/outlasts", true)
	if code != 503 || !strings.HasPrefix(b, "2 ") || !strings.Contains(b, "database is not answering") {
		t.Errorf("the API with its database stopped: %d %s", code, b)
	}
	eventually(t, 30*time.Second, "/readyz names the database", func() (bool, string) {
		code, b := get("/readyz", false)
		return code == 503 && strings.Contains(b, `"database":"not answering"`), b
	})
	if code, b := get("/healthz", false); code != 200 {
		t.Errorf("/healthz within the grace period: %d %s", code, b)
	}
	if out, err := s.c.run("", "status", "--url", s.d.url); err == nil || !strings.Contains(out, "database: not answering") {
		t.Errorf("pier status with the database stopped: %v\n%s", err, out)
	}

	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the API answers again", func() (bool, string) {
		code, b := get("/v1/apps/outlasts", true)
		return code == 200, b
	})
	t.Logf("the API answered 200 again %s after the database was stopped (down for the test's checks, then started)", time.Since(stopped).Round(time.Millisecond))
	if code, b := get("/readyz", false); code != 200 {
		t.Errorf("/readyz after the restart: %d %s", code, b)
	}
	if out := s.c.must("", "status", "--url", s.d.url); !strings.Contains(out, "up and ready") {
		t.Errorf("pier status after the restart: %s", out)
	}
	s.c.must("", "config:set", "AFTER=restart", "-a", "outlasts")
	if s.d.cmd.ProcessState != nil {
		t.Fatal("pierd exited")
	}
	s.d.stop(t)
}

// postmasterPID is the pid in the cluster's postmaster.pid.
func postmasterPID(t *testing.T, c *embedded.Cluster) int {
	t.Helper()
	lines := pidLines(c)
	if len(lines) == 0 {
		t.Fatalf("no postmaster.pid in %s", c.Dir)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func pidLines(c *embedded.Cluster) []string {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	return strings.Split(string(b), "\n")
}

func status(res *http.Response, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// loops are request loops running side by side, each counting the
// statuses it got (0: no answer).
type loops struct {
	wg   sync.WaitGroup
	done chan struct{}
	mu   sync.Mutex
	all  map[string]*loop
	from time.Time // answers from then on are timed (mark)
}

type loop struct {
	codes     map[int]int
	errs      []string  // the first few failures
	lastBad   time.Time // the last non-200 after mark
	firstGood time.Time // the first 200 after lastBad
}

func newLoops() *loops { return &loops{done: make(chan struct{}), all: map[string]*loop{}} }

func (ls *loops) run(name string, req func(*http.Client) (int, error)) {
	l := &loop{codes: map[int]int{}}
	ls.mu.Lock()
	ls.all[name] = l
	ls.mu.Unlock()
	client := &http.Client{Timeout: 10 * time.Second}
	ls.wg.Add(1)
	go func() {
		defer ls.wg.Done()
		for {
			select {
			case <-ls.done:
				return
			default:
			}
			code, err := req(client)
			now := time.Now()
			ls.mu.Lock()
			l.codes[code]++
			if err != nil && len(l.errs) < 5 {
				l.errs = append(l.errs, err.Error())
			}
			if !ls.from.IsZero() {
				if code != 200 {
					l.lastBad, l.firstGood = now, time.Time{}
				} else if l.firstGood.IsZero() {
					l.firstGood = now
				}
			}
			ls.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

func (ls *loops) mark(t time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.from = t
	for _, l := range ls.all {
		l.lastBad, l.firstGood = t, time.Time{}
	}
}

// backAfter: the loop has answered only 200 for a while since its last
// failure after the mark.
func (ls *loops) backAfter(name string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.all[name]
	return !l.firstGood.IsZero() && time.Since(l.firstGood) > 200*time.Millisecond
}

func (ls *loops) get(name string) *loop {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.all[name]
}

func (ls *loops) stop() {
	close(ls.done)
	ls.wg.Wait()
}

func (ls *loops) String() string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var b strings.Builder
	for name, l := range ls.all {
		fmt.Fprintf(&b, "%s: %v; ", name, l.codes)
	}
	return b.String()
}
