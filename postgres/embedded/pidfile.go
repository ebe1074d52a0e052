package embedded

// The postmaster of a data dir, as its postmaster.pid tells: whether one
// runs, and adopting it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runningPID reports the postmaster running on c.Dir, if any, from
// postmaster.pid. A stale file (its pid dead or reused by another program,
// typically after a reboot) is not a running server; postgres itself would
// refuse to start over a reused pid, so the stale file is removed.
func (c *Cluster) runningPID() (int, bool) {
	lines := c.pidFile()
	if len(lines) == 0 {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if err != nil || filepath.Base(string(argv0)) == "postgres" {
			return pid, true
		}
		os.Remove(filepath.Join(c.Dir, "postmaster.pid"))
	}
	return 0, false
}

func (c *Cluster) pidFile() []string {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	return strings.Split(string(b), "\n")
}

// adopt uses a postmaster that is already running on c.Dir (a previous
// `make run` left it up): it takes the port and socket dir it actually uses,
// and waits until it accepts connections.
func (c *Cluster) adopt(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		// postmaster.pid lines: pid, data dir, start time, port, socket dir,
		// listen address, shmem key, status.
		lines := c.pidFile()
		if len(lines) >= 8 {
			if port, err := strconv.Atoi(strings.TrimSpace(lines[3])); err == nil {
				c.Port = port
			}
			if dir := strings.TrimSpace(lines[4]); dir != "" {
				c.SocketDir = dir
			}
			switch strings.TrimSpace(lines[7]) {
			case "ready":
				return nil
			case "stopping":
				return fmt.Errorf("postmaster (pid %d) is shutting down; start again once it has stopped", pid)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postmaster (pid %d) already running but not ready: %w\nserver log (%s):\n%s", pid, ctx.Err(), c.LogFile, tail(c.LogFile, 0, 4096))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
