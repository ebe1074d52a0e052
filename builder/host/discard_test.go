package host_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/host"
)

// Discard removes a build dir of the store that nothing records, and
// nothing else: not the app's cache, not a path outside the store.
func TestDiscard(t *testing.T) {
	tools := t.TempDir()
	for _, f := range []string{"lifecycle/lifecycle", "lifecycle/launcher", "buildpacks/order.toml"} {
		p := filepath.Join(tools, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(t.TempDir(), "builds")
	s, err := host.New(host.Config{LifecycleDir: filepath.Join(tools, "lifecycle"), BuildpacksDir: filepath.Join(tools, "buildpacks"), WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	build := filepath.Join(work, "myapp", "20261207T000000Z-abcdef")
	cache := filepath.Join(work, "myapp", ".cache")
	outside := t.TempDir()
	for _, d := range []string{filepath.Join(build, "app"), cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{cache, filepath.Join(work, "myapp"), outside, filepath.Join(work, "myapp", "..", "..", filepath.Base(outside)), filepath.Join(build, "app")} {
		if err := s.Discard(&pier.BuildResult{Image: bad}); err == nil {
			t.Errorf("Discard(%s) did not refuse", bad)
		}
	}
	for _, kept := range []string{cache, outside, filepath.Join(build, "app")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
	if err := s.Discard(&pier.BuildResult{Image: build}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(build); !os.IsNotExist(err) {
		t.Fatalf("the build dir is still there: %v", err)
	}
}
