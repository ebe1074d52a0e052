package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPsGroupsByType(t *testing.T) {
	api, e := loggedIn(t)
	now := time.Now()
	t1 := now.Add(-5*time.Minute - 10*time.Second).Truncate(time.Second)
	t2 := now.Add(-3 * time.Hour).Truncate(time.Second)
	at := func(tm time.Time) string { return tm.UTC().Format(time.RFC3339) }
	body := `{"items":[` +
		`{"app":"myapp","type":"worker","index":1,"release":4,"state":"crashed","started_at":"` + at(t2) + `","restarts":3,"reason":"OOM killed: memory limit 64Mi"},` +
		`{"app":"myapp","type":"web","index":2,"release":4,"state":"starting","started_at":"` + at(t1) + `","restarts":0},` +
		`{"app":"myapp","type":"web","index":1,"release":4,"state":"up","started_at":"` + at(t1) + `","restarts":1}]}`
	api.on("GET /v1/apps/myapp/ps", 200, body)

	r := e.run("", "ps", "-a", "myapp")
	mustOK(t, r)
	local := func(tm time.Time) string { return tm.Local().Format("2006/01/02 15:04:05 -0700") }
	want := "=== web (2)\n" +
		"web.1: up " + local(t1) + " (~ 5m ago) v4, 1 restart\n" +
		"web.2: starting " + local(t1) + " (~ 5m ago) v4\n" +
		"\n" +
		"=== worker (1)\n" +
		"worker.1: crashed " + local(t2) + " (~ 3h ago) v4, 3 restarts\n" +
		"  last exit: OOM killed: memory limit 64Mi\n"
	if r.stdout != want {
		t.Fatalf("ps:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = e.run("", "ps", "-a", "myapp", "--json")
	mustOK(t, r)
	var a, b any
	json.Unmarshal([]byte(body), &a)
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil {
		t.Fatal(err)
	}
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	if string(aj) != string(bj) {
		t.Fatalf("--json differs from the API's JSON:\n%s\n%s", aj, bj)
	}

	api.on("GET /v1/apps/idle/ps", 200, `{"items":[]}`)
	r = e.run("", "ps", "-a", "idle")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "No processes are running on idle.") || !strings.Contains(r.stdout, "git push pier main") || !strings.Contains(r.stdout, "pier scale web=1 -a idle") {
		t.Fatalf("ps of an idle app: %q", r.stdout)
	}

	api.on("GET /v1/apps/alone/ps", 503, `{"error":{"code":"unavailable","message":"this controller runs no scheduler, so it has no processes, logs or one-off runs: run `+"`pierd all`"+`"}}`)
	mustFail(t, e.run("", "ps", "-a", "alone"), "runs no scheduler")
}

func TestPsRestart(t *testing.T) {
	api, e := loggedIn(t)
	api.on("POST /v1/apps/myapp/ps/restart", 204, "")
	r := e.run("", "ps:restart", "web", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Restarting web processes on myapp... done\n" || api.last(t).Body != "{\"type\":\"web\"}\n" {
		t.Fatalf("stdout %q body %q", r.stdout, api.last(t).Body)
	}
	r = e.run("", "restart", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Restarting all processes on myapp... done\n" || api.last(t).Body != "{}\n" {
		t.Fatalf("stdout %q body %q", r.stdout, api.last(t).Body)
	}
	n := len(api.requests())
	mustFail(t, e.run("", "ps:restart", "web.1", "-a", "myapp"), "restarting one process (web.1) is not supported", "pier ps:restart web")
	mustFail(t, e.run("", "ps:restart", "Web!", "-a", "myapp"), "process type")
	mustFail(t, e.run("", "ps:restart", "web", "worker", "-a", "myapp"), "accepts at most 1 arg")
	if len(api.requests()) != n {
		t.Fatal("a bad restart was sent")
	}
	api.on("POST /v1/apps/myapp/ps/restart", 400, `{"error":{"code":"invalid","message":"unknown process type \"clock\": app \"myapp\" defines web, worker"}}`)
	r = e.run("", "restart", "clock", "-a", "myapp")
	mustFail(t, r, "defines web, worker")
	if r.stdout != "Restarting clock processes on myapp... failed\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestLogsFormat(t *testing.T) {
	api, e := loggedIn(t)
	lines := []string{
		`{"time":"2026-11-23T10:00:00.123456789Z","app":"myapp","process":"web.1","text":"listening on :5000"}`,
		`{"time":"2026-11-23T10:00:01Z","app":"myapp","process":"pier","text":"Restarting web.2"}`,
		`{"time":"2026-11-23T10:00:02.5Z","app":"myapp","process":"web.2","text":"\u001b[32mGET /\u001b[0m 200"}`,
	}
	api.onStream("GET /v1/apps/myapp/logs", lines...)
	r := e.run("", "logs", "-a", "myapp")
	mustOK(t, r)
	want := "2026-11-23T10:00:00.123456Z app[web.1]: listening on :5000\n" +
		"2026-11-23T10:00:01.000000Z pier[platform]: Restarting web.2\n" +
		"2026-11-23T10:00:02.500000Z app[web.2]: \x1b[32mGET /\x1b[0m 200\n"
	if r.stdout != want {
		t.Fatalf("logs:\n%q\nwant:\n%q", r.stdout, want)
	}
	if q := api.last(t).Query; q != "lines=100" {
		t.Fatalf("query %q", q)
	}

	// -p with one process narrows the API's answer to its type, and the
	// lines to the process.
	r = e.run("", "logs", "-a", "myapp", "-n", "5", "-p", "web.2")
	mustOK(t, r)
	if q := api.last(t).Query; q != "lines=5&type=web" {
		t.Fatalf("query %q", q)
	}
	if r.stdout != "2026-11-23T10:00:02.500000Z app[web.2]: \x1b[32mGET /\x1b[0m 200\n" {
		t.Fatalf("logs -p web.2: %q", r.stdout)
	}

	r = e.run("", "logs", "-a", "myapp", "--json")
	mustOK(t, r)
	if got := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(got) != 3 || !strings.Contains(got[0], `"process":"web.1"`) {
		t.Fatalf("--json: %s", r.stdout)
	}

	// -t follows; a stream the server ends is said to have ended.
	r = e.run("", "logs", "-t", "-a", "myapp")
	mustFail(t, r, "the server ended the log stream")
	if q := api.last(t).Query; q != "follow=true&lines=100" || !strings.Contains(r.stdout, "listening on :5000") {
		t.Fatalf("query %q stdout %q", q, r.stdout)
	}

	n := len(api.requests())
	mustFail(t, e.run("", "logs", "-a", "myapp", "-n", "0"), "--num 0 is invalid")
	mustFail(t, e.run("", "logs", "-a", "myapp", "-n", "10001"), "use 1 to 10000")
	mustFail(t, e.run("", "logs", "-a", "myapp", "-p", "Web"), "process type")
	mustFail(t, e.run("", "logs", "-a", "myapp", "-p", "web.x"), "--ps \"web.x\" is invalid")
	if len(api.requests()) != n {
		t.Fatal("bad options were sent")
	}
	// A stream that fails after it began.
	api.onStream("GET /v1/apps/broken/logs", lines[0], `{"error":{"code":"internal","message":"internal error; the server log has the details"}}`)
	r = e.run("", "logs", "-a", "broken")
	mustFail(t, r, "internal error")
	if !strings.Contains(r.stdout, "listening on :5000") {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestRunExitStatusAndStreams(t *testing.T) {
	api, e := loggedIn(t)
	api.onStream("POST /v1/apps/myapp/run",
		`{"stream":"stdout","data":"hello\n"}`, `{"stream":"stderr","data":"careful\n"}`, `{"stream":"stdout","data":"world\n"}`, `{"exit":3}`)
	r := e.run("", "run", "-a", "myapp", "--", "sh", "-c", "echo hello; echo careful >&2; echo world; exit 3")
	if r.code != 3 || r.stdout != "hello\nworld\n" || r.stderr != "careful\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if b := api.last(t).Body; b != `{"command":["sh","-c","echo hello; echo careful >&2; echo world; exit 3"]}`+"\n" {
		t.Fatalf("body %q", b)
	}

	// Flags after the command are the command's.
	api.onStream("POST /v1/apps/myapp/run", `{"exit":0}`)
	r = e.run("", "run", "-a", "myapp", "ls", "-a", "--json")
	mustOK(t, r)
	if b := api.last(t).Body; b != `{"command":["ls","-a","--json"]}`+"\n" {
		t.Fatalf("body %q", b)
	}
	api.onStream("POST /v1/apps/myapp/run", `{"exit":137}`)
	if r := e.run("", "run", "-a", "myapp", "sleep", "1000"); r.code != 137 || r.stderr != "" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}

	// Failures of pier itself exit 1 and say why.
	api.onStream("POST /v1/apps/myapp/run", `{"stream":"stdout","data":"x"}`)
	mustFail(t, e.run("", "run", "-a", "myapp", "true"), "ended before the command's exit status")
	api.on("POST /v1/apps/myapp/run", 400, `{"error":{"code":"invalid","message":"cannot run echo hi: executable file not found in $PATH"}}`)
	mustFail(t, e.run("", "run", "-a", "myapp", "echo hi"), "cannot run echo hi", "hint: the command runs without a shell", "sh -c")
	n := len(api.requests())
	mustFail(t, e.run("", "run", "-a", "myapp"), "requires at least 1 arg")
	mustFail(t, e.run("", "run", "-a", "myapp", "--", ""), "no command given")
	if len(api.requests()) != n {
		t.Fatal("a bad command was sent")
	}
}

func TestBuildsCommands(t *testing.T) {
	api, e := loggedIn(t)
	recent := time.Now().Add(-2*time.Minute - 5*time.Second).UTC().Format(time.RFC3339)
	api.on("GET /v1/apps/myapp/builds", 200, `{"items":[`+
		`{"id":8,"app":"myapp","commit":"1a2b3c4d5e6f","strategy":"host","status":"succeeded","created_by":"alice","created_at":"`+recent+`"},`+
		`{"id":7,"app":"myapp","strategy":"host","status":"failed","created_by":"bob","created_at":"`+recent+`"}]}`)
	r := e.run("", "builds", "-a", "myapp")
	mustOK(t, r)
	want := "=== myapp Builds\n" +
		"ID  COMMIT   STATUS     STRATEGY  BY     CREATED\n" +
		"8   1a2b3c4  succeeded  host      alice  2 minutes ago\n" +
		"7   -        failed     host      bob    2 minutes ago\n"
	if r.stdout != want {
		t.Fatalf("builds:\n%s\nwant:\n%s", r.stdout, want)
	}
	if q := api.last(t).Query; q != "limit=15" {
		t.Fatalf("query %q", q)
	}
	r = e.run("", "builds", "-a", "myapp", "--json", "-n", "2")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "{\n  \"items\": [") || api.last(t).Query != "limit=2" {
		t.Fatalf("--json: %s", r.stdout)
	}
	api.on("GET /v1/apps/fresh/builds", 200, `{"items":[]}`)
	r = e.run("", "builds", "-a", "fresh")
	mustOK(t, r)
	if r.stdout != "fresh has no builds yet: deploy it with `git push pier main`.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}

	build := `{"id":8,"app":"myapp","commit":"1a2b3c4d5e6f","strategy":"host","image":"/builds/myapp/8","process_types":{"worker":"./w","web":"./s"},"status":"succeeded","created_by":"alice","created_at":"` + recent + `","log":"-----> Go app detected\n-----> Done"}`
	api.on("GET /v1/apps/myapp/builds/latest", 200, build)
	api.on("GET /v1/apps/myapp/builds/8", 200, build)
	r = e.run("", "builds:info", "-a", "myapp")
	mustOK(t, r)
	for _, s := range []string{"=== Build 8 of myapp\n", "Commit:         1a2b3c4d5e6f\n", "Status:         succeeded\n", "Process types:  web, worker\n", "(2 minutes ago)", "\n=== Log\n-----> Go app detected\n-----> Done\n"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("builds:info lacks %q:\n%s", s, r.stdout)
		}
	}
	if p := api.last(t).Path; p != "/v1/apps/myapp/builds/latest" {
		t.Fatalf("path %q", p)
	}
	mustOK(t, e.run("", "builds:info", "8", "-a", "myapp"))
	if p := api.last(t).Path; p != "/v1/apps/myapp/builds/8" {
		t.Fatalf("path %q", p)
	}
	r = e.run("", "builds:info", "8", "-a", "myapp", "--json")
	mustOK(t, r)
	if !strings.Contains(r.stdout, `"log": "-----> Go app detected\n-----> Done"`) {
		t.Fatalf("--json: %s", r.stdout)
	}
	mustFail(t, e.run("", "builds:info", "eight", "-a", "myapp"), "build ID \"eight\" is invalid")
}

func TestOpenPrintsURLWhenNotATerminal(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp", 200, `{"name":"myapp","url":"http://myapp.pier.localhost:8080"}`)
	r := e.run("", "open", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "http://myapp.pier.localhost:8080\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	mustOK(t, e.run("", "apps:open", "-a", "myapp"))

	for _, bad := range []string{"file:///etc/passwd", "-x", "javascript:alert(1)", "http://user:pw@x.example.com"} {
		api.on("GET /v1/apps/evil", 200, `{"name":"evil","url":"`+bad+`"}`)
		r := e.run("", "open", "-a", "evil")
		mustFail(t, r, "not a web address")
		if r.stdout != "" {
			t.Fatalf("stdout %q", r.stdout)
		}
	}
}

func TestNewCommandsHaveHelpWithExamples(t *testing.T) {
	e := newEnv(t)
	for _, cmd := range []string{"ps", "ps:restart", "restart", "logs", "run", "builds", "builds:info", "open", "apps:open"} {
		r := e.run("", cmd, "--help")
		mustOK(t, r)
		if !strings.Contains(r.stdout, "Examples:\n  pier ") || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%s --help:\n%s", cmd, r.stdout)
		}
	}
	r := e.run("", "--help")
	for _, s := range []string{"logs", "run", "builds:info", "ps:restart", "open"} {
		if !strings.Contains(r.stdout, "\n  "+s+" ") {
			t.Errorf("pier --help does not list %s:\n%s", s, r.stdout)
		}
	}
}
