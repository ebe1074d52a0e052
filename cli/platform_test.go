package cli

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stubScheduler pretends to run what it is given: one process per unit of
// the formation, all up, a fixed log, and one-off commands that echo their
// argv and exit with their argument count.
type stubScheduler struct {
	mu        sync.Mutex
	current   pier.Deployment
	restarted []string
}

func (s *stubScheduler) Apply(_ context.Context, d pier.Deployment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = d
	return nil
}

func (s *stubScheduler) Processes(_ context.Context, app string) ([]pier.Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []pier.Process
	for _, t := range sortedKeys(s.current.Formation) {
		for i := 1; i <= s.current.Formation[t]; i++ {
			ps = append(ps, pier.Process{App: app, Type: t, Index: i, Release: s.current.Release.Version, State: pier.ProcessUp, StartedAt: time.Now().Add(-time.Minute)})
		}
	}
	return ps, nil
}

func (s *stubScheduler) Restart(_ context.Context, app, processType string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarted = append(s.restarted, processType)
	return nil
}

func (s *stubScheduler) Logs(_ context.Context, app string, opts pier.LogOptions, fn func(pier.LogLine) error) error {
	lines := []pier.LogLine{
		{Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), App: app, Process: "web.1", Text: "booting"},
		{Time: time.Date(2026, 11, 23, 10, 0, 1, 250000000, time.UTC), App: app, Process: "web.1", Text: "listening"},
	}
	for _, l := range lines[max(0, len(lines)-opts.Lines):] {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

func (s *stubScheduler) Run(_ context.Context, d pier.Deployment, opts pier.RunOptions) (int, error) {
	fmt.Fprintf(opts.Stdout, "ran %q on v%d\n", opts.Command, d.Release.Version)
	fmt.Fprintln(opts.Stderr, "on stderr")
	return len(opts.Command), nil
}

func (s *stubScheduler) Destroy(context.Context, string) error { return nil }

type stubStrategy struct{}

func (stubStrategy) Name() string { return "stub" }
func (stubStrategy) Build(_ context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	io.WriteString(req.Log, "-----> Stub app detected\n-----> Built\n")
	return &pier.BuildResult{Image: "/builds/stub", ProcessTypes: map[string]string{"web": "./web"}}, nil
}

// TestRunningAppCommandsAgainstAController runs the new commands through
// the real API and client, against a controller with a Reconciler, as
// `pierd all` runs it.
func TestRunningAppCommandsAgainstAController(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	sched := &stubScheduler{}
	rec := controller.NewReconciler(db, sched, nil)
	api, err := controller.New(ctx, controller.Config{Store: db, PublicURL: "http://pier.localhost:8080", Reconciler: rec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	boot, err := controller.EnsureBootstrapToken(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	anon := client.New(srv.URL, "")
	if _, err := anon.Register(ctx, client.RegisterRequest{Username: "alice", Password: "alice's password", BootstrapToken: boot}); err != nil {
		t.Fatal(err)
	}
	s, err := anon.Login(ctx, "alice", "alice's password")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.vars["PIER_URL"], e.vars["PIER_TOKEN"] = srv.URL, s.Token

	mustOK(t, e.run("", "apps:create", "myapp"))
	r := e.run("", "builds", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "myapp has no builds yet") {
		t.Fatalf("builds: %q", r.stdout)
	}
	mustFail(t, e.run("", "run", "-a", "myapp", "--", "true"), `app "myapp" has no build yet: git push first`)
	r = e.run("", "ps", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "No processes are running on myapp.") {
		t.Fatalf("ps: %q", r.stdout)
	}

	if _, err := rec.Deploy(ctx, stubStrategy{}, controller.DeployRequest{App: "myapp", User: "alice", Commit: "0123456789ab", Log: io.Discard}); err != nil {
		t.Fatal(err)
	}

	r = e.run("", "ps", "-a", "myapp")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "=== web (1)\nweb.1: up ") || !strings.HasSuffix(r.stdout, " (~ 1m ago) v2\n") {
		t.Fatalf("ps:\n%s", r.stdout)
	}

	r = e.run("", "ps:restart", "web", "-a", "myapp")
	mustOK(t, r)
	mustFail(t, e.run("", "restart", "clock", "-a", "myapp"), `unknown process type "clock": app "myapp" defines web`)
	sched.mu.Lock()
	restarted := fmt.Sprint(sched.restarted)
	sched.mu.Unlock()
	if restarted != "[web]" {
		t.Fatalf("restarted %s", restarted)
	}

	r = e.run("", "logs", "-n", "1", "-p", "web", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "2026-11-23T10:00:01.250000Z app[web.1]: listening\n" {
		t.Fatalf("logs: %q", r.stdout)
	}
	mustFail(t, e.run("", "logs", "-n", "20000", "-a", "myapp"), "use 1 to 10000")

	r = e.run("", "run", "-a", "myapp", "--", "sh", "-c", "echo $HOME")
	if r.code != 3 || r.stdout != `ran ["sh" "-c" "echo $HOME"] on v2`+"\n" || r.stderr != "on stderr\n" {
		t.Fatalf("run: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := e.run("", "run", "-a", "myapp", "true"); r.code != 1 {
		t.Fatalf("run true: exit %d", r.code) // one argument: the stub exits 1
	}

	r = e.run("", "builds", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "0123456  succeeded  stub      alice") {
		t.Fatalf("builds:\n%s", r.stdout)
	}
	r = e.run("", "builds:info", "-a", "myapp")
	mustOK(t, r)
	if !strings.HasSuffix(r.stdout, "=== Log\n-----> Stub app detected\n-----> Built\n") || !strings.Contains(r.stdout, "Commit:         0123456789ab") {
		t.Fatalf("builds:info:\n%s", r.stdout)
	}

	r = e.run("", "open", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "http://myapp.pier.localhost:8080\n" {
		t.Fatalf("open: %q", r.stdout)
	}

	// Another user may not see any of it.
	if _, err := client.New(srv.URL, s.Token).Register(ctx, client.RegisterRequest{Username: "bob", Password: "bob's password"}); err != nil {
		t.Fatal(err)
	}
	bs, err := anon.Login(ctx, "bob", "bob's password")
	if err != nil {
		t.Fatal(err)
	}
	e.vars["PIER_TOKEN"] = bs.Token
	for _, args := range [][]string{{"ps"}, {"logs"}, {"run", "--", "id"}, {"builds"}, {"builds:info"}, {"restart"}} {
		args = append([]string{args[0], "-a", "myapp"}, args[1:]...)
		mustFail(t, e.run("", args...), "you do not have access to app \"myapp\"")
	}
}
