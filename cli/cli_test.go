package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is an httptest server that answers canned responses and records
// every request, so that tests can check what the CLI sent.
type fakeAPI struct {
	*httptest.Server
	mu        sync.Mutex
	reqs      []request
	responses map[string]response // "METHOD /escaped/path"
}

type request struct {
	Method, Path, Query, Auth, Body string
}

type response struct {
	status int
	body   string
	ctype  string // Content-Type; application/json if empty
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{responses: map[string]response{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, request{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), string(body)})
		// A route with its query string wins over the bare path.
		resp, ok := f.responses[r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery]
		if !ok {
			resp, ok = f.responses[r.Method+" "+r.URL.EscapedPath()]
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if resp.ctype != "" {
			w.Header().Set("Content-Type", resp.ctype)
		}
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no such route in the fake"}}`)
			return
		}
		w.WriteHeader(resp.status)
		io.WriteString(w, resp.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) on(route string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.responses[route] = response{status: status, body: body}
}

// onStream answers route with a stream of JSON lines.
func (f *fakeAPI) onStream(route string, lines ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body := strings.Join(lines, "\n")
	if body != "" {
		body += "\n"
	}
	f.responses[route] = response{200, body, "application/x-ndjson"}
}

func (f *fakeAPI) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// last returns the last request, failing the test if there was none.
func (f *fakeAPI) last(t *testing.T) request {
	t.Helper()
	r := f.requests()
	if len(r) == 0 {
		t.Fatal("no request reached the API")
	}
	return r[len(r)-1]
}

// testEnv is a home directory and environment for one test.
type testEnv struct {
	home string
	vars map[string]string
}

func newEnv(t *testing.T) *testEnv {
	return &testEnv{home: t.TempDir(), vars: map[string]string{}}
}

func (e *testEnv) getenv(k string) string {
	if k == "HOME" {
		return e.home
	}
	return e.vars[k]
}

func (e *testEnv) configFile() string { return filepath.Join(e.home, ".config", "pier", "config.json") }

// login writes a config file as `pier login` would.
func (e *testEnv) login(t *testing.T, url, token string) {
	t.Helper()
	c := &cli{getenv: e.getenv}
	if err := c.saveConfig(savedConfig{URL: url, Token: token, Username: "alice"}); err != nil {
		t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func (e *testEnv) run(stdin string, args ...string) result {
	var out, errb strings.Builder
	code := Run(args, strings.NewReader(stdin), &out, &errb, e.getenv)
	return result{out.String(), errb.String(), code}
}

func mustOK(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

func mustFail(t *testing.T, r result, stderrHas ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want failure\nstdout: %s", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "error: ") {
		t.Fatalf("stderr %q does not start with \"error: \"", r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Fatalf("stderr %q does not contain %q", r.stderr, s)
		}
	}
}

// loggedIn returns a fake API and an environment logged in to it.
func loggedIn(t *testing.T) (*fakeAPI, *testEnv) {
	api := newFakeAPI(t)
	e := newEnv(t)
	e.login(t, api.URL, "tok-1")
	return api, e
}

func TestConfigSetValuesReachAPIIntact(t *testing.T) {
	api, e := loggedIn(t)
	api.on("PATCH /v1/apps/myapp/config", 200, `{"app":"myapp","version":3,"note":"Set A, B, C"}`)

	r := e.run("", "config:set", "A=hello world", "B=x=y==z", "C=line1\nline2\n", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Setting A, B and C on myapp... done, v3\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	req := api.last(t)
	if req.Method != "PATCH" || req.Auth != "Bearer tok-1" {
		t.Fatalf("request %+v", req)
	}
	var body map[string]*string
	if err := json.Unmarshal([]byte(req.Body), &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "hello world", "B": "x=y==z", "C": "line1\nline2\n"}
	if len(body) != len(want) {
		t.Fatalf("body %s", req.Body)
	}
	for k, v := range want {
		if body[k] == nil || *body[k] != v {
			t.Fatalf("%s reached the API as %v, want %q (body %s)", k, body[k], v, req.Body)
		}
	}
}

func TestConfigSetChecksArgumentsBeforeSending(t *testing.T) {
	api, e := loggedIn(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"1BAD=x"}, `config key "1BAD" is invalid`},
		{[]string{"PORT=80"}, "PORT is set by Pier"},
		{[]string{"TOKEN"}, "TOKEN has no value"},
		{[]string{"A=1", "A=2"}, "given twice"},
		{[]string{"A=1", "s3cret value"}, "argument 2 is not KEY=VALUE"},
	} {
		r := e.run("", append([]string{"config:set", "-a", "myapp"}, tc.args...)...)
		mustFail(t, r, tc.want)
		if strings.Contains(r.stderr, "s3cret") {
			t.Fatalf("a value was echoed: %q", r.stderr)
		}
	}
	if n := len(api.requests()); n != 0 {
		t.Fatalf("%d requests were sent for invalid arguments", n)
	}
}

func TestConfigUnsetSendsNull(t *testing.T) {
	api, e := loggedIn(t)
	api.on("PATCH /v1/apps/myapp/config", 200, `{"app":"myapp","version":4,"note":"Unset A, B"}`)
	r := e.run("", "config:unset", "B", "A", "B", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Unsetting A and B on myapp... done, v4\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(api.last(t).Body), &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 2 || body["A"] != nil || body["B"] != nil {
		t.Fatalf("body %s", api.last(t).Body)
	}
	if _, ok := body["A"]; !ok {
		t.Fatalf("A is missing from %s", api.last(t).Body)
	}
}

func TestConfigListAndShell(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp/config", 200, `{"B":"it's \"quoted\" $HOME","A":"1","LONG_NAME":"l1\nl2"}`)

	r := e.run("", "config", "-a", "myapp")
	mustOK(t, r)
	want := "=== myapp Config Vars\n" +
		"A:         1\n" +
		"B:         it's \"quoted\" $HOME\n" +
		"LONG_NAME: l1\n" +
		"           l2\n"
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = e.run("", "config", "--shell", "-a", "myapp")
	mustOK(t, r)
	want = "A='1'\n" + `B='it'\''s "quoted" $HOME'` + "\n" + "LONG_NAME='l1\nl2'\n"
	if r.stdout != want {
		t.Fatalf("--shell:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = e.run("", "config", "--json", "-a", "myapp")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "{\n  \"A\": \"1\",") {
		t.Fatalf("--json: %s", r.stdout)
	}
}

func TestAppFromRemoteURL(t *testing.T) {
	for remote, want := range map[string]string{
		"ssh://git@localhost:2222/myapp.git":   "myapp",
		"ssh://git@localhost:2222/myapp":       "myapp",
		"git@pier.example.com:myapp.git":       "myapp",
		"git@pier.example.com:myapp":           "myapp",
		"https://pier.example.com/my-app.git/": "my-app",
	} {
		if got := appFromRemote(remote); got != want {
			t.Errorf("appFromRemote(%q) = %q, want %q", remote, got, want)
		}
	}
}

func TestAppInferredFromGitRemote(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp/ps", 200, `{"items":[{"app":"myapp","type":"web","index":1,"release":2,"state":"up"},{"app":"myapp","type":"web","index":2,"release":2,"state":"up"}]}`)

	dir := t.TempDir()
	for _, args := range [][]string{{"init", "-q"}, {"remote", "add", "pier", "ssh://git@localhost:2222/myapp.git"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub) // inference works from anywhere in the repo

	r := e.run("", "ps")
	mustOK(t, r)
	if p := api.last(t).Path; p != "/v1/apps/myapp/ps" {
		t.Fatalf("path %q", p)
	}
	if !strings.Contains(r.stdout, "=== web (2)") {
		t.Fatalf("stdout %q", r.stdout)
	}

	// -a wins over the remote.
	api.on("GET /v1/apps/other/ps", 200, `{"items":[]}`)
	mustOK(t, e.run("", "ps", "-a", "other"))
	if p := api.last(t).Path; p != "/v1/apps/other/ps" {
		t.Fatalf("path %q", p)
	}

	// Outside any repo: the message says what to do.
	t.Chdir(t.TempDir())
	mustFail(t, e.run("", "ps"), "no app given: pass -a APP, or run this inside a git repo with a 'pier' remote")
}

func TestDestroyNeedsConfirmation(t *testing.T) {
	api, e := loggedIn(t)
	api.on("DELETE /v1/apps/myapp", 204, "")

	mustFail(t, e.run("", "apps:destroy", "-a", "myapp"), "pass --confirm myapp")
	mustFail(t, e.run("", "apps:destroy", "-a", "myapp", "--confirm", "other"), "does not match")
	if n := len(api.requests()); n != 0 {
		t.Fatalf("%d requests before confirmation", n)
	}
	r := e.run("", "apps:destroy", "myapp", "--confirm", "myapp")
	mustOK(t, r)
	if req := api.last(t); req.Method != "DELETE" || req.Path != "/v1/apps/myapp" {
		t.Fatalf("request %+v", req)
	}
	if r.stdout != "Destroying myapp... done\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestKeysRemoveEscapesFingerprint(t *testing.T) {
	api, e := loggedIn(t)
	fp := "SHA256:ab/cd+ef"
	api.on("DELETE /v1/keys/SHA256:ab%2Fcd+ef", 204, "")
	mustFail(t, e.run("", "keys:remove", fp), "pass --confirm "+fp)
	mustOK(t, e.run("", "keys:remove", fp, "--confirm", fp))
	if p := api.last(t).Path; p != "/v1/keys/SHA256:ab%2Fcd+ef" {
		t.Fatalf("path %q", p)
	}
}

func TestKeysAddDefaultFile(t *testing.T) {
	api, e := loggedIn(t)
	api.on("POST /v1/keys", 201, `{"id":1,"name":"me@laptop","fingerprint":"SHA256:xyz"}`)
	ssh := filepath.Join(e.home, ".ssh")
	os.MkdirAll(ssh, 0o700)

	mustFail(t, e.run("", "keys:add"), "no SSH public key found")

	pub := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE me@laptop"
	os.WriteFile(filepath.Join(ssh, "id_rsa.pub"), []byte("ssh-rsa AAAA other\n"), 0o644)
	os.WriteFile(filepath.Join(ssh, "id_ed25519.pub"), []byte(pub+"\n"), 0o644)
	r := e.run("", "keys:add")
	mustOK(t, r)
	if !strings.Contains(r.stdout, filepath.Join(ssh, "id_ed25519.pub")) || !strings.Contains(r.stdout, "SHA256:xyz") {
		t.Fatalf("stdout %q does not say which file was used", r.stdout)
	}
	var body map[string]string
	json.Unmarshal([]byte(api.last(t).Body), &body)
	if body["public_key"] != pub {
		t.Fatalf("body %s", api.last(t).Body)
	}

	priv := filepath.Join(ssh, "id_ed25519")
	os.WriteFile(priv, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nxxx\n"), 0o600)
	n := len(api.requests())
	mustFail(t, e.run("", "keys:add", priv), "is a private key")
	if len(api.requests()) != n {
		t.Fatal("a private key was sent")
	}
}

const sessionJSON = `{"token":"jwt-new","expires_at":"2030-01-01T00:00:00Z","user":{"username":"alice","admin":true}}`

func TestLoginPasswordStdin(t *testing.T) {
	api := newFakeAPI(t)
	api.on("POST /v1/auth/login", 200, sessionJSON)
	e := newEnv(t)
	e.vars["XDG_CONFIG_HOME"] = filepath.Join(e.home, "xdg")

	r := e.run("pass word \n\n", "login", api.URL, "--username", "alice", "--password-stdin")
	mustOK(t, r)
	var body map[string]string
	json.Unmarshal([]byte(api.last(t).Body), &body)
	if body["username"] != "alice" || body["password"] != "pass word \n" {
		t.Fatalf("login body %q: only one trailing newline may be removed", api.last(t).Body)
	}
	if strings.Contains(r.stdout+r.stderr, "pass word") || strings.Contains(r.stdout+r.stderr, "jwt-new") {
		t.Fatal("a secret was printed")
	}

	path := filepath.Join(e.home, "xdg", "pier", "config.json")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode %v, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(filepath.Dir(path))
	if dst.Mode().Perm() != 0o700 {
		t.Fatalf("config dir mode %v, want 0700", dst.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	var sc savedConfig
	json.Unmarshal(data, &sc)
	if sc != (savedConfig{URL: api.URL, Token: "jwt-new", Username: "alice"}) {
		t.Fatalf("saved %+v", sc)
	}

	// PIER_PASSWORD, and the URL and username remembered from last time.
	e.vars["PIER_PASSWORD"] = "from-env-1"
	mustOK(t, e.run("", "login"))
	json.Unmarshal([]byte(api.last(t).Body), &body)
	if body["password"] != "from-env-1" || body["username"] != "alice" {
		t.Fatalf("login body %q", api.last(t).Body)
	}
}

func TestLoginWithoutPasswordSource(t *testing.T) {
	api := newFakeAPI(t)
	e := newEnv(t)
	mustFail(t, e.run("", "login", api.URL, "--username", "alice"), "--password-stdin", "PIER_PASSWORD")
	mustFail(t, e.run("x", "login", api.URL, "--password-stdin"), "--username")
	r := e.run("", "login", api.URL, "--username", "alice", "--password=hunter22")
	mustFail(t, r, "never taken as command-line arguments")
	if strings.Contains(r.stderr, "hunter22") {
		t.Fatal("the password was echoed")
	}
	if n := len(api.requests()); n != 0 {
		t.Fatalf("%d requests", n)
	}
}

func TestRegisterFirstAdminThenLogin(t *testing.T) {
	api := newFakeAPI(t)
	api.on("POST /v1/auth/register", 201, `{"username":"alice","admin":true}`)
	api.on("POST /v1/auth/login", 200, sessionJSON)
	e := newEnv(t)
	tokFile := filepath.Join(e.home, "bootstrap-token")
	os.WriteFile(tokFile, []byte("boot-123\n"), 0o600)

	r := e.run("correct horse\n", "register", api.URL, "--username", "alice", "--bootstrap-token-file", tokFile, "--password-stdin")
	mustOK(t, r)
	reqs := api.requests()
	if len(reqs) != 2 || reqs[0].Path != "/v1/auth/register" || reqs[1].Path != "/v1/auth/login" {
		t.Fatalf("requests %+v", reqs)
	}
	var body map[string]string
	json.Unmarshal([]byte(reqs[0].Body), &body)
	if body["bootstrap_token"] != "boot-123" || body["password"] != "correct horse" || reqs[0].Auth != "" {
		t.Fatalf("register %+v", reqs[0])
	}
	if r.stdout != "Registered alice (admin).\nLogged in as alice at "+api.URL+".\n" {
		t.Fatalf("stdout %q", r.stdout)
	}

	// Too short a password is refused before any request.
	n := len(api.requests())
	mustFail(t, e.run("short\n", "register", api.URL, "--username", "bob", "--password-stdin"), "password must be")
	if len(api.requests()) != n {
		t.Fatal("a request was sent")
	}
}

func TestRegisterByAdminOnlyCreates(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/auth/whoami", 200, `{"username":"alice","admin":true}`)
	api.on("POST /v1/auth/register", 201, `{"username":"bob","admin":false}`)
	e.vars["PIER_PASSWORD"] = "bobs password"

	r := e.run("", "register", api.URL, "--username", "bob")
	mustOK(t, r)
	reqs := api.requests()
	if len(reqs) != 2 || reqs[1].Path != "/v1/auth/register" || reqs[1].Auth != "Bearer tok-1" {
		t.Fatalf("requests %+v", reqs)
	}
	if !strings.Contains(r.stdout, "Created user bob. You are still logged in as alice.") {
		t.Fatalf("stdout %q", r.stdout)
	}
	data, _ := os.ReadFile(e.configFile())
	if !strings.Contains(string(data), "tok-1") {
		t.Fatal("the admin's session was replaced")
	}
}

func TestLogoutForgetsToken(t *testing.T) {
	api, e := loggedIn(t)
	api.on("POST /v1/auth/logout", 204, "")
	r := e.run("", "logout")
	mustOK(t, r)
	if api.last(t).Auth != "Bearer tok-1" {
		t.Fatal("logout did not send the session token")
	}
	data, _ := os.ReadFile(e.configFile())
	var sc savedConfig
	json.Unmarshal(data, &sc)
	if sc.Token != "" || sc.URL != api.URL {
		t.Fatalf("after logout: %s", data)
	}
	mustFail(t, e.run("", "apps"), "not logged in: run `pier login "+api.URL+"`")
}

func TestErrorsAndHints(t *testing.T) {
	e := newEnv(t)
	r := e.run("", "apps")
	mustFail(t, r, "not logged in: run `pier login URL`")
	if r.code != 1 {
		t.Fatalf("exit %d", r.code)
	}

	api, e := loggedIn(t)
	api.on("GET /v1/apps", 401, `{"error":{"code":"unauthorized","message":"your session has expired"}}`)
	r = e.run("", "apps")
	mustFail(t, r, "error: your session has expired\n", "hint: your session may have expired: run `pier login "+api.URL+"`")

	api.on("GET /v1/apps/nope", 404, `{"error":{"code":"not_found","message":"app \"nope\" not found"}}`)
	r = e.run("", "apps:info", "-a", "nope")
	if r.stderr != "error: app \"nope\" not found\n" || r.code != 1 {
		t.Fatalf("stderr %q exit %d", r.stderr, r.code)
	}

	api.on("GET /v1/apps/myapp/ps", 502, `<html>Bad Gateway</html>`)
	mustFail(t, e.run("", "ps", "-a", "myapp"), "502 Bad Gateway")

	// A server that is not there.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	e.login(t, deadURL, "tok")
	mustFail(t, e.run("", "apps"), "cannot reach "+deadURL+": connection refused", "is pierd running? `make run` starts it")

	mustFail(t, e.run("", "apps:create", "Bad_Name"), "app name \"Bad_Name\" is invalid")
	mustFail(t, e.run("", "nosuch"), "unknown command", "pier --help")
	mustFail(t, e.run("", "config:get"), "accepts 1 arg(s), received 0", "run `pier config:get --help` for usage")
	mustFail(t, e.run("", "ps:scale", "web=two", "-a", "myapp"), "not a number")
	mustFail(t, e.run("", "ps:scale", "web=1000", "-a", "myapp"), "use 0 to 100")
}

func TestEnvOverridesConfigFile(t *testing.T) {
	api, e := loggedIn(t)
	other := newFakeAPI(t)
	other.on("GET /v1/auth/whoami", 200, `{"username":"ci"}`)

	// PIER_URL elsewhere: the file's token must not go there.
	e.vars["PIER_URL"] = other.URL
	mustFail(t, e.run("", "whoami"), "not logged in")
	if len(other.requests()) != 0 {
		t.Fatal("a request was sent without a token")
	}
	e.vars["PIER_TOKEN"] = "pier_ci"
	r := e.run("", "whoami")
	mustOK(t, r)
	if r.stdout != "ci\n" || other.last(t).Auth != "Bearer pier_ci" {
		t.Fatalf("stdout %q auth %q", r.stdout, other.last(t).Auth)
	}
	if len(api.requests()) != 0 {
		t.Fatal("the file's server was called")
	}
	mustFail(t, e.run("", "logout"), "PIER_TOKEN")
}

func TestJSONOutput(t *testing.T) {
	api, e := loggedIn(t)
	info := `{"name":"myapp","owner":"alice","created_at":"2026-11-23T20:41:00Z","updated_at":"2026-11-23T20:41:00Z","url":"http://myapp.pier.localhost:8080","release":{"app":"myapp","version":1,"note":"Initial release","created_by":"alice","created_at":"2026-11-23T20:41:00Z"},"formation":{},"domains":[],"members":[{"username":"alice","role":"owner"}]}`
	api.on("GET /v1/apps/myapp", 200, info)
	r := e.run("", "apps:info", "-a", "myapp", "--json")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "{\n  \"name\": \"myapp\",\n") {
		t.Fatalf("not indented JSON: %s", r.stdout)
	}
	var a, b any
	json.Unmarshal([]byte(info), &a)
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil {
		t.Fatal(err)
	}
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	if string(aj) != string(bj) {
		t.Fatalf("--json differs from the API's JSON:\n%s\n%s", aj, bj)
	}

	r = e.run("", "apps:info", "-a", "myapp")
	mustOK(t, r)
	for _, s := range []string{"=== myapp", "http://myapp.pier.localhost:8080", "v1  Initial release  by alice", "alice (owner)"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("apps:info output lacks %q:\n%s", s, r.stdout)
		}
	}

	// apps fetches every page and prints them as one list.
	api.on("GET /v1/apps?limit=500", 200, `{"items":[{"name":"app-one","owner":"alice"}],"next":"c1"}`)
	api.on("GET /v1/apps?after=c1&limit=500", 200, `{"items":[{"name":"app-two","owner":"bob"}]}`)
	r = e.run("", "apps", "--json")
	mustOK(t, r)
	var l struct {
		Items []struct{ Name string }
		Next  *string
	}
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l.Items) != 2 || l.Items[1].Name != "app-two" || l.Next != nil {
		t.Fatalf("apps --json: %v %s", err, r.stdout)
	}
	r = e.run("", "apps")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "NAME     OWNER  CREATED\napp-one  alice  -\napp-two  bob    -\n") {
		t.Fatalf("apps:\n%s", r.stdout)
	}
}

func TestReleasesTableAndRollback(t *testing.T) {
	api, e := loggedIn(t)
	now := time.Now().UTC()
	t3 := now.Add(-2*time.Minute - 5*time.Second).Format(time.RFC3339)
	t2 := now.Add(-3 * time.Hour).Format(time.RFC3339)
	api.on("GET /v1/apps/myapp/releases", 200, `{"items":[`+
		`{"version":3,"note":"Set A, B","created_by":"alice","created_at":"`+t3+`"},`+
		`{"version":2,"note":"Deploy 1a2b3c4","created_by":"bob","created_at":"`+t2+`"}]}`)
	r := e.run("", "releases", "-a", "myapp")
	mustOK(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || lines[0] != "=== myapp Releases" ||
		!strings.HasPrefix(lines[1], "v3  Set A, B        alice  ") || !strings.HasSuffix(lines[1], "(2 minutes ago)") ||
		!strings.HasSuffix(lines[2], "(3 hours ago)") {
		t.Fatalf("releases:\n%s", r.stdout)
	}
	if q := api.last(t).Query; q != "limit=15" {
		t.Fatalf("query %q", q)
	}

	api.on("POST /v1/apps/myapp/releases/rollback", 201, `{"version":4,"note":"Rollback to v2"}`)
	r = e.run("", "releases:rollback", "v2", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Rolling back myapp to v2... done, v4\n" || api.last(t).Body != "{\"version\":2}\n" {
		t.Fatalf("stdout %q body %q", r.stdout, api.last(t).Body)
	}
	mustFail(t, e.run("", "releases:rollback", "vX", "-a", "myapp"), "release version")
}

func TestScaleShortcut(t *testing.T) {
	api, e := loggedIn(t)
	api.on("PATCH /v1/apps/myapp/formation", 200, `{"web":2,"worker":1,"clock":0}`)
	r := e.run("", "scale", "web=2", "worker=1", "-a", "myapp")
	mustOK(t, r)
	if api.last(t).Body != "{\"web\":2,\"worker\":1}\n" {
		t.Fatalf("body %q", api.last(t).Body)
	}
	want := "Scaling myapp... done\n=== myapp Formation\nTYPE    QTY\nclock   0\nweb     2\nworker  1\n"
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestTokensCreatePrintsTokenOnce(t *testing.T) {
	api, e := loggedIn(t)
	api.on("POST /v1/tokens", 201, `{"token":"pier_abcdef","id":7,"description":"ci","prefix":"pier_abc"}`)
	r := e.run("", "tokens:create", "--description", "ci", "--expires-in-days", "30")
	mustOK(t, r)
	if r.stdout != "pier_abcdef\n" {
		t.Fatalf("stdout %q: want only the token", r.stdout)
	}
	if !strings.Contains(r.stderr, "shown only now") {
		t.Fatalf("stderr %q lacks the warning", r.stderr)
	}
	if api.last(t).Body != "{\"description\":\"ci\",\"expires_in_days\":30}\n" {
		t.Fatalf("body %q", api.last(t).Body)
	}
	api.on("DELETE /v1/tokens/7", 204, "")
	mustOK(t, e.run("", "tokens:revoke", "7"))
	mustFail(t, e.run("", "tokens:revoke", "seven"), "not a token ID")
}

func TestStatusAndNormalizeURL(t *testing.T) {
	api := newFakeAPI(t)
	api.on("GET /readyz", 200, `{"status":"ok","checks":{"database":"ok","migrations":"ok","scheduler":"ok"}}`)
	e := newEnv(t)
	r := e.run("", "status", "--url", api.URL)
	mustOK(t, r)
	if !strings.Contains(r.stdout, "up and ready") {
		t.Fatalf("stdout %q", r.stdout)
	}
	// Not ready: the failing checks are named, and the exit status says so.
	api.on("GET /readyz", 503, `{"status":"unavailable","checks":{"database":"not answering","migrations":"unknown: the database is not answering","scheduler":"ok"}}`)
	r = e.run("", "status", "--url", api.URL)
	mustFail(t, r, "is not ready: database: not answering; migrations: unknown")
	if strings.Contains(r.stderr, "scheduler") {
		t.Fatalf("a passing check named: %q", r.stderr)
	}

	for in, want := range map[string]string{
		"pier.localhost:8080":        "http://pier.localhost:8080",
		"127.0.0.1:8080/":            "http://127.0.0.1:8080",
		"pier.example.com":           "https://pier.example.com",
		"HTTP://Pier.Example.com/":   "http://pier.example.com",
		"https://x.example.com/pier": "https://x.example.com/pier",
	} {
		if got, err := normalizeURL(in); err != nil || got != want {
			t.Errorf("normalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := normalizeURL("https://alice:pw@pier.example.com"); err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("user info: %v", err)
	}
}

func TestUnauthorizedHintDependsOnCredentials(t *testing.T) {
	api := newFakeAPI(t)
	api.on("POST /v1/auth/login", 401, `{"error":{"code":"unauthorized","message":"wrong username or password"}}`)
	api.on("GET /v1/auth/whoami", 401, `{"error":{"code":"unauthorized","message":"the API token is unknown, revoked or expired"}}`)
	e := newEnv(t)
	e.vars["PIER_PASSWORD"] = "not-it-at-all"

	// A wrong password is not an expired session: no hint about one.
	r := e.run("", "login", api.URL, "--username", "alice")
	if r.stderr != "error: wrong username or password\n" || r.code != 1 {
		t.Fatalf("stderr %q exit %d", r.stderr, r.code)
	}

	e.vars["PIER_URL"], e.vars["PIER_TOKEN"] = api.URL, "pier_old"
	mustFail(t, e.run("", "whoami"), "hint: the token in PIER_TOKEN was refused")
}
