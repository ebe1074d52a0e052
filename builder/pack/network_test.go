package pack_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/pack"
	"github.com/pierpaas/pier/internal/testenv"
)

// Finding 7 of issue 14: Dockerfile RUN steps ran as root in the host's
// network namespace, so a push could reach the host's loopback services
// (the database, the registry, pierd's internal listener) and sniff them.
// Here a RUN step tries to connect to a listener of the test on
// 127.0.0.1: the listener must get no connection, and the step must see
// no interface but its own loopback (none of the host's).
func TestBuildCannotReachHostLoopback(t *testing.T) {
	cli := testenv.Docker(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var reached atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			c.Close()
		}
	}()

	src := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(src, "probe"), "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY probe /probe\nRUN [\"/probe\", %q]\n", ln.Addr().String())
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	// The registry is nowhere: the build runs, its push fails after.
	s, err := pack.New(pack.Config{Docker: cli, Registry: pack.Registry{Host: "127.0.0.1:1"}, DefaultBuilder: "pier/builder:latest"})
	if err != nil {
		t.Fatal(err)
	}
	log := &testenv.Buffer{}
	s.Build(context.Background(), pier.BuildRequest{App: "netprobe", Commit: "abc", SourceDir: src, Log: log})
	out := log.String()
	if !strings.Contains(out, "probe: ") {
		t.Fatalf("the RUN step did not run:\n%s", out)
	}
	if n := reached.Load(); n != 0 || strings.Contains(out, "probe: connected") {
		t.Fatalf("a RUN step reached the host's loopback (%d connections):\n%s", n, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), "probe: interface "); ok && name != "lo" {
			t.Errorf("a RUN step sees the interface %s: it is not in a network of its own", name)
		}
	}
}

// The host's network, or another container's, is refused as a build
// network.
func TestBuildNetworkHostRefused(t *testing.T) {
	cli := testenv.Docker(t)
	for _, n := range []string{"host", "container:pierd"} {
		_, err := pack.New(pack.Config{Docker: cli, Registry: pack.Registry{Host: "127.0.0.1:1"}, DefaultBuilder: "pier/builder:latest", BuildNetwork: n})
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("build network %s: %v", n, err)
		}
	}
}
