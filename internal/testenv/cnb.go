package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CNBTools builds what the host build strategy needs: the CNB lifecycle and
// launcher (the version pinned in go.mod, cached in
// $HOME/.cache/pier/lifecycle-<version> across runs, since a cold build
// takes a minute) and Pier's buildpacks, installed fresh into
// buildpacksDir (they are code under test, never cached).
func CNBTools(buildpacksDir string) (lifecycleDir string, err error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/buildpacks/lifecycle").Output()
	if err != nil {
		return "", fmt.Errorf("go list lifecycle: %v", err)
	}
	version := strings.TrimSpace(string(out))
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	lc := filepath.Join(home, ".cache", "pier", "lifecycle-"+version)
	for _, cmd := range []string{"lifecycle", "launcher"} {
		if _, err := os.Stat(filepath.Join(lc, cmd)); err == nil {
			continue
		}
		if err := os.MkdirAll(lc, 0o755); err != nil {
			return "", err
		}
		// Test binaries of several packages may build this at once: each
		// writes its own file and renames it into place (same content).
		tmp := filepath.Join(lc, fmt.Sprintf("%s.%d.tmp", cmd, os.Getpid()))
		b := exec.Command("go", "build", "-trimpath", "-o", tmp, "github.com/buildpacks/lifecycle/cmd/"+cmd)
		b.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := b.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building the lifecycle's %s: %v\n%s", cmd, err, out)
		}
		if err := os.Rename(tmp, filepath.Join(lc, cmd)); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp("", "pier-buildpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	exe := filepath.Join(tmp, "pier-buildpack")
	b := exec.Command("go", "build", "-o", exe, "github.com/pierpaas/pier/buildpacks/cmd/pier-buildpack")
	b.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := b.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the buildpacks: %v\n%s", err, out)
	}
	if out, err := exec.Command(exe, "install", buildpacksDir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing the buildpacks: %v\n%s", err, out)
	}
	return lc, nil
}
