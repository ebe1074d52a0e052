package kube

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier/builder/tarball"
)

func tarballOf(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "src-*.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Write(f, dir); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f.Name()
}

// TestSourceServedOnlyWithItsToken: the source endpoint serves a build's
// tarball to the holder of that build's token, and to nobody once the
// build is over or its token expired.
func TestSourceServedOnlyWithItsToken(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "Procfile"), []byte("web: bin/server\n"), 0o644)
	os.WriteFile(filepath.Join(src, "bin", "server"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("bin/server", filepath.Join(src, "run"))
	os.MkdirAll(filepath.Join(src, ".git"), 0o755)
	os.WriteFile(filepath.Join(src, ".git", "HEAD"), []byte("ref\n"), 0o644)

	sources := NewSources()
	srv := httptest.NewServer(sources)
	defer srv.Close()
	tarball := tarballOf(t, src)
	token, remove := sources.Add("b1", tarball, time.Hour)
	other, removeOther := sources.Add("b2", tarballOf(t, t.TempDir()), time.Hour)
	defer removeOther()
	url := srv.URL + SourcePathPrefix + "b1/source"

	get := func(url, token string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, c := range map[string]struct{ url, token string }{
		"no token":            {url, ""},
		"wrong token":         {url, strings.Repeat("0", 64)},
		"another build's":     {url, other},
		"unknown build":       {srv.URL + SourcePathPrefix + "nope/source", token},
		"path beyond /source": {srv.URL + SourcePathPrefix + "b1/source/x", token},
	} {
		if code := get(c.url, c.token); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", name, code)
		}
	}
	if code := get(url, token); code != http.StatusOK {
		t.Fatalf("with its token: %d", code)
	}

	dst := t.TempDir()
	if err := Fetch(context.Background(), http.DefaultClient, url, token, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "Procfile")); err != nil || string(b) != "web: bin/server\n" {
		t.Fatalf("Procfile: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "bin", "server")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("bin/server lost its exec bit: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "run")); err != nil || l != "bin/server" {
		t.Fatalf("symlink: %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); !os.IsNotExist(err) {
		t.Fatalf(".git was sent: %v", err)
	}

	// The build ended: the token no longer works.
	remove()
	if code := get(url, token); code != http.StatusNotFound {
		t.Fatalf("after the build: %d, want 404", code)
	}
	if err := Fetch(context.Background(), http.DefaultClient, url, token, t.TempDir()); err == nil {
		t.Fatal("fetched after the build ended")
	}

	// A token also expires by itself.
	now := time.Now()
	sources.now = func() time.Time { return now }
	token3, _ := sources.Add("b3", tarball, time.Minute)
	sources.now = func() time.Time { return now.Add(2 * time.Minute) }
	if code := get(srv.URL+SourcePathPrefix+"b3/source", token3); code != http.StatusNotFound {
		t.Fatalf("expired token: %d, want 404", code)
	}
}
