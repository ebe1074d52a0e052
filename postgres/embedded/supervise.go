package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Supervisor restarts a cluster's postmaster when it dies. See Supervise.
type Supervisor struct {
	c      *Cluster
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// Restart backoff: the first attempt at once (crash recovery of a killed
// server takes about a second), then doubling up to restartBackoffMax.
const (
	restartBackoff    = 500 * time.Millisecond
	restartBackoffMax = 30 * time.Second
)

// Supervise watches the postmaster of the started cluster c. pg_ctl leaves
// it detached (its parent is PID 1), so pierd cannot wait for it as for a
// child: it waits on a pidfd instead. When the postmaster dies (the OOM
// killer, a kill -9), Supervise starts it again, retrying with backoff,
// and Postgres runs crash recovery from its WAL; pgxpool then reconnects by
// itself. It stops when ctx ends (pierd is stopping: nothing is started
// again from then on) or at Stop. Stop the Supervisor before Stopping the
// cluster, or it starts the cluster again.
func (c *Cluster) Supervise(ctx context.Context, log *slog.Logger) *Supervisor {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Supervisor{c: c, log: log, cancel: cancel, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

// Stop stops watching and waits until the Supervisor is done, so that it
// starts nothing after Stop returns. A restart under way is cut short.
func (s *Supervisor) Stop() {
	s.cancel()
	<-s.done
}

func (s *Supervisor) run(ctx context.Context) {
	defer close(s.done)
	for ctx.Err() == nil {
		pid, ok := s.c.runningPID()
		if !ok {
			s.restart(ctx, 0)
			continue
		}
		err := waitExit(ctx, pid)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Cannot wait on it (no pidfd): look again in a moment.
			s.log.Warn("embedded postgres: cannot watch the postmaster", "pid", pid, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		s.restart(ctx, pid)
	}
}

// restart starts the cluster again after its postmaster pid (0: unknown)
// died, until it is up or ctx ends.
func (s *Supervisor) restart(ctx context.Context, pid int) {
	start := time.Now()
	s.log.Error("embedded postgres: the postmaster is gone; starting it again (crash recovery)", "pid", pid, "dir", s.c.Dir)
	backoff := restartBackoff
	for attempt := 1; ctx.Err() == nil; attempt++ {
		s.c.clearLocks()
		var err error
		if !exists(filepath.Join(s.c.Dir, "PG_VERSION")) {
			// Start would initdb an empty cluster over a data dir that
			// vanished (an unmounted volume): never. Pier's state is in it.
			err = fmt.Errorf("the data directory %s is gone or unreadable; not creating a new one (restore it, or its volume)", s.c.Dir)
		} else {
			err = s.c.Start(ctx)
		}
		if err == nil {
			s.log.Warn("embedded postgres: started again", "took", time.Since(start).Round(time.Millisecond), "attempts", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Error("embedded postgres: starting it again failed; retrying", "err", err, "in", backoff)
		sleep(ctx, backoff)
		backoff = min(2*backoff, restartBackoffMax)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// clearLocks removes the lock files of a postmaster that is dead or a
// zombie: postmaster.pid in the data dir and the socket's lock file. A
// postmaster that has exited but that PID 1 has not reaped yet (seen taking
// about 3 s in containers) still answers kill(pid, 0), so a new postmaster
// takes it for alive and refuses to start until it is reaped. A lock file
// naming a live postgres process is left alone.
func (c *Cluster) clearLocks() {
	for _, path := range []string{
		filepath.Join(c.Dir, "postmaster.pid"),
		filepath.Join(c.SocketDir, fmt.Sprintf(".s.PGSQL.%d.lock", c.Port)),
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil || pid <= 0 || !postgresAlive(pid) {
			os.Remove(path)
		}
	}
}

// postgresAlive reports whether pid is a live (not zombie) postgres
// process. A process of another user may be unreadable: taken as alive.
func postgresAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if state, ok := procState(pid); ok && (state == 'Z' || state == 'X') {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return true
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return filepath.Base(string(argv0)) == "postgres"
}

// procState is the state letter of /proc/PID/stat (R, S, D, Z...).
func procState(pid int) (byte, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, false
	}
	return b[i+2], true
}
