package docker

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/pierpaas/pier"
)

// Restart replaces the containers of one process type ("" for all) with
// fresh ones, as a deploy does: the new ones start, and once they are up
// they take the routes and the old ones are stopped. The new containers
// are copies of the old ones (the daemon's record of them), so Restart
// needs no deployment, also right after a restart of pierd.
func (s *Scheduler) Restart(ctx context.Context, app, processType string) error {
	if processType != "" {
		if err := pier.ValidateProcessType(processType); err != nil {
			return err
		}
	}
	a, err := s.appFor(app)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	if _, err := s.refresh(ctx, a); err != nil {
		return err
	}
	s.mu.Lock()
	var old []*ctr
	types := map[string]bool{}
	for _, c := range a.current {
		types[c.typ] = true
		if processType == "" || c.typ == processType {
			old = append(old, c)
		}
	}
	s.mu.Unlock()
	if len(old) == 0 {
		if len(types) == 0 {
			return pier.Errorf(pier.ENOTFOUND, "app %s has no processes to restart", app)
		}
		return pier.Errorf(pier.ENOTFOUND, "app %s has no %s processes: it runs %s", app, processType, strings.Join(sortedKeys(types), ", "))
	}
	plans := make([]plan, 0, len(old))
	version := 0
	for _, c := range old {
		p, err := s.clonePlan(ctx, c)
		if err != nil {
			return err
		}
		plans = append(plans, p)
		version = max(version, c.release)
	}
	s.log.InfoContext(ctx, "restarting", "app", app, "type", processType, "processes", len(old))
	started, err := s.boot(ctx, a, version, plans)
	if err != nil {
		return err
	}
	s.commit(a, started, old)
	return nil
}

// clonePlan is a plan for a copy of container c on a new port.
func (s *Scheduler) clonePlan(ctx context.Context, c *ctr) (plan, error) {
	info, err := s.cli.ContainerInspect(ctx, c.id)
	if err != nil {
		return plan{}, daemonError(err, "inspecting %s", c.name)
	}
	if info.Config == nil || info.HostConfig == nil {
		return plan{}, daemonError(errors.New("no configuration"), "inspecting %s", c.name)
	}
	base := *info.Config
	res := container.Resources{Memory: info.HostConfig.Memory, MemorySwap: info.HostConfig.MemorySwap, NanoCPUs: info.HostConfig.NanoCPUs}
	return plan{typ: c.typ, index: c.index, release: c.release, hash: c.hash, create: func(port int) (*container.Config, *container.HostConfig) {
		cfg := base
		cfg.Hostname = ""
		cfg.Env = make([]string, 0, len(base.Env))
		for _, e := range base.Env {
			if !strings.HasPrefix(e, "PORT=") {
				cfg.Env = append(cfg.Env, e)
			}
		}
		cfg.Env = append(cfg.Env, "PORT="+strconv.Itoa(port))
		cfg.Labels = make(map[string]string, len(base.Labels))
		for k, v := range base.Labels {
			cfg.Labels[k] = v
		}
		cfg.Labels[LabelPort] = strconv.Itoa(port)
		return &cfg, hostConfig(res, container.RestartPolicy{Name: container.RestartPolicyUnlessStopped})
	}}, nil
}

// Processes lists the app's processes: serving, booting and being stopped,
// with Docker's count of restarts.
func (s *Scheduler) Processes(ctx context.Context, app string) ([]pier.Process, error) {
	if err := pier.ValidateAppName(app); err != nil {
		return nil, err
	}
	type entry struct {
		c                                 *ctr
		ready, booting, stopping, serving bool
	}
	var all []entry
	s.mu.Lock()
	if a := s.apps[app]; a != nil {
		for _, c := range a.current {
			all = append(all, entry{c: c, ready: c.ready, serving: true})
		}
		for c := range a.pending {
			all = append(all, entry{c: c, booting: true})
		}
		for c := range a.stopping {
			all = append(all, entry{c: c, stopping: true})
		}
	}
	s.mu.Unlock()

	out := make([]pier.Process, len(all))
	keep := make([]bool, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, e := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := s.cli.ContainerInspect(ctx, e.c.id)
			if client.IsErrNotFound(err) {
				return // removed meanwhile
			}
			if err != nil {
				errs[i] = daemonError(err, "inspecting %s", e.c.name)
				return
			}
			p := pier.Process{App: app, Type: e.c.typ, Index: e.c.index, Release: e.c.release, Restarts: info.RestartCount}
			running := info.State != nil && info.State.Running && !info.State.Restarting
			if info.State != nil {
				p.StartedAt, _ = parseTime(info.State.StartedAt)
			}
			switch {
			case e.stopping:
				p.State = pier.ProcessStopping
			case e.booting:
				p.State = pier.ProcessStarting
			case running && e.ready:
				p.State = pier.ProcessUp
			case running:
				p.State = pier.ProcessStarting
			default:
				p.State = pier.ProcessCrashed
			}
			if p.State == pier.ProcessUp && e.serving && e.c.typ == webType {
				p.Addr = e.c.addr()
			}
			out[i], keep[i] = p, true
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	procs := make([]pier.Process, 0, len(out))
	for i, p := range out {
		if keep[i] {
			procs = append(procs, p)
		}
	}
	sort.Slice(procs, func(i, j int) bool {
		x, y := procs[i], procs[j]
		if x.Type != y.Type {
			return x.Type < y.Type
		}
		if x.Index != y.Index {
			return x.Index < y.Index
		}
		return x.Release < y.Release
	})
	return procs, nil
}

// Destroy removes every container of the app (one-off ones too): a later
// app of the same name starts clean.
func (s *Scheduler) Destroy(ctx context.Context, app string) error {
	a, err := s.appFor(app)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	s.mu.Lock()
	var known []*ctr
	known = append(known, a.current...)
	for c := range a.pending {
		known = append(known, c)
	}
	for _, c := range known {
		c.stopping = true
	}
	a.current, a.deployed = nil, false
	delete(s.apps, app)
	s.mu.Unlock()
	s.notify()

	list, err := s.listManaged(ctx, app)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, sum := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stopRemove(sum.ID, summaryName(sum))
		}()
	}
	wg.Wait()
	a.stops.Wait()
	s.mu.Lock()
	for _, c := range known {
		delete(s.byID, c.id)
		s.ports.put(c.port)
	}
	s.mu.Unlock()
	left, err := s.listManaged(ctx, app)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return pier.Errorf(pier.EINTERNAL, "%d containers of %s could not be removed: the server log says why; destroy the app again", len(left), app)
	}
	return nil
}

// Apps names every app with containers Pier manages on this host.
func (s *Scheduler) Apps(ctx context.Context) ([]string, error) {
	list, err := s.listManaged(ctx, "")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range list {
		if app := c.Labels[LabelApp]; pier.ValidateAppName(app) == nil {
			seen[app] = true
		}
	}
	return sortedKeys(seen), nil
}
