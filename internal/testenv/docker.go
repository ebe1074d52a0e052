package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// DockerFlags are the flags a Docker daemon started for the tests (here or
// by .ci/run) gets: no bridge and no iptables rules, so that every
// container runs with host networking and all traffic stays on loopback.
var DockerFlags = []string{"--bridge=none", "--iptables=false", "--ip6tables=false"}

var (
	dockerOnce sync.Once
	dockerCli  *client.Client
	dockerSkip string
)

// Docker returns a client of a running Docker daemon (DOCKER_HOST, else
// /var/run/docker.sock). When none answers and this process is root with
// dockerd on PATH, it starts one with DockerFlags, detached and shared by
// every test binary (its log in ~/.cache/pier/dockerd.log), and leaves it
// running like the system service it stands for.
//
// Without a daemon the test is skipped with a loud message, except under
// CI=true, where that is a failure. -short skips it too.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	if testing.Short() && !isCI() {
		t.Skip("Docker tier: skipped by -short")
	}
	dockerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		dockerCli, dockerSkip = connectDocker(ctx)
	})
	if dockerSkip != "" {
		if isCI() {
			t.Fatalf("no Docker daemon: %s (CI=true: not skipping)", dockerSkip)
		}
		t.Skipf("\n\n*** SKIPPING the Docker tier: %s ***\n\n", dockerSkip)
	}
	return dockerCli
}

func connectDocker(ctx context.Context) (*client.Client, string) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, "Docker client: " + err.Error()
	}
	if _, err := cli.Ping(ctx); err == nil {
		return cli, ""
	} else if os.Getenv("DOCKER_HOST") != "" {
		return nil, fmt.Sprintf("DOCKER_HOST=%s does not answer: %v", os.Getenv("DOCKER_HOST"), err)
	}
	dockerd, lerr := exec.LookPath("dockerd")
	if lerr != nil {
		return nil, "no daemon at /var/run/docker.sock and no dockerd to start: apt-get install docker.io"
	}
	if os.Geteuid() != 0 {
		return nil, "no daemon at /var/run/docker.sock, and starting dockerd needs root: start it with `dockerd --bridge=none --iptables=false`"
	}
	if err := startDockerd(ctx, dockerd, cli); err != nil {
		return nil, err.Error()
	}
	return cli, ""
}

// startDockerd starts the shared daemon unless another test binary, holding
// the lock, already did; then waits for it to answer.
func startDockerd(ctx context.Context, dockerd string, cli *client.Client) error {
	home, err := os.UserHomeDir()
	if err != nil {
		return err
	}
	dir := filepath.Join(home, ".cache", "pier")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "dockerd.lock"), func() {})
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := cli.Ping(ctx); err == nil {
		return nil
	}
	logPath := filepath.Join(dir, "dockerd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(dockerd, DockerFlags...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: it outlives this test binary, and no signal meant
	// for the tests reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting dockerd: %w", err)
	}
	go cmd.Wait()
	fmt.Fprintf(os.Stderr, "testenv: started dockerd %v (pid %d, log %s)\n", DockerFlags, cmd.Process.Pid, logPath)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockerd did not answer within the deadline (%v); its log: %s\n%s", err, logPath, tail(logPath, 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
