package main_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSamples is acceptance point 1 for the languages other than Go (which
// TestGitPush covers): each sample goes from `git push pier main` to an
// HTTP 200 through the router, detected by the buildpack named.
func TestSamples(t *testing.T) {
	skipShort(t)
	s := startStack(t)
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
