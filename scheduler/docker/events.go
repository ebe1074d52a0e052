package docker

import (
	"context"
	"net"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// watch follows the daemon's container events until Shutdown: a container
// that dies leaves the routes at once, and once Docker has restarted it
// (its restart policy), it is probed and comes back when ready. When the
// stream breaks (the daemon restarted), it reconnects and re-reads the
// state of every container it knows.
func (s *Scheduler) watch(ready chan struct{}) {
	defer s.bg.Done()
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", LabelManagedBy+"="+managedBy),
		filters.Arg("label", LabelInstance+"="+s.cfg.Instance),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionDestroy)),
	)
	delay := 100 * time.Millisecond
	first := true
	for {
		msgs, errs := s.cli.Events(s.ctx, events.ListOptions{Filters: f})
		if first {
			close(ready)
			first = false
		} else {
			s.resync()
		}
		err := s.follow(msgs, errs)
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("lost the Docker event stream: reconnecting", "err", err, "in", delay)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

func (s *Scheduler) follow(msgs <-chan events.Message, errs <-chan error) error {
	for {
		select {
		case m := <-msgs:
			s.event(m)
		case err := <-errs:
			return err
		}
	}
}

func (s *Scheduler) event(m events.Message) {
	s.mu.Lock()
	c := s.byID[m.Actor.ID]
	if c == nil {
		s.mu.Unlock()
		return
	}
	a := s.apps[c.app]
	switch m.Action {
	case events.ActionStart:
		c.running = true
		c.runSeq++
		seq := c.runSeq
		probe := !c.booting && !c.stopping
		s.mu.Unlock()
		if probe {
			s.startProbe(c, seq)
		}
	case events.ActionDie:
		serving := c.ready && c.typ == webType && a != nil && a.isCurrent(c)
		c.running = false
		c.ready = false
		c.died++
		c.exit = exitReason(m.Actor.Attributes["exitCode"])
		stopping := c.stopping
		s.mu.Unlock()
		if !stopping {
			s.log.Info("process died", "app", c.app, "process", c.procName(), "release", c.release, "why", c.exit)
		}
		if serving {
			s.notify()
		}
	case events.ActionDestroy:
		// Someone else removed it (docker rm -f): forget it, so that the
		// next Apply starts a new one.
		if c.stopping || c.booting || a == nil {
			s.mu.Unlock()
			return
		}
		serving := c.ready && c.typ == webType && a.isCurrent(c)
		a.drop(c)
		delete(s.byID, c.id)
		s.ports.put(c.port)
		s.mu.Unlock()
		s.log.Warn("container removed behind Pier's back", "app", c.app, "process", c.procName(), "container", c.name)
		if serving {
			s.notify()
		}
	default:
		s.mu.Unlock()
	}
}

func exitReason(code string) string {
	switch code {
	case "":
		return "exited"
	case "137":
		return "exit status 137 (killed: out of memory, or SIGKILL)"
	}
	return "exit status " + code
}

func (a *appState) isCurrent(c *ctr) bool {
	for _, x := range a.current {
		if x == c {
			return true
		}
	}
	return false
}

// drop takes c out of the app's current containers.
func (a *appState) drop(c *ctr) {
	out := a.current[:0]
	for _, x := range a.current {
		if x != c {
			out = append(out, x)
		}
	}
	a.current = out
}

// resync re-reads every known container after the event stream broke.
func (s *Scheduler) resync() {
	s.mu.Lock()
	all := make([]*ctr, 0, len(s.byID))
	for _, c := range s.byID {
		if !c.booting && !c.stopping {
			all = append(all, c)
		}
	}
	s.mu.Unlock()
	changed := false
	for _, c := range all {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		info, err := s.cli.ContainerInspect(ctx, c.id)
		cancel()
		running := err == nil && info.State != nil && info.State.Running
		if err != nil && !client.IsErrNotFound(err) {
			continue
		}
		s.mu.Lock()
		if c.running && !running {
			c.running, c.ready, changed = false, false, true
		}
		var seq int
		if running && !c.ready {
			c.running = true
			c.runSeq++
			seq = c.runSeq
		}
		s.mu.Unlock()
		if seq > 0 {
			s.startProbe(c, seq)
		}
	}
	if changed {
		s.notify()
	}
}

// startProbe marks run seq of c up once it is: a web process when it
// accepts a TCP connection on its port, any other once it has run for
// UpAfter. A web process that does not listen within StartTimeout is
// restarted. It ends when c dies, is stopped or started again.
func (s *Scheduler) startProbe(c *ctr, seq int) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if s.probe(s.ctx, c, seq) {
			s.setReady(c, seq)
			return
		}
		if s.ctx.Err() != nil || !s.sameRun(c, seq) {
			return
		}
		s.log.Warn("process did not accept connections in time: restarting it", "app", c.app, "process", c.procName(), "within", s.cfg.StartTimeout)
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StopGrace+30*time.Second)
		defer cancel()
		grace := graceSeconds(s.cfg.StopGrace)
		if err := s.cli.ContainerRestart(ctx, c.id, container.StopOptions{Timeout: &grace}); err != nil && !client.IsErrNotFound(err) {
			s.log.Error("cannot restart container", "app", c.app, "process", c.procName(), "err", err)
		}
	}()
}

func (s *Scheduler) sameRun(c *ctr, seq int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.runSeq == seq && c.running && !c.stopping
}

// probe waits until run seq of c is up; false if it ended first or a web
// process did not listen within StartTimeout.
func (s *Scheduler) probe(ctx context.Context, c *ctr, seq int) bool {
	if c.typ != webType {
		t := time.NewTimer(s.cfg.UpAfter)
		defer t.Stop()
		select {
		case <-t.C:
			return s.sameRun(c, seq)
		case <-ctx.Done():
			return false
		}
	}
	deadline := time.Now().Add(s.cfg.StartTimeout)
	delay := 5 * time.Millisecond
	for s.sameRun(c, seq) {
		if dial(c.addr()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
	return false
}

func dial(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func (s *Scheduler) setReady(c *ctr, seq int) {
	s.mu.Lock()
	if c.runSeq != seq || !c.running || c.stopping {
		s.mu.Unlock()
		return
	}
	c.ready = true
	a := s.apps[c.app]
	serving := c.typ == webType && a != nil && a.isCurrent(c)
	s.mu.Unlock()
	if serving {
		s.notify()
	}
}

// graceSeconds is StopGrace in whole seconds, as Docker takes it.
func graceSeconds(d time.Duration) int {
	n := int((d + time.Second - 1) / time.Second)
	if n < 1 {
		n = 1
	}
	return n
}
