package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pierpaas/pier"
)

// tailLines is how much of a failed container's output Apply's error shows.
const tailLines = 20

// cleanupTimeout bounds removing containers when the caller's ctx is over.
const cleanupTimeout = 30 * time.Second

// boot creates and starts the planned containers and waits until every one
// is up. If one is not, it removes them all and says why: an error of code
// pier.EROLLOUT when a container did not come up, any other when the daemon
// failed or ctx ended.
func (s *Scheduler) boot(ctx context.Context, a *appState, version int, plans []plan) ([]*ctr, error) {
	if len(plans) == 0 {
		return nil, nil
	}
	var started []*ctr
	fail := func(err error) ([]*ctr, error) {
		s.discard(a, started)
		return nil, err
	}
	for _, p := range plans {
		c, err := s.createCtr(ctx, a, p)
		if err != nil {
			return fail(err)
		}
		started = append(started, c)
	}
	for _, c := range started {
		if err := s.cli.ContainerStart(ctx, c.id, container.StartOptions{}); err != nil {
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			if client.IsErrConnectionFailed(err) {
				return fail(daemonError(err, "starting %s", c.name))
			}
			// The daemon could not run the process at all: a wrong
			// entrypoint, a missing binary.
			msg := fmt.Sprintf("v%d did not come up: %s could not be started: %s; %s", version, c.procName(), clipN(err.Error(), 500), s.keeps(a))
			return fail(pier.Errorf(pier.EROLLOUT, "%s", msg))
		}
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   *ctr
		why string
	}
	results := make(chan result, len(started))
	var wg sync.WaitGroup
	for _, c := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			why := s.waitUp(wctx, c)
			if why != "" {
				cancel() // one failed: the deploy fails, stop waiting for the rest
			}
			results <- result{c, why}
		}()
	}
	wg.Wait()
	close(results)
	var failed *ctr
	var why string
	for r := range results {
		if r.why != "" && r.why != errCancelled && failed == nil {
			failed, why = r.c, r.why
		}
	}
	if failed == nil && ctx.Err() != nil {
		s.log.Warn("deploy abandoned", "app", a.name, "release", version, "err", ctx.Err())
		return fail(fmt.Errorf("deploy of v%d abandoned (%s): %w", version, s.keeps(a), ctx.Err()))
	}
	if failed == nil {
		return started, nil
	}
	msg := fmt.Sprintf("v%d did not come up: %s %s; %s", version, failed.procName(), why, s.keeps(a))
	if out := s.logTail(failed.id, tailLines); out != "" {
		msg += "\nlast output of " + failed.procName() + ":\n  " + strings.ReplaceAll(out, "\n", "\n  ")
	}
	s.log.Warn("release did not come up", "app", a.name, "release", version, "process", failed.procName(), "why", why)
	return fail(pier.Errorf(pier.EROLLOUT, "%s", msg))
}

// createCtr creates the container of p on a free port and registers it as
// pending.
func (s *Scheduler) createCtr(ctx context.Context, a *appState, p plan) (*ctr, error) {
	port, err := s.ports.get()
	if err != nil {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "cannot start %s.%d of %s: %s", p.typ, p.index, a.name, err)
	}
	cfg, hc := p.create(port)
	cfg.Labels[LabelInstance] = s.cfg.Instance
	name := containerName(a.name, p.typ, p.index, p.release)
	resp, err := s.cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		s.ports.put(port)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, daemonError(err, "creating container %s", name)
	}
	c := &ctr{id: resp.ID, name: name, app: a.name, typ: p.typ, index: p.index, release: p.release, port: port, hash: p.hash, booting: true}
	s.mu.Lock()
	s.byID[c.id] = c
	a.pending[c] = struct{}{}
	s.mu.Unlock()
	return c, nil
}

const errCancelled = "cancelled"

// waitUp waits until a booting container is up: a web process accepting
// connections on its port, any other still running after UpAfter, in
// both cases without having died on the way. It returns "" once it is up,
// or why not.
func (s *Scheduler) waitUp(ctx context.Context, c *ctr) string {
	deadline := time.Now().Add(s.cfg.StartTimeout)
	upAt := time.Now().Add(s.cfg.UpAfter)
	delay := 5 * time.Millisecond
	lastInspect := time.Now()
	for {
		s.mu.Lock()
		died, exit := c.died, c.exit
		s.mu.Unlock()
		if died > 0 {
			return "crashed on boot: " + exit
		}
		var up bool
		if c.typ == webType {
			up = dial(c.addr())
		} else {
			up = !time.Now().Before(upAt)
		}
		// The daemon's word decides: an event may be late, or lost.
		if up || time.Since(lastInspect) > time.Second {
			lastInspect = time.Now()
			if why := s.crashed(ctx, c); why != "" {
				return why
			}
			if up {
				s.mu.Lock()
				c.ready, c.running = true, true
				s.mu.Unlock()
				return ""
			}
		}
		if c.typ == webType && time.Now().After(deadline) {
			return fmt.Sprintf("did not accept connections on its port within %s", s.cfg.StartTimeout)
		}
		select {
		case <-ctx.Done():
			return errCancelled
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// crashed asks the daemon whether a booting container has died ("" if
// not).
func (s *Scheduler) crashed(ctx context.Context, c *ctr) string {
	info, err := s.cli.ContainerInspect(ctx, c.id)
	if err != nil {
		if ctx.Err() != nil {
			return errCancelled
		}
		return "could not be inspected: " + clipN(err.Error(), 200)
	}
	st := info.State
	switch {
	case st == nil:
		return ""
	case info.RestartCount > 0 || st.Restarting || (!st.Running && st.Status != container.StateCreated):
		return "crashed on boot: " + exitReason(strconv.Itoa(st.ExitCode))
	}
	return ""
}

// discard removes containers that did not make it (a failed deploy).
func (s *Scheduler) discard(a *appState, cs []*ctr) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range cs {
		s.mu.Lock()
		c.stopping = true
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.cli.ContainerRemove(ctx, c.id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
				s.log.Error("cannot remove container of a failed deploy", "container", c.name, "err", err)
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	for _, c := range cs {
		delete(a.pending, c)
		delete(s.byID, c.id)
		s.ports.put(c.port)
	}
	s.mu.Unlock()
}

// stopInBackground stops and removes replaced containers. It runs in the
// background: the new ones already serve, and a process ignoring SIGTERM
// must not hold a deploy for StopGrace. Web containers get drainDelay
// first, for requests the router sent just before the switch.
func (s *Scheduler) stopInBackground(a *appState, cs []*ctr) {
	if len(cs) == 0 {
		return
	}
	a.stops.Add(1)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer a.stops.Done()
		for _, c := range cs {
			if c.typ == webType {
				time.Sleep(drainDelay)
				break
			}
		}
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.stopRemove(c.id, c.name)
				s.mu.Lock()
				delete(a.stopping, c)
				delete(s.byID, c.id)
				s.ports.put(c.port)
				s.mu.Unlock()
			}()
		}
		wg.Wait()
	}()
}

// stopRemove stops a container (SIGTERM, SIGKILL after StopGrace) and
// removes it. Errors are logged: the next Apply finds what is left.
func (s *Scheduler) stopRemove(id, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopGrace+cleanupTimeout)
	defer cancel()
	grace := graceSeconds(s.cfg.StopGrace)
	err := s.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &grace})
	if err == nil || client.IsErrNotFound(err) {
		err = s.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	}
	if err != nil && !client.IsErrNotFound(err) {
		s.log.Error("cannot stop and remove container", "container", name, "err", err)
	}
}

// removeInBackground removes a leftover container (a one-off whose
// session is gone).
func (s *Scheduler) removeInBackground(id, name string) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := s.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			s.log.Error("cannot remove leftover container", "container", name, "err", err)
		}
	}()
}

// logTail is the last n lines a container wrote, "" if none could be read.
func (s *Scheduler) logTail(id string, n int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := s.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var buf bytes.Buffer
	w := &limitWriter{w: &buf, n: 16 << 10}
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil && !errors.Is(err, errLimit) {
		s.log.Debug("reading a container's log", "container", id, "err", err)
	}
	return strings.TrimRight(buf.String(), "\n")
}

var errLimit = errors.New("limit reached")

// limitWriter keeps the first n bytes written to it.
type limitWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errLimit
	}
	if len(p) > l.n {
		l.w.Write(p[:l.n])
		l.n = 0
		return 0, errLimit
	}
	l.n -= len(p)
	return l.w.Write(p)
}
