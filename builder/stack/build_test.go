package stack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildpacks/pack/pkg/cache"
	"github.com/buildpacks/pack/pkg/client"
	"github.com/buildpacks/pack/pkg/image"
	"github.com/buildpacks/pack/pkg/logging"
	"github.com/docker/docker/api/types/container"
	dockerimage "github.com/docker/docker/api/types/image"
	docker "github.com/docker/docker/client"

	"github.com/pierpaas/pier/internal/testenv"
)

// TestPackBuildSamples builds the host strategy's samples with pack's Go
// library on Pier's builder, as the "pack" strategy will, and serves a
// request from each resulting image. The Go sample is built twice: the
// second build reuses pack's cache volume.
func TestPackBuildSamples(t *testing.T) {
	builder := testenv.BuilderImage(t)
	cli := testenv.Docker(t)
	for _, c := range []struct {
		sample, body string
		builds       int
	}{
		{"go-hello", "hello from go", 2},
		{"node-hello", "hello", 1},
		{"python-hello", "hello from python", 1},
	} {
		t.Run(c.sample, func(t *testing.T) {
			img := "pier-test/" + c.sample + ":" + randomHex()
			vol := strings.ReplaceAll(strings.TrimPrefix(img, "pier-test/"), ":", "-")
			caches := cache.CacheOpts{
				Build:  cache.CacheInfo{Format: cache.CacheVolume, Source: "pier-test-" + vol + "-build"},
				Launch: cache.CacheInfo{Format: cache.CacheVolume, Source: "pier-test-" + vol + "-launch"},
			}
			t.Cleanup(func() {
				ctx := context.Background()
				cli.ImageRemove(ctx, img, dockerimage.RemoveOptions{Force: true, PruneChildren: true})
				cli.VolumeRemove(ctx, caches.Build.Source, true)
				cli.VolumeRemove(ctx, caches.Launch.Source, true)
			})
			for i := 1; i <= c.builds; i++ {
				start := time.Now()
				packBuild(t, cli, builder, img, filepath.Join("..", "host", "testdata", c.sample), caches)
				t.Logf("pack build %s #%d (%s): %s", c.sample, i, map[bool]string{true: "cold", false: "warm"}[i == 1],
					time.Since(start).Round(100*time.Millisecond))
			}
			serve(t, cli, img, c.body)
		})
	}
}

func packBuild(t *testing.T, cli *docker.Client, builder, img, app string, caches cache.CacheOpts) {
	t.Helper()
	var log bytes.Buffer
	pack, err := client.NewClient(client.WithLogger(logging.NewLogWithWriters(&log, &log)), client.WithDockerClient(cli))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err = pack.Build(ctx, client.BuildOptions{
		Image:           img,
		Builder:         builder,
		AppPath:         app,
		TrustBuilder:    func(string) bool { return true },
		PullPolicy:      image.PullNever,
		ContainerConfig: client.ContainerConfig{Network: "host"},
		Cache:           caches,
		// The lifecycle exports to the daemon the tests use (DOCKER_HOST),
		// not whatever listens on /var/run/docker.sock.
		DockerHost: cli.DaemonHost(),
	})
	if err != nil {
		t.Fatalf("pack build %s: %v\n%s", app, err, log.String())
	}
	if testing.Verbose() {
		t.Logf("pack build %s:\n%s", app, log.String())
	}
}

// serve starts img's web process on a free loopback port and checks that
// GET / answers 200 with body.
func serve(t *testing.T, cli *docker.Client, img, body string) {
	t.Helper()
	ctx := context.Background()
	port := freePort(t)
	c, err := cli.ContainerCreate(ctx, &container.Config{
		Image:      img,
		Entrypoint: []string{"/cnb/process/web"},
		Env:        []string{fmt.Sprintf("PORT=%d", port)},
	}, &container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), body) {
				t.Fatalf("GET %s: %d %q, want 200 with %q", url, resp.StatusCode, b, body)
			}
			return
		}
		if time.Now().After(deadline) {
			logs, _ := cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
			var out bytes.Buffer
			if logs != nil {
				io.Copy(&out, logs)
				logs.Close()
			}
			t.Fatalf("GET %s: %v (the process's output:\n%s)", url, err, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
