package local_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/router"
	"github.com/pierpaas/pier/scheduler/local"
)

func web(n int) pier.Formation { return pier.Formation{"web": n} }

func processes(t *testing.T, s *local.Scheduler, app string) []pier.Process {
	t.Helper()
	ps, err := s.Processes(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestWebServesWithConfigInEnv(t *testing.T) {
	s, dir := newScheduler(t)
	ctx := context.Background()
	const canary = "canary-7f3a9c-secret"
	if err := s.Apply(ctx, deployment("myapp", 1, web(1), pier.Config{"GREETING": "hi there", "SECRET": canary})); err != nil {
		t.Fatal(err)
	}
	ps := processes(t, s, "myapp")
	if len(ps) != 1 || ps[0].State != pier.ProcessUp || ps[0].Addr == "" || ps[0].Release != 1 || ps[0].Type != "web" || ps[0].Index != 1 {
		t.Fatalf("processes: %+v", ps)
	}
	resp, err := http.Get("http://" + ps[0].Addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "web.1 v1" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	id := getIdentity(ps[0].Addr)
	if id.Env["GREETING"] != "hi there" || id.Env["SECRET"] != canary || id.Env["PORT"] != strings.Split(ps[0].Addr, ":")[1] || id.Env["DYNO"] != "web.1" {
		t.Fatalf("env: %v", id.Env)
	}
	if strings.Contains(strings.Join(id.Args, " "), canary) {
		t.Fatal("config on argv")
	}
	if !strings.HasPrefix(id.Dir, filepath.Join(dir, "run", "myapp")) {
		t.Fatalf("working dir %s", id.Dir)
	}
	if os.Geteuid() == 0 && id.UID != appUID("myapp") {
		t.Fatalf("running as uid %d, want %d", id.UID, appUID("myapp"))
	}
	if got := s.Backends("myapp"); len(got) != 1 || got[0] != ps[0].Addr {
		t.Fatalf("backends %v", got)
	}
	// Applying the same deployment again changes nothing.
	if err := s.Apply(ctx, deployment("myapp", 1, web(1), pier.Config{"GREETING": "hi there", "SECRET": canary})); err != nil {
		t.Fatal(err)
	}
	if again := processes(t, s, "myapp"); len(again) != 1 || again[0].Addr != ps[0].Addr || !again[0].StartedAt.Equal(ps[0].StartedAt) {
		t.Fatalf("a repeated Apply changed the processes: %+v", again)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "logs", "myapp.log"))
	if !bytes.Contains(logs, []byte("pier Starting web.1 for v1")) || !bytes.Contains(logs, []byte("web.1 listening on")) {
		t.Fatalf("log file:\n%s", logs)
	}
	if bytes.Contains(logs, []byte(canary)) {
		t.Fatal("a config value reached the log")
	}
}

func TestScaleUpAndDown(t *testing.T) {
	s, _ := newScheduler(t)
	ctx := context.Background()
	if err := s.Apply(ctx, deployment("scaly", 1, web(1), nil)); err != nil {
		t.Fatal(err)
	}
	first := s.Backends("scaly")
	if err := s.Apply(ctx, deployment("scaly", 1, pier.Formation{"web": 3, "worker": 1}, nil)); err != nil {
		t.Fatal(err)
	}
	bs := s.Backends("scaly")
	if len(bs) != 3 || bs[0] != first[0] {
		t.Fatalf("backends after scaling to 3: %v (web.1 was %v)", bs, first)
	}
	seen := map[string]bool{}
	for _, b := range bs {
		resp, err := http.Get("http://" + b + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(body)] = true
	}
	if !seen["web.1 v1"] || !seen["web.2 v1"] || !seen["web.3 v1"] {
		t.Fatalf("answers: %v", seen)
	}
	types := map[string]int{}
	for _, p := range processes(t, s, "scaly") {
		types[p.Type]++
	}
	if types["web"] != 3 || types["worker"] != 1 {
		t.Fatalf("processes: %v", types)
	}
	if err := s.Apply(ctx, deployment("scaly", 1, web(1), nil)); err != nil {
		t.Fatal(err)
	}
	if bs := s.Backends("scaly"); len(bs) != 1 || bs[0] != first[0] {
		t.Fatalf("backends after scaling to 1: %v", bs)
	}
	eventually(t, "the scaled-down processes are gone", func() bool {
		ps := processes(t, s, "scaly")
		return len(ps) == 1 && ps[0].Type == "web" && ps[0].Index == 1
	})
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	// A cap above the process's lifetime, so that the backoff keeps growing.
	s, _ := newScheduler(t, func(c *local.Config) { c.MaxRestartBackoff = 5 * time.Second })
	ctx := context.Background()
	// It crashes 300ms after it starts listening: it comes up, then keeps
	// crashing.
	if err := s.Apply(ctx, deployment("crashy", 1, web(1), pier.Config{"MODE": "crash-after"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "three restarts", func() bool {
		ps := processes(t, s, "crashy")
		return len(ps) == 1 && ps[0].Restarts >= 3
	})
	var text []string
	s.Logs(ctx, "crashy", pier.LogOptions{Lines: 1000}, func(l pier.LogLine) error {
		text = append(text, l.Process+" "+l.Text)
		return nil
	})
	all := strings.Join(text, "\n")
	for _, want := range []string{"pier web.1 crashed: exit status 3; restarting in 20ms", "restarting in 40ms", "restarting in 80ms", "web.1 crashing now"} {
		if !strings.Contains(all, want) {
			t.Fatalf("log lacks %q:\n%s", want, all)
		}
	}
}

func TestImagesAreRefused(t *testing.T) {
	s, _ := newScheduler(t)
	d := deployment("imaged", 1, web(1), nil)
	d.Release.Build = &pier.Build{ID: 1, Strategy: pier.StrategyImage, Image: "nginx:1.27", ProcessTypes: map[string]string{"web": ""}}
	err := s.Apply(context.Background(), d)
	if pier.ErrorCode(err) != pier.EUNAVAILABLE || !strings.Contains(err.Error(), "cannot run images: use git push") {
		t.Fatalf("applying an image: %v", err)
	}
	if err := s.CanRunImages(); pier.ErrorCode(err) != pier.EUNAVAILABLE {
		t.Fatalf("CanRunImages: %v", err)
	}
	if errors.Is(err, pier.ErrRolloutFailed) {
		t.Fatal("refusing an image is not a rollout failure")
	}
}

func TestFailedReleaseKeepsOldServing(t *testing.T) {
	// Long enough for v1 to boot on a loaded machine (a race-built helper),
	// short enough that waiting out v3, which never listens, is cheap.
	s, _ := newScheduler(t, func(c *local.Config) { c.StartTimeout = 3 * time.Second })
	ctx := context.Background()
	if err := s.Apply(ctx, deployment("steady", 1, web(2), nil)); err != nil {
		t.Fatal(err)
	}
	old := s.Backends("steady")
	err := s.Apply(ctx, deployment("steady", 2, web(2), pier.Config{"MODE": "crash"}))
	if err == nil {
		t.Fatal("a release that crashes on boot was applied")
	}
	if !errors.Is(err, pier.ErrRolloutFailed) || pier.ErrorCode(err) != pier.EROLLOUT {
		t.Fatalf("a release that did not come up is not a rollout failure: %v", err)
	}
	for _, want := range []string{"v2 did not come up", "crashed on boot", "exit status 1", "boom: cannot reach the database", "v1 keeps running"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error lacks %q: %v", want, err)
		}
	}
	err = s.Apply(ctx, deployment("steady", 3, web(2), pier.Config{"MODE": "noport"}))
	if err == nil || !strings.Contains(err.Error(), "did not accept connections on its port within 3s") {
		t.Fatalf("a release that never listens: %v", err)
	}
	if bs := s.Backends("steady"); len(bs) != 2 || bs[0] != old[0] || bs[1] != old[1] {
		t.Fatalf("backends changed: %v, were %v", bs, old)
	}
	for _, b := range old {
		resp, err := http.Get("http://" + b + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasSuffix(string(body), " v1") {
			t.Fatalf("old release answers %q", body)
		}
	}
	eventually(t, "the failed processes are gone", func() bool {
		ps := processes(t, s, "steady")
		for _, p := range ps {
			if p.Release != 1 {
				return false
			}
		}
		return len(ps) == 2
	})
}

func TestZeroDowntimeDeploy(t *testing.T) {
	s, _ := newScheduler(t)
	ctx := context.Background()
	rt := router.New(router.Config{Domain: "pier.localhost"})
	defer rt.Follow(s)()
	front := httptest.NewServer(rt)
	defer front.Close()
	if err := s.Apply(ctx, deployment("smooth", 1, web(2), nil)); err != nil {
		t.Fatal(err)
	}

	var failures, total atomic.Int64
	var lastBody atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := front.Client()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", front.URL+"/", nil)
				req.Host = "smooth.pier.localhost"
				resp, err := client.Do(req)
				total.Add(1)
				if err != nil {
					failures.Add(1)
					t.Log(err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					t.Logf("%d %s", resp.StatusCode, body)
					continue
				}
				lastBody.Store(string(body))
			}
		}()
	}
	for v := 2; v <= 4; v++ {
		if err := s.Apply(ctx, deployment("smooth", v, web(2), nil)); err != nil {
			t.Fatal(err)
		}
	}
	// The clients ran through all three deploys (a fixed number of
	// requests could end before the last one on a busy machine).
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests failed during deploys", failures.Load(), total.Load())
	}
	eventually(t, "v4 serves", func() bool {
		req, _ := http.NewRequest("GET", front.URL+"/", nil)
		req.Host = "smooth.pier.localhost"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lastBody.Store(string(body))
		return resp.StatusCode == 200 && strings.HasSuffix(string(body), " v4")
	})
	t.Logf("%d requests, no failure", total.Load())
}

func TestLogsFollow(t *testing.T) {
	s, _ := newScheduler(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines := make(chan pier.LogLine, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Logs(ctx, "loggy", pier.LogOptions{Follow: true, Type: "worker"}, func(l pier.LogLine) error {
			select {
			case lines <- l:
			default:
			}
			return nil
		})
	}()
	if err := s.Apply(context.Background(), deployment("loggy", 1, pier.Formation{"worker": 1}, nil)); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 3; {
		l := <-lines
		if l.Process != "worker.1" || !strings.HasPrefix(l.Text, "tick ") || l.App != "loggy" || l.Time.IsZero() {
			t.Fatalf("line %+v", l)
		}
		got++
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The last N, platform lines included.
	var tail []pier.LogLine
	s.Logs(context.Background(), "loggy", pier.LogOptions{Lines: 2}, func(l pier.LogLine) error { tail = append(tail, l); return nil })
	if len(tail) != 2 {
		t.Fatalf("tail %+v", tail)
	}
	var platform bool
	s.Logs(context.Background(), "loggy", pier.LogOptions{Lines: 1000}, func(l pier.LogLine) error {
		platform = platform || l.Process == "pier" && l.Text == "Starting worker.1 for v1"
		return nil
	})
	if !platform {
		t.Fatal("no platform line")
	}
}

func TestRunOneOff(t *testing.T) {
	s, dir := newScheduler(t, func(c *local.Config) {
		c.RunCommand = func(d pier.Deployment, command []string) (*exec.Cmd, error) {
			cmd := exec.Command(helperBin, command...)
			cmd.Env = []string{"PIER_TEST_HELPER=run"}
			return cmd, nil
		}
	})
	var stdout, stderr bytes.Buffer
	code, err := s.Run(context.Background(), deployment("runny", 1, nil, pier.Config{"GREETING": "hello"}), pier.RunOptions{
		Command: []string{"migrate", "7"}, Stdin: strings.NewReader("input"), Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil || code != 7 {
		t.Fatalf("exit %d, %v", code, err)
	}
	if stdout.String() != "args [migrate 7] greeting hello\n" || stderr.String() != "stdin \"input\"\n" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	code, err = s.Run(context.Background(), deployment("runny", 1, nil, nil), pier.RunOptions{Command: []string{"0"}})
	if err != nil || code != 0 {
		t.Fatalf("exit %d, %v", code, err)
	}
	if recs := groupRecords(t, dir); len(recs) != 0 {
		t.Fatalf("process group records after the runs: %v", recs)
	}

	// A run in progress has its process group recorded; Shutdown kills it
	// and returns once it is reaped, leaving no record.
	stdin, w := io.Pipe()
	defer w.Close()
	codes := make(chan int, 1)
	go func() {
		code, _ := s.Run(context.Background(), deployment("runny", 1, nil, nil), pier.RunOptions{Command: []string{"0"}, Stdin: stdin})
		codes <- code
	}()
	eventually(t, "the run's process group is recorded", func() bool { return len(groupRecords(t, dir)) == 1 })
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if recs := groupRecords(t, dir); len(recs) != 0 {
		t.Fatalf("process group records after Shutdown: %v", recs)
	}
	if code := <-codes; code != 128+9 {
		t.Fatalf("a run killed at shutdown exited %d", code)
	}
}

func TestRestartType(t *testing.T) {
	s, _ := newScheduler(t)
	ctx := context.Background()
	if err := s.Apply(ctx, deployment("again", 1, web(2), nil)); err != nil {
		t.Fatal(err)
	}
	before := processes(t, s, "again")
	if err := s.Restart(ctx, "again", "web"); err != nil {
		t.Fatal(err)
	}
	after := s.Backends("again")
	if len(after) != 2 || after[0] == before[0].Addr || after[1] == before[1].Addr {
		t.Fatalf("backends after restart %v, before %+v", after, before)
	}
	if err := s.Restart(ctx, "again", "worker"); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("restart of a type that does not run: %v", err)
	}
}

func TestDestroyAndShutdownLeaveNoProcess(t *testing.T) {
	s, dir := newScheduler(t)
	ctx := context.Background()
	var pids []int
	for _, app := range []string{"gone", "kept"} {
		if err := s.Apply(ctx, deployment(app, 1, web(2), pier.Config{"MODE": "child"})); err != nil {
			t.Fatal(err)
		}
	}
	pidsOf := func(app string) []int {
		var out []int
		for _, b := range s.Backends(app) {
			id := getIdentity(b)
			if id.PID == 0 || id.Child == 0 {
				t.Fatalf("identity %+v", id)
			}
			out = append(out, id.PID, id.Child)
		}
		return out
	}
	gone, kept := pidsOf("gone"), pidsOf("kept")
	if err := s.Destroy(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if ps := processes(t, s, "gone"); len(ps) != 0 || s.Backends("gone") != nil {
		t.Fatalf("after destroy: %+v", ps)
	}
	if _, err := os.Stat(filepath.Join(dir, "logs", "gone.log")); !os.IsNotExist(err) {
		t.Fatalf("log of a destroyed app: %v", err)
	}
	for _, pid := range gone {
		eventually(t, "pid "+strconv.Itoa(pid)+" dies with its app", func() bool { return !alive(pid) })
	}
	if recs := groupRecords(t, dir); len(recs) != 2 {
		t.Fatalf("process group records of the app left (kept, web 2): %v", recs)
	}
	pids = append(pids, kept...)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		eventually(t, "pid "+strconv.Itoa(pid)+" dies at shutdown", func() bool { return !alive(pid) })
	}
	if recs := groupRecords(t, dir); len(recs) != 0 {
		t.Fatalf("process group records after Shutdown: %v", recs)
	}
	if err := s.Apply(ctx, deployment("kept", 2, web(1), nil)); err == nil {
		t.Fatal("Apply after Shutdown")
	}
}

// A pierd killed with SIGKILL takes its app processes with it.
func TestKilledSupervisorLeavesNoOrphan(t *testing.T) {
	dir := dataDir(t)
	sup, pid, _ := startSupervisor(t, dir, "")
	sup.Process.Kill()
	sup.Wait()
	eventually(t, "the app process dies with its supervisor", func() bool { return !alive(pid) })
	sweepCgroups(t, dir) // limits_test.go
}

// What an app process forked outlives a pierd killed with SIGKILL (only
// the direct child gets the death signal); the next start of the scheduler
// on the same data dir kills it, from the record of its process group.
func TestNewReapsWhatAKilledSupervisorLeft(t *testing.T) {
	dir := dataDir(t)
	sup, pid, child := startSupervisor(t, dir, "child")
	if child == 0 || !alive(child) {
		t.Fatalf("the web process started no child (%d)", child)
	}
	if recs := groupRecords(t, dir); len(recs) != 1 {
		t.Fatalf("process group records while the app runs: %v", recs)
	}
	sup.Process.Kill()
	sup.Wait()
	eventually(t, "the web process dies with its supervisor", func() bool { return !alive(pid) })
	// The test is real: the grandchild is still there, unsupervised.
	time.Sleep(200 * time.Millisecond)
	if !alive(child) {
		t.Fatal("the web process's child died with the supervisor: nothing left to reap")
	}
	defer syscall.Kill(child, syscall.SIGKILL) // should the test fail

	var logs testenv.Buffer
	s, err := local.New(local.Config{
		DataDir: dir, Launch: launch,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d, left by the killed supervisor, still runs after New", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if recs := groupRecords(t, dir); len(recs) != 0 {
		t.Fatalf("process group records after New: %v", recs)
	}
	if !strings.Contains(logs.String(), "pid="+strconv.Itoa(child)) {
		t.Errorf("the log does not say what was killed:\n%s", logs.String())
	}
	// The scheduler works on that data dir as before.
	if err := s.Apply(context.Background(), deployment("orphan", 2, web(1), nil)); err != nil {
		t.Fatal(err)
	}
}

func dataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pier-local-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o711)
	return dir
}

// groupRecords lists the scheduler's records of live process groups.
func groupRecords(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "pgroups"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
