package buildpacks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestParseProcfile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "Procfile")
	os.WriteFile(p, []byte("# comment\nweb: bundle exec puma -p $PORT\n\nworker:python w.py\n"), 0o644)
	got, err := ParseProcfile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got["web"] != "bundle exec puma -p $PORT" || got["worker"] != "python w.py" || len(got) != 2 {
		t.Errorf("got %v", got)
	}
	os.WriteFile(p, []byte("not a process line\n"), 0o644)
	if _, err := ParseProcfile(p); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("err = %v, want one naming line 1", err)
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	exe, _ := os.Executable()
	if err := Install(dir, exe); err != nil {
		t.Fatal(err)
	}
	var order struct {
		Order []struct {
			Group []struct {
				ID       string `toml:"id"`
				Optional bool   `toml:"optional"`
			} `toml:"group"`
		} `toml:"order"`
	}
	if _, err := toml.DecodeFile(filepath.Join(dir, "order.toml"), &order); err != nil {
		t.Fatal(err)
	}
	if len(order.Order) != len(All) {
		t.Errorf("order.toml has %d groups, want %d", len(order.Order), len(All))
	}
	for _, b := range All {
		var d struct {
			API       string `toml:"api"`
			Buildpack struct {
				ID string `toml:"id"`
			} `toml:"buildpack"`
		}
		bp := filepath.Join(dir, escapedID(b.ID), Version)
		if _, err := toml.DecodeFile(filepath.Join(bp, "buildpack.toml"), &d); err != nil {
			t.Fatal(err)
		}
		if d.API != API || d.Buildpack.ID != b.ID {
			t.Errorf("%s: buildpack.toml says %+v", b.ID, d)
		}
		for _, ph := range []string{"detect", "build"} {
			if fi, err := os.Stat(filepath.Join(bp, "bin", ph)); err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("%s bin/%s not executable: %v", b.ID, ph, err)
			}
		}
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	for _, b := range All {
		if b.detect(dir) {
			t.Errorf("%s detects an empty dir", b.ID)
		}
	}
	os.Mkdir(filepath.Join(dir, "public"), 0o755)
	if !detectStatic(dir) {
		t.Error("public/ is not a static site")
	}
}

func TestGoWebCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/shop/v2\n\ngo 1.22\n"), 0o644)
	if got := goWebCommand(dir, []string{"migrate", "shop"}); got != "shop" {
		t.Errorf("got %q, want the module's command", got)
	}
	if got := goWebCommand(dir, []string{"a", "b"}); got != "" {
		t.Errorf("got %q for an ambiguous pair", got)
	}
}
