package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuildsCreate(t *testing.T) {
	api, e := loggedIn(t)
	api.on("POST /v1/apps/myapp/builds", 201, `{"app":"myapp","version":3,"note":"Deploy nginx:1.27","status":"succeeded"}`)

	r := e.run("", "builds:create", "nginx:1.27", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "Deploying nginx:1.27 to myapp... done, v3\n" || api.last(t).Body != `{"image":"nginx:1.27"}`+"\n" {
		t.Fatalf("stdout %q body %q", r.stdout, api.last(t).Body)
	}

	procfile := filepath.Join(t.TempDir(), "Procfile")
	os.WriteFile(procfile, []byte("web: ./server\nworker: ./w\n"), 0o644)
	mustOK(t, e.run("", "builds:create", "registry.example.com/team/app:v2", "--procfile", procfile, "-a", "myapp"))
	if b := api.last(t).Body; b != `{"image":"registry.example.com/team/app:v2","procfile":"web: ./server\nworker: ./w\n"}`+"\n" {
		t.Fatalf("body %q", b)
	}
	mustOK(t, e.run("web: ./from-stdin\n", "builds:create", "nginx:1.27", "-p", "-", "-a", "myapp"))
	if b := api.last(t).Body; !strings.Contains(b, `"procfile":"web: ./from-stdin\n"`) {
		t.Fatalf("body %q", b)
	}

	// Mistakes are caught before anything is sent.
	n := len(api.requests())
	mustFail(t, e.run("", "builds:create", "Team/App", "-a", "myapp"), "must be lowercase", "[registry[:port]/]path[:tag][@sha256:digest]")
	os.WriteFile(procfile, []byte("web ./server\n"), 0o644)
	mustFail(t, e.run("", "builds:create", "nginx:1.27", "-p", procfile, "-a", "myapp"), procfile+": Procfile line 1 is not \"type: command\"")
	mustFail(t, e.run("", "builds:create", "nginx:1.27", "-p", filepath.Join(t.TempDir(), "nope"), "-a", "myapp"), "reading the Procfile")
	mustFail(t, e.run("", "builds:create", "-a", "myapp"), "accepts 1 arg")
	if len(api.requests()) != n {
		t.Fatal("a request was sent for a mistaken command line")
	}

	// Processes that do not come up: nothing released, exit non-zero.
	api.on("POST /v1/apps/myapp/builds", 422, `{"error":{"code":"rollout_failed","message":"v4 did not come up: web: 0/1 new processes ready within 5m; v3 keeps running"}}`)
	r = e.run("", "builds:create", "broken:1", "-a", "myapp")
	mustFail(t, r, "error: v4 did not come up: web: 0/1 new processes ready within 5m; v3 keeps running", "hint: `pier logs`")
	if r.stdout != "Deploying broken:1 to myapp... failed\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	api.on("POST /v1/apps/myapp/builds", 503, `{"error":{"code":"unavailable","message":"this Pier runs apps with the local scheduler, which cannot run images: use git push, or run pierd with --scheduler=kubernetes"}}`)
	mustFail(t, e.run("", "builds:create", "nginx:1.27", "-a", "myapp"), "cannot run images: use git push")
}

func TestLimitsCommands(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp/limits", 200, `{}`)
	r := e.run("", "limits", "-a", "myapp")
	mustOK(t, r)
	if !strings.HasPrefix(r.stdout, "myapp has no limits") {
		t.Fatalf("stdout %q", r.stdout)
	}
	api.on("GET /v1/apps/myapp/limits", 200, `{"worker":{"cpu":"1.5"},"web":{"memory":"512Mi","cpu":"500m"}}`)
	r = e.run("", "limits", "-a", "myapp")
	mustOK(t, r)
	if want := "=== myapp Limits\nTYPE    MEMORY  CPU\nweb     512Mi   500m\nworker  -       1.5\n"; r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = e.run("", "limits", "--json", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, `"memory": "512Mi"`) {
		t.Fatalf("json %s", r.stdout)
	}

	api.on("PATCH /v1/apps/myapp/limits", 200, `{"web":{"memory":"512Mi","cpu":"500m"}}`)
	r = e.run("", "limits:set", "web=512Mi", "--cpu", "web=500m", "-a", "myapp")
	mustOK(t, r)
	if b := api.last(t).Body; b != `{"memory":{"web":"512Mi"},"cpu":{"web":"500m"}}`+"\n" {
		t.Fatalf("body %q", b)
	}
	if !strings.HasPrefix(r.stdout, "Applying limits on myapp... done\n=== myapp Limits\n") {
		t.Fatalf("stdout %q", r.stdout)
	}
	mustOK(t, e.run("", "limits:set", "--cpu", "worker=2", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"cpu":{"worker":"2"}}`+"\n" {
		t.Fatalf("body %q", b)
	}
	mustOK(t, e.run("", "limits:unset", "web", "worker", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"memory":{"web":null,"worker":null}}`+"\n" {
		t.Fatalf("body %q", b)
	}
	mustOK(t, e.run("", "limits:unset", "web", "--cpu", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"cpu":{"web":null}}`+"\n" {
		t.Fatalf("body %q", b)
	}
	mustOK(t, e.run("", "limits:unset", "web", "--cpu", "--memory", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"memory":{"web":null},"cpu":{"web":null}}`+"\n" {
		t.Fatalf("body %q", b)
	}

	n := len(api.requests())
	mustFail(t, e.run("", "limits:set", "web=512m", "-a", "myapp"), "for megabytes write 512M or 512Mi")
	mustFail(t, e.run("", "limits:set", "web", "-a", "myapp"), `"web" is not TYPE=VALUE`)
	mustFail(t, e.run("", "limits:set", "web=1Gi", "web=2Gi", "-a", "myapp"), "given twice")
	mustFail(t, e.run("", "limits:set", "--cpu", "web=lots", "-a", "myapp"), `cpu limit "lots" is invalid`)
	mustFail(t, e.run("", "limits:set", "-a", "myapp"), "no limits given", "--help")
	mustFail(t, e.run("", "limits:unset", "Web", "-a", "myapp"), "process type")
	if len(api.requests()) != n {
		t.Fatal("a request was sent for a mistaken command line")
	}
}

func TestFailedReleaseIsReported(t *testing.T) {
	api, e := loggedIn(t)
	api.on("PATCH /v1/apps/myapp/config", 422, `{"error":{"code":"rollout_failed","message":"release v4 failed, so v3 was restored: v4 did not come up: web.1 crashed on boot: exit status 1"}}`)
	r := e.run("", "config:set", "A=bad", "-a", "myapp")
	mustFail(t, r, "error: release v4 failed, so v3 was restored: v4 did not come up: web.1 crashed on boot", "hint: `pier logs` shows what the processes printed")
	if r.stdout != "" {
		t.Fatalf("stdout %q", r.stdout)
	}

	now := time.Now().UTC().Format(time.RFC3339)
	api.on("GET /v1/apps/myapp/releases", 200, `{"items":[`+
		`{"version":5,"note":"Set B","created_by":"alice","created_at":"`+now+`","status":"pending"},`+
		`{"version":4,"note":"Set A","created_by":"alice","created_at":"`+now+`","status":"failed","failure":"v4 did not come up: web.1 crashed on boot: exit status 1\nlast output:\n  boom","failed_at":"`+now+`"},`+
		`{"version":3,"note":"Deploy 1a2b3c4","created_by":"bob","created_at":"`+now+`","status":"succeeded"}]}`)
	r = e.run("", "releases", "-a", "myapp")
	mustOK(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[1], "pending") ||
		!strings.HasSuffix(lines[2], "failed: v4 did not come up: web.1 crashed on boot: exit status 1") ||
		!strings.HasSuffix(lines[3], "(just now)") {
		t.Fatalf("releases:\n%s", r.stdout)
	}

	api.on("GET /v1/apps/myapp/releases/v4", 200, `{"version":4,"note":"Set A","created_by":"alice","created_at":"`+now+`","status":"failed","failure":"v4 did not come up: web.1 crashed on boot\nlast output:\n  boom \u001b[2J","failed_at":"`+now+`","config":{"A":"bad"}}`)
	r = e.run("", "releases:info", "v4", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "Status:  failed ") || !strings.Contains(r.stdout, "=== Why v4 failed\nv4 did not come up: web.1 crashed on boot\nlast output:\n  boom ?[2J\n") {
		t.Fatalf("releases:info:\n%s", r.stdout)
	}
}

func TestBuildpacksCommands(t *testing.T) {
	api, e := loggedIn(t)
	api.on("GET /v1/apps/myapp/builder", 200, `{"builder":"","default":"pier/builder:latest"}`)
	r := e.run("", "buildpacks", "-a", "myapp")
	mustOK(t, r)
	if r.stdout != "=== myapp Builder\npier/builder:latest (the platform's default)\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	api.on("PUT /v1/apps/myapp/builder", 200, `{"builder":"heroku/builder:24","default":"pier/builder:latest"}`)
	r = e.run("", "buildpacks:set-builder", "heroku/builder:24", "-a", "myapp")
	mustOK(t, r)
	if !strings.Contains(r.stdout, "The next git push builds with it") || !strings.Contains(r.stdout, "heroku/builder:24\n") {
		t.Fatalf("stdout %q", r.stdout)
	}
	if b := api.last(t).Body; b != `{"builder":"heroku/builder:24"}`+"\n" {
		t.Fatalf("body %q", b)
	}
	api.on("PUT /v1/apps/myapp/builder", 200, `{"builder":"","default":"pier/builder:latest"}`)
	mustOK(t, e.run("", "buildpacks:unset-builder", "-a", "myapp"))
	if b := api.last(t).Body; b != `{"builder":""}`+"\n" {
		t.Fatalf("body %q", b)
	}
	n := len(api.requests())
	mustFail(t, e.run("", "buildpacks:set-builder", "Heroku/Builder", "-a", "myapp"), "must be lowercase")
	mustFail(t, e.run("", "buildpacks:set-builder", "-a", "myapp"), "accepts 1 arg")
	if len(api.requests()) != n {
		t.Fatal("a request was sent for a mistaken command line")
	}
}
