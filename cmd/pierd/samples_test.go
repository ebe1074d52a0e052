package main_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSamples is acceptance point 1 for the languages other than Go (which
// TestGitPush covers): each sample goes from `git push pier main` to an
// HTTP 200 through the router, detected by the buildpack named.
func TestSamples(t *testing.T) {
	skipShort(t)
	s := startStack(t, "PIER_METRICS_ADDR=127.0.0.1:0")
	samples := []struct {
		dir, app, detected, body string
		config                   []string
	}{
		// The Node sample's build script writes $GREETING into a file:
		// config vars reach the build.
		{"node-hello", "node-hello", "Node.js app detected", "hello from node, built with hi from the build", []string{"GREETING=hi from the build"}},
		{"python-hello", "python-hello", "Python app detected", "hello from python", nil},
		{"static-site", "static-site", "Static site detected", "<!doctype html><title>hi</title><p>hello from static</p>", nil},
		{"procfile-shell", "shell-app", "Procfile detected", "hello from the shell", nil},
	}
	for _, sm := range samples {
		t.Run(sm.dir, func(t *testing.T) {
			r := s.newRepo("../../builder/host/testdata/"+sm.dir, sm.app)
			if len(sm.config) > 0 {
				s.c.must("", append([]string{"config:set", "-a", sm.app}, sm.config...)...)
			}
			out := r.mustPush()
			if !strings.Contains(out, "-----> "+sm.detected) || !strings.Contains(out, "Released v") {
				t.Fatalf("push of %s:\n%s", sm.dir, out)
			}
			path := "/"
			if sm.dir == "procfile-shell" {
				path = "/hello.txt"
			}
			if got := s.body(sm.app, path); got != sm.body {
				t.Fatalf("%s serves %q, want %q", sm.app, got, sm.body)
			}
		})
	}

	// The router counted the requests by app and status, and logged them
	// (without their query strings).
	m := regexp.MustCompile(`Metrics at (http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(s.d.out.String())
	if m == nil {
		t.Fatalf("no metrics address in pierd's output:\n%s", s.d.out)
	}
	res, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metrics), `pier_router_requests_total{app="python-hello",code="200"} 1`) ||
		!strings.Contains(string(metrics), `pier_router_request_duration_seconds_count{app="node-hello"}`) {
		t.Fatalf("metrics:\n%s", metrics)
	}
	if !strings.Contains(s.d.out.String(), `msg=access component=router app=shell-app method=GET host=shell-app.pier.localhost`) {
		t.Fatalf("no access log line for shell-app in:\n%s", s.d.out)
	}

	// A destroyed app stops serving, and its repository goes with it.
	repo := filepath.Join(s.data, "repos", "shell-app.git")
	if _, err := os.Stat(repo); err != nil {
		t.Fatalf("no repository for shell-app: %v", err)
	}
	s.c.must("", "apps:destroy", "-a", "shell-app", "--confirm", "shell-app")
	// apps:destroy answers once the app is gone from Postgres; its
	// processes and repository follow.
	eventually(t, 30*time.Second, "the destroyed app's repository is removed and it answers 404", func() (bool, string) {
		_, serr := os.Stat(repo)
		code, _, err := s.get(http.DefaultClient, "shell-app", "/hello.txt")
		return os.IsNotExist(serr) && err == nil && code == 404, fmt.Sprintf("repo: %v; GET: %d %v", serr, code, err)
	})
	s.d.stop(t)
}
