package controller_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
)

// procScheduler is a scheduler whose processes, log and one-off runs the
// test sets up, and which records what it was asked.
type procScheduler struct {
	recordingScheduler

	pmu      sync.Mutex
	procs    []pier.Process
	restarts []string
	lines    []pier.LogLine
	logOpts  []pier.LogOptions
	follow   chan pier.LogLine // lines after the backlog, when following
	logsDone chan error        // what each Logs returned
	runs     []pier.Deployment
	run      func(ctx context.Context, opts pier.RunOptions) (int, error)
}

func newProcScheduler() *procScheduler {
	return &procScheduler{follow: make(chan pier.LogLine), logsDone: make(chan error, 10)}
}

func (s *procScheduler) Processes(_ context.Context, app string) ([]pier.Process, error) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return append([]pier.Process(nil), s.procs...), nil
}

func (s *procScheduler) Restart(_ context.Context, app, processType string) error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	s.restarts = append(s.restarts, processType)
	return nil
}

func (s *procScheduler) Logs(ctx context.Context, app string, opts pier.LogOptions, fn func(pier.LogLine) error) (err error) {
	defer func() { s.logsDone <- err }()
	s.pmu.Lock()
	s.logOpts = append(s.logOpts, opts)
	var backlog []pier.LogLine
	for _, l := range s.lines {
		if opts.Type == "" || strings.HasPrefix(l.Process, opts.Type+".") {
			backlog = append(backlog, l)
		}
	}
	s.pmu.Unlock()
	if len(backlog) > opts.Lines {
		backlog = backlog[len(backlog)-opts.Lines:]
	}
	for _, l := range backlog {
		if err := fn(l); err != nil {
			return err
		}
	}
	for opts.Follow {
		select {
		case <-ctx.Done():
			return nil
		case l := <-s.follow:
			if err := fn(l); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *procScheduler) Run(ctx context.Context, d pier.Deployment, opts pier.RunOptions) (int, error) {
	s.pmu.Lock()
	s.runs = append(s.runs, d)
	run := s.run
	s.pmu.Unlock()
	return run(ctx, opts)
}

func (s *procScheduler) lastRun(t *testing.T) pier.Deployment {
	t.Helper()
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if len(s.runs) == 0 {
		t.Fatal("nothing was run")
	}
	return s.runs[len(s.runs)-1]
}

// webWorker is a build with two process types.
var webWorker = &pier.BuildResult{Image: "/builds/x/2", ProcessTypes: map[string]string{"web": "./server", "worker": "./worker"}}

// deployed is an env with a scheduler and alice's app myapp deployed.
func deployed(t *testing.T) (*env, *procScheduler) {
	sched := newProcScheduler()
	e := newEnvWith(t, sched)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	req := controller.DeployRequest{App: "myapp", User: "alice", Commit: "c0ffee1234", Log: io.Discard}
	if _, err := e.rec.Deploy(context.Background(), fakeStrategy{res: webWorker}, req); err != nil {
		t.Fatal(err)
	}
	return e, sched
}

// stream sends a request and returns the answer with its body unread.
func (e *env) stream(ctx context.Context, method, path, token string, body any) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	return res
}

// frames reads an ndjson answer to its end.
func frames[T any](t *testing.T, res *http.Response) []T {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != 200 || ct != "application/x-ndjson" {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("status %d, content type %q: %s", res.StatusCode, ct, b)
	}
	var out []T
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestProcessesAndRestart(t *testing.T) {
	sched := newProcScheduler()
	e := newEnvWith(t, sched)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)

	// Before the first build: nothing runs, and nothing can be restarted
	// or run.
	var l pier.List[pier.Process]
	e.must("GET", "/v1/apps/myapp/ps", e.alice, nil, 200, &l)
	if l.Items == nil || len(l.Items) != 0 {
		t.Fatalf("processes before a build: %+v", l)
	}
	e.apiError("POST", "/v1/apps/myapp/ps/restart", e.alice, nil, 400, pier.EINVALID, `app "myapp" has no build yet: git push first`)
	e.apiError("POST", "/v1/apps/myapp/run", e.alice, map[string]any{"command": []string{"ls"}}, 400, pier.EINVALID, `app "myapp" has no build yet: git push first`)

	if _, err := e.rec.Deploy(context.Background(), fakeStrategy{res: webWorker}, controller.DeployRequest{App: "myapp", User: "alice", Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	sched.pmu.Lock()
	sched.procs = []pier.Process{
		{App: "myapp", Type: "web", Index: 1, Release: 2, State: pier.ProcessUp, StartedAt: started, Addr: "127.0.0.1:5000"},
		{App: "myapp", Type: "worker", Index: 1, Release: 2, State: pier.ProcessCrashed, StartedAt: started, Restarts: 3},
	}
	sched.pmu.Unlock()
	_, body := e.do("GET", "/v1/apps/myapp/ps", e.alice, nil)
	var raw struct{ Items []map[string]any }
	if err := json.Unmarshal(body, &raw); err != nil || len(raw.Items) != 2 {
		t.Fatalf("ps: %s", body)
	}
	w := raw.Items[1]
	if w["type"] != "worker" || w["index"] != 1.0 || w["state"] != "crashed" || w["restarts"] != 3.0 || w["release"] != 2.0 || w["started_at"] != "2026-11-23T10:00:00Z" {
		t.Fatalf("ps item %v", w)
	}
	if strings.Contains(string(body), "5000") {
		t.Fatalf("ps shows a process's address: %s", body)
	}

	// Restart one type, or all (with {} or no body at all).
	e.must("POST", "/v1/apps/myapp/ps/restart", e.alice, map[string]string{"type": "worker"}, 204, nil)
	e.must("POST", "/v1/apps/myapp/ps/restart", e.alice, map[string]string{}, 204, nil)
	e.must("POST", "/v1/apps/myapp/ps/restart", e.alice, nil, 204, nil)
	e.apiError("POST", "/v1/apps/myapp/ps/restart", e.alice, map[string]string{"type": "clock"}, 400, pier.EINVALID, `unknown process type "clock": app "myapp" defines web, worker`)
	e.apiError("POST", "/v1/apps/myapp/ps/restart", e.alice, map[string]string{"type": "Web!"}, 400, pier.EINVALID, "process type")
	e.apiError("POST", "/v1/apps/myapp/ps/restart", e.alice, map[string]string{"typ": "web"}, 400, pier.EINVALID, "typ")
	sched.pmu.Lock()
	got := fmt.Sprintf("%q", sched.restarts)
	sched.pmu.Unlock()
	if got != `["worker" "" ""]` {
		t.Fatalf("restarts %s", got)
	}
	var events pier.List[pier.Event]
	e.must("GET", "/v1/apps/myapp/events", e.alice, nil, 200, &events)
	if events.Items[0].Action != "ps.restart" || events.Items[0].Detail != "all" || events.Items[2].Detail != "worker" || events.Items[0].Actor != "alice" {
		t.Fatalf("events %+v", events.Items[:3])
	}
}

// TestProcessEndpointsAccess: only the app's members reach its processes.
func TestProcessEndpointsAccess(t *testing.T) {
	e, _ := deployed(t)
	e.must("POST", "/v1/apps", e.admin, map[string]string{"name": "rootapp"}, 201, nil)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/apps/rootapp/ps", nil},
		{"POST", "/v1/apps/rootapp/ps/restart", map[string]string{}},
		{"GET", "/v1/apps/rootapp/logs", nil},
		{"GET", "/v1/apps/rootapp/logs?follow=true", nil},
		{"POST", "/v1/apps/rootapp/run", map[string]any{"command": []string{"id"}}},
		{"GET", "/v1/apps/rootapp/builds", nil},
		{"GET", "/v1/apps/rootapp/builds/latest", nil},
	} {
		e.apiError(c.method, c.path, e.alice, c.body, 403, pier.EFORBIDDEN, "rootapp")
		e.apiError(c.method, strings.Replace(c.path, "rootapp", "myapp", 1), "", c.body, 401, pier.EUNAUTHORIZED, "login")
	}
	e.apiError("GET", "/v1/apps/nosuchapp/ps", e.alice, nil, 404, pier.ENOTFOUND, "nosuchapp")
	// The admin may.
	e.must("GET", "/v1/apps/myapp/ps", e.admin, nil, 200, nil)
}

// TestNoScheduler: a controller alone says what to run instead.
func TestNoScheduler(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/apps/myapp/ps", nil},
		{"POST", "/v1/apps/myapp/ps/restart", nil},
		{"GET", "/v1/apps/myapp/logs?follow=1", nil},
		{"POST", "/v1/apps/myapp/run", map[string]any{"command": []string{"id"}}},
	} {
		e.apiError(c.method, c.path, e.alice, c.body, 503, pier.EUNAVAILABLE, "runs no scheduler")
		e.apiError(c.method, c.path, e.alice, c.body, 503, pier.EUNAVAILABLE, "`pierd all`")
	}
	// Builds are desired state: listed without a scheduler.
	var l pier.List[pier.Build]
	e.must("GET", "/v1/apps/myapp/builds", e.alice, nil, 200, &l)
	if l.Items == nil || len(l.Items) != 0 {
		t.Fatalf("builds %+v", l)
	}
}

func logLine(proc, text string, sec int) pier.LogLine {
	return pier.LogLine{Time: time.Date(2026, 11, 23, 10, 0, sec, 123456000, time.UTC), App: "myapp", Process: proc, Text: text}
}

func TestLogs(t *testing.T) {
	e, sched := deployed(t)
	sched.pmu.Lock()
	sched.lines = []pier.LogLine{
		logLine("web.1", "listening on 5000", 1), logLine("worker.1", "working", 2),
		logLine("pier", "Restarting web.1", 3), logLine("web.1", `GET / "200"`, 4), logLine("web.2", "bye", 5),
	}
	sched.pmu.Unlock()
	ctx := context.Background()

	got := frames[pier.LogLine](t, e.stream(ctx, "GET", "/v1/apps/myapp/logs?lines=2", e.alice, nil))
	if len(got) != 2 || got[0] != sched.lines[3] || got[1] != sched.lines[4] {
		t.Fatalf("lines=2: %+v", got)
	}
	got = frames[pier.LogLine](t, e.stream(ctx, "GET", "/v1/apps/myapp/logs?type=web", e.alice, nil))
	if len(got) != 3 || got[0].Text != "listening on 5000" || got[2].Process != "web.2" {
		t.Fatalf("type=web: %+v", got)
	}
	sched.pmu.Lock()
	opts := sched.logOpts
	sched.pmu.Unlock()
	if opts[1] != (pier.LogOptions{Lines: pier.LogLinesDefault, Type: "web"}) {
		t.Fatalf("default options %+v", opts[1])
	}

	for q, want := range map[string]string{
		"lines=0":      "ask for 1 to 10000",
		"lines=10001":  "ask for 1 to 10000",
		"lines=-5":     "ask for 1 to 10000",
		"lines=ten":    "lines=\"ten\" is not a whole number",
		"type=Web!":    "process type",
		"follow=maybe": "not true or false",
	} {
		e.apiError("GET", "/v1/apps/myapp/logs?"+q, e.alice, nil, 400, pier.EINVALID, want)
	}
	// A scheduler's error before any line is an ordinary error answer.
	e.apiError("GET", "/v1/apps/nosuchapp/logs", e.admin, nil, 404, pier.ENOTFOUND, "nosuchapp")
}

// TestLogsFollow: lines stream as they come, each flushed, past the
// server's read and write timeouts, until the client goes away.
func TestLogsFollow(t *testing.T) {
	e, sched := deployed(t)
	sched.pmu.Lock()
	sched.lines = []pier.LogLine{logLine("web.1", "old line", 1)}
	sched.pmu.Unlock()
	// The same API behind a server with short timeouts, as pierd's
	// http.Server has (2 minutes there).
	short := httptest.NewUnstartedServer(e.api)
	short.Config.ReadTimeout = 300 * time.Millisecond
	short.Config.WriteTimeout = 300 * time.Millisecond
	short.Start()
	t.Cleanup(short.Close)
	e2 := *e
	e2.srv = short

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := e2.stream(ctx, "GET", "/v1/apps/myapp/logs?follow=true&lines=10", e.alice, nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(res.Body)
	next := func() pier.LogLine {
		t.Helper()
		line, err := rd.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		var l pier.LogLine
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		return l
	}
	if l := next(); l.Text != "old line" {
		t.Fatalf("first line %+v", l)
	}
	for i := range 3 {
		time.Sleep(400 * time.Millisecond) // past both of the server's timeouts
		want := logLine("worker.1", fmt.Sprintf("new line %d", i), 10+i)
		select {
		case sched.follow <- want:
		case err := <-sched.logsDone:
			t.Fatalf("the stream ended at %d: %v", i, err)
		case <-time.After(5 * time.Second):
			t.Fatal("nobody follows the log")
		}
		if l := next(); l != want {
			t.Fatalf("followed %+v, want %+v", l, want)
		}
	}
	// The client goes away: the scheduler's Logs is told to stop.
	cancel()
	select {
	case err := <-sched.logsDone:
		if err != nil {
			t.Fatalf("Logs returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Logs still runs after the client left")
	}
}

type runFrame = pier.RunFrame

func TestRun(t *testing.T) {
	e, sched := deployed(t)
	e.must("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"worker": 2}, 200, nil)
	sched.pmu.Lock()
	var gotCmd []string
	sched.run = func(_ context.Context, o pier.RunOptions) (int, error) {
		sched.pmu.Lock()
		gotCmd = o.Command
		sched.pmu.Unlock()
		if o.Stdin != nil {
			return -1, errors.New("stdin given")
		}
		io.WriteString(o.Stdout, "hi\n")
		io.WriteString(o.Stderr, "oops")
		o.Stdout.Write([]byte("caf\xc3")) // a character split between two writes
		o.Stdout.Write([]byte("\xa9 ok\n"))
		return 3, nil
	}
	sched.pmu.Unlock()

	cmd := []string{"sh", "-c", "echo hi; echo $HOME >&2; exit 3"}
	got := frames[runFrame](t, e.stream(context.Background(), "POST", "/v1/apps/myapp/run", e.alice, map[string]any{"command": cmd}))
	sched.pmu.Lock()
	ran := fmt.Sprintf("%q", gotCmd)
	sched.pmu.Unlock()
	if ran != fmt.Sprintf("%q", cmd) {
		t.Fatalf("the scheduler ran %s, want the argv %q as given", ran, cmd)
	}
	var stdout, stderr strings.Builder
	for _, f := range got[:len(got)-1] {
		if f.Exit != nil || f.Error != nil {
			t.Fatalf("frame %+v before the last", f)
		}
		switch f.Stream {
		case "stdout":
			stdout.WriteString(f.Data)
		case "stderr":
			stderr.WriteString(f.Data)
		default:
			t.Fatalf("frame %+v", f)
		}
	}
	if last := got[len(got)-1]; last.Exit == nil || *last.Exit != 3 || last.Stream != "" {
		t.Fatalf("last frame %+v", last)
	}
	if stdout.String() != "hi\ncafé ok\n" || stderr.String() != "oops" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	d := sched.lastRun(t)
	if d.App != "myapp" || d.Release.Version != 2 || d.Release.Build == nil || d.Release.Build.Image != webWorker.Image || d.Formation["worker"] != 2 || d.Formation["web"] != 1 {
		t.Fatalf("ran with %+v", d)
	}
	var events pier.List[pier.Event]
	e.must("GET", "/v1/apps/myapp/events", e.alice, nil, 200, &events)
	if ev := events.Items[0]; ev.Action != "ps.run" || !strings.Contains(ev.Detail, "status 3") || strings.Contains(ev.Detail, "echo") {
		t.Fatalf("event %+v", ev)
	}

	// Exit status 0 is sent too.
	sched.pmu.Lock()
	sched.run = func(context.Context, pier.RunOptions) (int, error) { return 0, nil }
	sched.pmu.Unlock()
	got = frames[runFrame](t, e.stream(context.Background(), "POST", "/v1/apps/myapp/run", e.alice, map[string]any{"command": []string{"true"}}))
	if len(got) != 1 || got[0].Exit == nil || *got[0].Exit != 0 {
		t.Fatalf("frames %+v", got)
	}

	// Bad commands are refused before anything runs.
	runs := func() int {
		sched.pmu.Lock()
		defer sched.pmu.Unlock()
		return len(sched.runs)
	}
	n := runs()
	for _, c := range []struct {
		body        any
		status      int
		code, words string
	}{
		{map[string]any{"command": []string{}}, 400, pier.EINVALID, "no command given"},
		{map[string]any{"command": []string{""}}, 400, pier.EINVALID, "no command given"},
		{map[string]any{}, 400, pier.EINVALID, "no command given"},
		{map[string]any{"command": "echo hi"}, 400, pier.EINVALID, "command"},
		{map[string]any{"command": []string{"echo", "a\x00b"}}, 400, pier.EINVALID, "NUL"},
		{map[string]any{"command": strings.Split(strings.Repeat("x ", pier.CommandArgsMax+1), " ")}, 413, pier.ETOOLARGE, "arguments"},
		{map[string]any{"command": []string{"echo", strings.Repeat("x", pier.CommandBytesMax)}}, 413, pier.ETOOLARGE, "bytes"},
		{map[string]any{"command": []string{"cat"}, "stdin": "data"}, 400, pier.EINVALID, "stdin"},
	} {
		e.apiError("POST", "/v1/apps/myapp/run", e.alice, c.body, c.status, c.code, c.words)
	}
	if runs() != n {
		t.Fatal("a bad command reached the scheduler")
	}

	// A scheduler error before any output is an ordinary error answer...
	sched.pmu.Lock()
	sched.run = func(context.Context, pier.RunOptions) (int, error) {
		return -1, pier.Errorf(pier.EINVALID, "cannot run nosuch: executable file not found")
	}
	sched.pmu.Unlock()
	e.apiError("POST", "/v1/apps/myapp/run", e.alice, map[string]any{"command": []string{"nosuch"}}, 400, pier.EINVALID, "cannot run nosuch")

	// ...and one after the stream began is its last frame, with no detail
	// of an internal error.
	sched.pmu.Lock()
	sched.run = func(_ context.Context, o pier.RunOptions) (int, error) {
		io.WriteString(o.Stdout, "partial")
		return -1, errors.New("wait: /secret/path exploded")
	}
	sched.pmu.Unlock()
	got = frames[runFrame](t, e.stream(context.Background(), "POST", "/v1/apps/myapp/run", e.alice, map[string]any{"command": []string{"x"}}))
	if len(got) != 2 || got[0].Data != "partial" || got[1].Error == nil || got[1].Error.Code != pier.EINTERNAL || got[1].Exit != nil || strings.Contains(got[1].Error.Message, "secret") {
		t.Fatalf("frames %+v", got)
	}
}

// TestRunSilentStarts: a command that prints nothing still gets its
// answer started within a second or so (so clients and proxies do not
// give up), and the client leaving ends it.
func TestRunSilentStarts(t *testing.T) {
	e, sched := deployed(t)
	ended := make(chan error, 1)
	sched.pmu.Lock()
	sched.run = func(ctx context.Context, _ pier.RunOptions) (int, error) {
		<-ctx.Done()
		ended <- ctx.Err()
		return 137, nil
	}
	sched.pmu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	res := e.stream(ctx, "POST", "/v1/apps/myapp/run", e.alice, map[string]any{"command": []string{"sleep", "600"}})
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" || time.Since(start) > 10*time.Second {
		t.Fatalf("status %d after %s", res.StatusCode, time.Since(start))
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the process runs on after the client left")
	}
}

func TestOpenAPIStreams(t *testing.T) {
	e := newEnv(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string }
			Responses  map[string]struct {
				Content map[string]struct {
					Schema map[string]any
				}
			}
			RequestBody *struct{ Content map[string]any } `json:"requestBody"`
		}
	}
	e.must("GET", "/v1/openapi.json", "", nil, 200, &doc)
	logs := doc.Paths["/v1/apps/{app}/logs"]["get"]
	var params []string
	for _, p := range logs.Parameters {
		params = append(params, p.In+":"+p.Name)
	}
	if strings.Join(params, " ") != "path:app query:lines query:type query:follow" || logs.RequestBody != nil {
		t.Fatalf("logs parameters %v, body %v", params, logs.RequestBody)
	}
	if s := logs.Responses["200"].Content["application/x-ndjson"].Schema; s["$ref"] != "#/components/schemas/LogLine" {
		t.Fatalf("logs answer %+v", logs.Responses)
	}
	run := doc.Paths["/v1/apps/{app}/run"]["post"]
	if s := run.Responses["200"].Content["application/x-ndjson"].Schema; s["$ref"] != "#/components/schemas/RunFrame" || run.RequestBody == nil {
		t.Fatalf("run %+v", run)
	}
	for _, p := range []string{"/v1/apps/{app}/builds", "/v1/apps/{app}/builds/{id}", "/v1/apps/{app}/ps", "/v1/apps/{app}/ps/restart"} {
		if len(doc.Paths[p]) == 0 {
			t.Errorf("%s is not documented", p)
		}
	}
}
