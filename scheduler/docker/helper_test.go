package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type dockerClient = *client.Client

// testImages are the images every test uses, built once per test run
// from testdata/server: cnb is CNB-shaped (/cnb/process/<type>, a
// launcher, USER 1000), plain is a FROM scratch image with an entrypoint,
// no USER, and a stand-in /bin/sh.
type testImages struct{ cnb, plain string }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// buildImages builds the test images and removes them when t ends.
func buildImages(t *testing.T, cli *client.Client) testImages {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/server")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test server: %v\n%s", err, out)
	}
	server, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tag := randHex(4)
	imgs := testImages{cnb: "pier-test/cnb:" + tag, plain: "pier-test/plain:" + tag}
	links := map[string]string{"bin/sh": "/server"}
	buildImage(t, cli, imgs.plain, "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/server\"]\n", server, links)
	links = map[string]string{
		"cnb/process/web":        "/server",
		"cnb/process/worker":     "/server",
		"cnb/lifecycle/launcher": "/server",
	}
	buildImage(t, cli, imgs.cnb, "FROM scratch\nCOPY rootfs/ /\nUSER 1000:1000\n", server, links)
	return imgs
}

func buildImage(t *testing.T, cli *client.Client, ref, dockerfile string, server []byte, links map[string]string) {
	t.Helper()
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	add := func(h *tar.Header, body []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}, []byte(dockerfile))
	add(&tar.Header{Name: "rootfs/server", Mode: 0o755, Size: int64(len(server))}, server)
	dirs := map[string]bool{}
	for name, target := range links {
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				add(&tar.Header{Name: "rootfs/" + d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
			}
		}
		add(&tar.Header{Name: "rootfs/" + name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}, nil)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Version: build.BuilderV1, Dockerfile: "Dockerfile",
	})
	if err != nil {
		t.Fatalf("building %s: %v", ref, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var log strings.Builder
	for {
		var m struct{ Stream, Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("building %s: %v", ref, err)
		}
		log.WriteString(m.Stream)
		if m.Error != "" {
			t.Fatalf("building %s: %s\n%s", ref, m.Error, log.String())
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("removing image %s: %v", ref, err)
		}
	})
}

// newScheduler returns a scheduler with short timeouts, shut down when t
// ends (its containers are removed by cleanupApp).
// testInstance keeps this test binary's containers apart from those of
// any other Pier on the daemon (other tests, a pierd).
var testInstance = "test-" + randHex(4)

func newScheduler(t *testing.T, cli *client.Client) *Scheduler {
	t.Helper()
	return newInstance(t, cli, testInstance)
}

func newInstance(t *testing.T, cli *client.Client, instance string) *Scheduler {
	t.Helper()
	s, err := New(Config{
		Instance:     instance,
		Client:       cli,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		StartTimeout: 4 * time.Second,
		StopGrace:    3 * time.Second,
		UpAfter:      300 * time.Millisecond,
		// A range of this package's own: cmd/pierd's tests run docker
		// schedulers in other processes at the same time, on the default
		// range, and a port one of them has just chosen is still free
		// until its container binds it.
		PortRange: [2]int{25100, 25999},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// testWriter sends the scheduler's log to the test's, while it runs.
type testWriter struct{ t *testing.T }

var logMu sync.Mutex

func (w testWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	defer func() { recover() }() // a log line after the test ended
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// cleanupApp removes every container of app when t ends, whatever the
// test did.
func cleanupApp(t *testing.T, cli *client.Client, app string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: managedFilter("", app)})
		if err != nil {
			t.Errorf("listing containers of %s: %v", app, err)
			return
		}
		for _, c := range list {
			if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
				t.Errorf("removing %s: %v", c.ID, err)
			}
		}
	})
}

func deployment(app string, version int, img string, strategy string, types map[string]string, f pier.Formation, cfg pier.Config) pier.Deployment {
	return pier.Deployment{
		App: app,
		Release: pier.Release{
			App: app, Version: version, Config: cfg,
			Build: &pier.Build{App: app, Strategy: strategy, Image: img, ProcessTypes: types, Status: pier.BuildSucceeded},
		},
		Formation: f,
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func apply(t *testing.T, s *Scheduler, d pier.Deployment) {
	t.Helper()
	if err := s.Apply(ctxT(t, time.Minute), d); err != nil {
		t.Fatalf("Apply v%d %s: %v", d.Release.Version, d.Formation, err)
	}
}

// containers returns the app's process containers by "type.index@vN"
// (a second one of the same, such as a replaced one being stopped, gets
// "#2").
func containers(t *testing.T, cli *client.Client, app string) map[string]container.Summary {
	t.Helper()
	list, err := cli.ContainerList(ctxT(t, 10*time.Second), container.ListOptions{All: true, Filters: managedFilter("", app)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]container.Summary{}
	for _, c := range list {
		key := fmt.Sprintf("%s.%s@v%s", c.Labels[LabelType], c.Labels[LabelIndex], c.Labels[LabelRelease])
		for n := 2; out[key].ID != ""; n++ {
			key = fmt.Sprintf("%s.%s@v%s#%d", c.Labels[LabelType], c.Labels[LabelIndex], c.Labels[LabelRelease], n)
		}
		out[key] = c
	}
	return out
}

// ids is the set of container ids of the app.
func ids(t *testing.T, cli *client.Client, app string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, c := range containers(t, cli, app) {
		out[k] = c.ID
	}
	return out
}

// eventually retries cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitContainers waits until the app has exactly the containers named
// (type.index@vN): replaced ones are stopped in the background.
func waitContainers(t *testing.T, cli *client.Client, app string, want ...string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := ids(t, cli, app)
		ok := len(got) == len(want)
		for _, w := range want {
			ok = ok && got[w] != ""
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers of %s are %v, want %v", app, sortedKeys(got), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(addr, path string) (int, string, error) {
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		return 0, "", fmt.Errorf("refusing to send traffic to %s: tests stay on loopback", addr)
	}
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

type info struct {
	UID int      `json:"uid"`
	GID int      `json:"gid"`
	Env []string `json:"env"`
}

func getInfo(t *testing.T, addr string) info {
	t.Helper()
	code, body, err := get(addr, "/info")
	if err != nil || code != 200 {
		t.Fatalf("GET %s/info: %d %v", addr, code, err)
	}
	var i info
	if err := json.Unmarshal([]byte(body), &i); err != nil {
		t.Fatal(err)
	}
	return i
}

func (i info) env(key string) string {
	for _, kv := range i.Env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}
