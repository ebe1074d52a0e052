package stack_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/buildpacks/lifecycle/api"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pierpaas/pier/builder/stack"
	"github.com/pierpaas/pier/internal/testenv"
)

func TestLifecycleArchive(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"lifecycle", "launcher"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("binary "+f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "lifecycle.tgz")
	if err := stack.WriteLifecycleArchive(dst, dir, "0.20.11"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			t.Errorf("%s: type %c, want a regular file", h.Name, h.Typeflag)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	for _, p := range stack.Phases {
		if files["lifecycle/"+p] != "binary lifecycle" {
			t.Errorf("lifecycle/%s = %q, want the lifecycle binary", p, files["lifecycle/"+p])
		}
	}
	if files["lifecycle/launcher"] != "binary launcher" {
		t.Errorf("lifecycle/launcher = %q", files["lifecycle/launcher"])
	}
	var desc struct {
		APIs struct {
			Buildpack, Platform struct{ Supported, Deprecated []string }
		}
		Lifecycle struct{ Version string }
	}
	if _, err := toml.Decode(files["lifecycle.toml"], &desc); err != nil {
		t.Fatalf("lifecycle.toml: %v\n%s", err, files["lifecycle.toml"])
	}
	if desc.Lifecycle.Version != "0.20.11" {
		t.Errorf("lifecycle version %q", desc.Lifecycle.Version)
	}
	// The module's own lists: platform 0.7–0.14, buildpack 0.7–0.11 for v0.20.11.
	for _, c := range []struct {
		got  []string
		want api.List
	}{{desc.APIs.Platform.Supported, api.Platform.Supported}, {desc.APIs.Buildpack.Supported, api.Buildpack.Supported}} {
		var want []string
		for _, v := range c.want {
			want = append(want, v.String())
		}
		if !slices.Equal(c.got, want) || !slices.Contains(c.got, "0.10") {
			t.Errorf("supported APIs %v, want %v", c.got, want)
		}
	}
	if !slices.Contains(desc.APIs.Platform.Supported, "0.13") {
		t.Errorf("platform API 0.13 (Pier's) not supported: %v", desc.APIs.Platform.Supported)
	}
}

func TestRootfsKey(t *testing.T) {
	a := stack.Rootfs{Suite: "bookworm", Variant: "minbase", Packages: []string{"python3", "ca-certificates"}}
	b := stack.Rootfs{Suite: "bookworm", Variant: "minbase", Packages: []string{"ca-certificates", "python3"}}
	c := stack.Rootfs{Suite: "bookworm", Variant: "minbase", Packages: []string{"ca-certificates"}}
	if a.Key() != b.Key() {
		t.Errorf("package order changes the key: %s, %s", a.Key(), b.Key())
	}
	if a.Key() == c.Key() {
		t.Errorf("different packages, same key %s", a.Key())
	}
}

// TestStackImages checks the stack images the way the platform spec and
// the buildpacks need them: user, env, labels, and the toolchains working
// as the CNB user.
func TestStackImages(t *testing.T) {
	imgs := testenv.BuilderImages(t)
	cli := testenv.Docker(t)
	ctx := context.Background()
	for _, name := range []string{imgs.Run, imgs.Build} {
		info, err := cli.ImageInspect(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.User != "1000:1000" {
			t.Errorf("%s: USER %q, want 1000:1000", name, info.Config.User)
		}
		for _, e := range []string{"CNB_USER_ID=1000", "CNB_GROUP_ID=1000"} {
			if !slices.Contains(info.Config.Env, e) {
				t.Errorf("%s: env %v lacks %s", name, info.Config.Env, e)
			}
		}
		if got := info.Config.Labels["io.buildpacks.stack.id"]; got != stack.StackID {
			t.Errorf("%s: stack id %q, want %q", name, got, stack.StackID)
		}
	}
	// As the CNB user: who it is, and every tool a buildpack or an app
	// process calls.
	common := `set -e; id; echo "home=$HOME"; test -w "$HOME"; node --version; npm --version; python3 --version; ` +
		`test -f /etc/ssl/certs/ca-certificates.crt`
	out := runIn(t, cli, imgs.Run, common)
	for _, want := range []string{"uid=1000(cnb) gid=1000(cnb)", "home=/home/cnb", "v20.", "Python 3.11"} {
		if !strings.Contains(out, want) {
			t.Errorf("run image: no %q in\n%s", want, out)
		}
	}
	out = runIn(t, cli, imgs.Build, common+`; go version; python3 -m venv /tmp/venv; /tmp/venv/bin/python -m pip --version`)
	for _, want := range []string{"uid=1000(cnb)", "go version go1.", "pip "} {
		if !strings.Contains(out, want) {
			t.Errorf("build image: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(runIn(t, cli, imgs.Run, "command -v go || echo none"), "/go") {
		t.Errorf("the run image has the Go toolchain: only the build image should")
	}
}

// runIn runs a shell command in a container of img (host network, removed
// after) and returns its output; a non-zero exit fails the test.
func runIn(t *testing.T, cli *client.Client, img, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"/bin/sh", "-c", script}},
		&container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitC, errC := cli.ContainerWait(ctx, c.ID, container.WaitConditionNotRunning)
	var code int64
	select {
	case w := <-waitC:
		code = w.StatusCode
	case err := <-errC:
		t.Fatal(err)
	}
	logs, err := cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var out bytes.Buffer
	stdcopy.StdCopy(&out, &out, logs)
	if code != 0 {
		t.Fatalf("%s: %q exited %d:\n%s", img, script, code, out.String())
	}
	return out.String()
}
