package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
)

var routerListening = regexp.MustCompile(`Router listening on (127\.0\.0\.1:\d+)`)

// standaloneRouter is a running `pierd router`.
type standaloneRouter struct{ *component }

// startRouter runs `pierd router args...` and waits until it serves.
func startRouter(t *testing.T, args ...string) *standaloneRouter {
	t.Helper()
	// No database credentials anywhere in its environment either.
	return &standaloneRouter{startComponent(t, "router", routerListening, []string{"DATABASE_URL=", "PIER_DATA_DIR=/nonexistent"}, args...)}
}

// startComponent runs `pierd name args...` with env added to the
// environment, and waits until it prints the line listening matches.
func startComponent(t *testing.T, name string, listening *regexp.Regexp, env []string, args ...string) *component {
	t.Helper()
	return launch(t, append([]string{name}, args...), nil, env, listening, time.Minute)
}

// get fetches path with the Host header host from the router.
func (r *standaloneRouter) get(host, path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+r.addr+path, nil)
	req.Host = host
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b)), nil
}

// serves waits until host answers 200 with body want through the router.
func (r *standaloneRouter) serves(t *testing.T, host, path, want string) {
	t.Helper()
	eventually(t, 30*time.Second, "the standalone router serves "+host+path, func() (bool, string) {
		code, body, err := r.get(host, path)
		return err == nil && code == 200 && body == want, fmt.Sprintf("%d %q %v", code, body, err)
	})
}

// watchAs calls the controller's internal router feed with an
// Authorization header, and returns the status and error message.
func watchAs(t *testing.T, internal, authorization string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+internal+"/internal/v1/router/watch", nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Error struct{ Message string } `json:"error"`
	}
	json.NewDecoder(io.LimitReader(res.Body, 1<<16)).Decode(&body)
	return res.StatusCode, body.Error.Message
}

// TestStandaloneRouter: `pierd router` as a process of its own, with a
// router service token and no database credentials, beside pierd all: it
// serves a deployed app and the platform API, picks up a custom domain
// added through the API, refuses to expose the internal listener; user
// credentials are refused on that listener; and while the controller
// restarts the router goes on answering from its last table, and follows
// the changes made after.
func TestStandaloneRouter(t *testing.T) {
	skipShort(t)
	httpPort, internalPort := freePort(t), freePort(t)
	internal := "127.0.0.1:" + internalPort
	// Fixed ports: the router must find the controller again after its restart.
	s := startStack(t, "PIER_HTTP_ADDR=127.0.0.1:"+httpPort, "PIER_INTERNAL_ADDR="+internal)
	if !strings.Contains(s.d.out.String(), "Internal listener (router feed, builders; service tokens only) on "+internal) {
		t.Fatalf("no internal listener on %s:\n%s", internal, s.d.out)
	}
	r := s.newRepo("../../builder/host/testdata/procfile-shell", "edge")
	r.mustPush()

	// An admin creates the router's token; it is shown once.
	var tok pier.NewServiceToken
	jsonOut(t, s.c.must("", "service-tokens:create", "--scope", "router", "--description", "edge-1", "--json"), &tok)
	if !strings.HasPrefix(tok.Token, "piersvc_router_") || tok.Scope != "router" {
		t.Fatalf("service token %+v", tok.ServiceToken)
	}
	tokenFile := filepath.Join(t.TempDir(), "router.token")
	if err := os.WriteFile(tokenFile, []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := s.c.must("", "service-tokens"); !strings.Contains(out, "edge-1") || strings.Contains(out, tok.Token) {
		t.Fatalf("service-tokens:\n%s", out)
	}

	// Bad flags say what to do.
	if out, err := exec.Command(filepath.Join(binDir, "pierd"), "router", "--token-file", tokenFile, "--domain", "pier.localhost").CombinedOutput(); err == nil || !strings.Contains(string(out), "--controller-internal is required") {
		t.Fatalf("pierd router without --controller-internal: %v\n%s", err, out)
	}

	rt := startRouter(t, "--controller-internal", "http://"+internal, "--token-file", tokenFile,
		"--controller-url", "http://127.0.0.1:"+httpPort, "--domain", "pier.localhost", "--listen", "127.0.0.1:0")
	rt.serves(t, "edge.pier.localhost", "/hello.txt", "hello from the shell")
	// The platform API through the router; never the internal listener.
	if code, body, err := rt.get("pier.pier.localhost", "/healthz"); err != nil || code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("API through the standalone router: %d %q %v", code, body, err)
	}
	if code, _, err := rt.get("pier.pier.localhost", "/internal/v1/router/watch"); err != nil || code != 404 {
		t.Fatalf("the internal feed through the public router: %d %v", code, err)
	}

	// A custom domain added through the API reaches the standalone router.
	s.c.must("", "domains:add", "www.edge.test", "-a", "edge")
	rt.serves(t, "www.edge.test", "/hello.txt", "hello from the shell")

	// User credentials are refused on the internal listener, whoever the
	// user (this one is the admin); so are no token, and a bad one.
	apiToken := strings.TrimSpace(s.c.must("", "tokens:create", "--description", "ci"))
	apiToken = apiToken[strings.LastIndex(apiToken, "pier_"):]
	apiToken = strings.Fields(apiToken)[0]
	for _, c := range []struct {
		auth string
		code int
		msg  string
	}{
		{"Bearer " + readToken(t, s.c), 403, "user credentials"},
		{"Bearer " + apiToken, 403, "user credentials"},
		{"", 401, "needs a router service token"},
		{"Bearer piersvc_router_notatoken", 401, "unknown or revoked"},
	} {
		code, msg := watchAs(t, internal, c.auth)
		if code != c.code || !strings.Contains(msg, c.msg) || !strings.Contains(msg, "pier service-tokens:create --scope router") {
			t.Errorf("internal feed with %.20q...: %d %q, want %d with %q", c.auth, code, msg, c.code, c.msg)
		}
	}
	// And a service token is no key to the public API.
	req, _ := http.NewRequest("GET", s.d.url+"/v1/apps", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 401 {
		t.Fatalf("service token on the public API: %v %v", res, err)
	}

	// The controller stops: the router stays up and answers from its last
	// table (the app's processes stopped with pierd all: 502 or 503, never
	// "no app here", and never a refused connection).
	s.d.stop(t)
	for _, host := range []string{"edge.pier.localhost", "www.edge.test"} {
		code, _, err := rt.get(host, "/hello.txt")
		if err != nil || (code != 502 && code != 503) {
			t.Fatalf("%s with the controller down: %d %v", host, code, err)
		}
	}
	if code, body, err := rt.get("pier.pier.localhost", "/healthz"); err != nil || code != 502 || !strings.Contains(body, "cannot reach the controller") {
		t.Fatalf("API with the controller down: %d %q %v", code, body, err)
	}
	eventually(t, 10*time.Second, "the router says it lost the feed", func() (bool, string) {
		return strings.Contains(rt.out.String(), "lost the controller's router feed"), ""
	})

	// Back: the app serves again through the router, and a change made
	// after the restart reaches it.
	s.start()
	rt.serves(t, "edge.pier.localhost", "/hello.txt", "hello from the shell")
	s.c.must("", "domains:add", "new.edge.test", "-a", "edge")
	rt.serves(t, "new.edge.test", "/hello.txt", "hello from the shell")
	rt.serves(t, "www.edge.test", "/hello.txt", "hello from the shell")

	// Revoked, the token is refused at the next connection.
	var toks []pier.ServiceToken
	jsonOut(t, s.c.must("", "service-tokens", "--json"), &toks)
	s.c.must("", "service-tokens:revoke", fmt.Sprint(toks[0].ID))
	if code, msg := watchAs(t, internal, "Bearer "+tok.Token); code != 401 || !strings.Contains(msg, "revoked") {
		t.Fatalf("revoked token: %d %q", code, msg)
	}

	rt.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-rt.done:
		if err != nil {
			t.Fatalf("pierd router exited with %v after Ctrl-C:\n%s", err, rt.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("pierd router did not stop after Ctrl-C:\n%s", rt.out)
	}
	// No secret in either log.
	for _, out := range []string{rt.out.String(), s.d.out.String()} {
		if strings.Contains(out, tok.Token) || strings.Contains(out, apiToken) {
			t.Fatal("a token is in pierd's output")
		}
	}
}

// TestAllWithoutRouter: `pierd all --router=false` runs the scheduler and
// the git push builder but leaves the apps to routers running alone: its
// public port is the API's only, and a `pierd router` fed by its internal
// listener serves the pushed app. (The chart's controller runs this way.)
func TestAllWithoutRouter(t *testing.T) {
	skipShort(t)
	internal := "127.0.0.1:" + freePort(t)
	s := startStack(t, "PIER_ROUTER=false", "PIER_INTERNAL_ADDR="+internal)
	r := s.newRepo("../../builder/host/testdata/procfile-shell", "alone")
	r.mustPush()
	// The public port does not route apps any more.
	req, _ := http.NewRequest("GET", s.d.url+"/hello.txt", nil)
	req.Host = "alone.pier.localhost"
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode == 200 {
		t.Fatalf("pierd all --router=false served an app: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	var tok pier.NewServiceToken
	jsonOut(t, s.c.must("", "service-tokens:create", "--scope", "router", "--json"), &tok)
	tokenFile := filepath.Join(t.TempDir(), "router.token")
	os.WriteFile(tokenFile, []byte(tok.Token), 0o600)
	rt := startRouter(t, "--controller-internal", "http://"+internal, "--token-file", tokenFile,
		"--controller-url", s.d.url, "--domain", "pier.localhost", "--listen", "127.0.0.1:0")
	rt.serves(t, "alone.pier.localhost", "/hello.txt", "hello from the shell")
	// --router=false with the router's own flags is refused with a reason.
	out, err := exec.Command(filepath.Join(binDir, "pierd"), "all", "--router=false", "--https-addr", "127.0.0.1:0", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "give them to pierd router") {
		t.Fatalf("pierd all --router=false --https-addr: %v\n%s", err, out)
	}
}
