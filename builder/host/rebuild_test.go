package host_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/host"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestRebuild: a build whose output is gone (a restore on a new machine)
// is built again into the very directory recorded for it, and serves; a
// directory that exists, or is not one of the store's, is refused.
func TestRebuild(t *testing.T) {
	heavy(t)
	s := newStrategy(t, 0)
	first, log, err := build(t, s, "go-again", "go-hello", nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	req := pier.BuildRequest{App: "go-again", Commit: "0123456789abcdef", SourceDir: filepath.Join("testdata", "go-hello")}
	if _, err := s.Rebuild(context.Background(), req, first.Image); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("rebuild over a build that exists: %v", err)
	}
	for _, dir := range []string{filepath.Join(filepath.Dir(s.WorkDir()), "elsewhere", "go-again", filepath.Base(first.Image)),
		filepath.Join(s.WorkDir(), "other-app", filepath.Base(first.Image)),
		filepath.Join(s.WorkDir(), "go-again", ".cache")} {
		if _, err := s.Rebuild(context.Background(), req, dir); err == nil || !strings.Contains(err.Error(), "not a build directory") {
			t.Errorf("rebuild into %s: %v", dir, err)
		}
	}
	if err := host.RemoveAll(first.Image); err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	req.Log = &out
	again, err := s.Rebuild(context.Background(), req, first.Image)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out.String())
	}
	if again.Image != first.Image || again.ProcessTypes["web"] != first.ProcessTypes["web"] {
		t.Errorf("rebuilt %+v, first %+v", again, first)
	}
	serve(t, again, "/", "hello from go")
}
