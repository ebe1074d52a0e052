package docker

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/pierpaas/pier"
)

// Apply converges the app onto d; see pier.Scheduler. Each process is one
// container; a container whose labels say it runs what d asks for (same
// hash, type and index) is kept untouched, so applying the same deployment
// twice changes nothing, and scaling touches only the containers added or
// removed. The containers to add are started first; only once every one
// is up do they enter the routes and the replaced ones leave them, to be
// stopped (SIGTERM, SIGKILL after StopGrace) and removed in the
// background. When one does not come up the new ones are removed, the old
// ones keep running, and the error (code pier.EROLLOUT) says why, with the
// end of its output.
//
// Process types of the formation that the release does not define are
// not run. A deployment without a build removes every process.
func (s *Scheduler) Apply(ctx context.Context, d pier.Deployment) error {
	if err := pier.ValidateAppName(d.App); err != nil {
		return err
	}
	for t, n := range d.Formation {
		if err := pier.ValidateProcessType(t); err != nil {
			return err
		}
		if n < 0 || n > pier.ScaleMax {
			return pier.Errorf(pier.EINVALID, "cannot scale %s to %d: use 0 to %d", t, n, pier.ScaleMax)
		}
	}
	if err := checkRunnable(d); err != nil {
		return err
	}
	specs, err := s.specs(ctx, d)
	if err != nil {
		return err
	}
	a, err := s.appFor(d.App)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	alive, err := s.refresh(ctx, a)
	if err != nil {
		return err
	}

	var start []plan
	keep := map[*ctr]bool{}
	s.mu.Lock()
	for _, t := range sortedKeys(specs) {
		sp := specs[t]
		for i := 1; i <= d.Formation[t]; i++ {
			if c := a.find(t, i, sp.hash, alive); c != nil {
				keep[c] = true
				continue
			}
			start = append(start, sp.plan(i))
		}
	}
	var stop []*ctr
	for _, c := range a.current {
		if !keep[c] {
			stop = append(stop, c)
		}
	}
	if len(start) == 0 && len(stop) == 0 {
		a.deployed = true
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()

	if len(start) > 0 {
		s.log.InfoContext(ctx, "deploying", "app", d.App, "release", d.Release.Version, "formation", d.Formation.String(), "start", len(start), "stop", len(stop))
	}
	started, err := s.boot(ctx, a, d.Release.Version, start)
	if err != nil {
		return err
	}
	s.commit(a, started, stop)
	return nil
}

// specs are the container specs of the process types d runs. They need
// the image's USER, so the image is pulled here if the host lacks it.
func (s *Scheduler) specs(ctx context.Context, d pier.Deployment) (map[string]*spec, error) {
	b := d.Release.Build
	out := map[string]*spec{}
	if b == nil {
		return out, nil
	}
	var types []string
	for _, t := range sortedKeys(d.Formation) {
		if d.Formation[t] == 0 {
			continue
		}
		if _, ok := b.ProcessTypes[t]; !ok {
			// Left from an older release; the controller refuses new ones.
			s.log.DebugContext(ctx, "formation names a process type the release does not define", "app", d.App, "type", t, "release", d.Release.Version)
			continue
		}
		if _, err := resources(t, d.Limits[t]); err != nil {
			return nil, err
		}
		types = append(types, t)
	}
	if len(types) == 0 {
		return out, nil
	}
	user, err := s.imageUser(ctx, b.Image, d.Release.Version)
	if err != nil {
		return nil, err
	}
	for _, t := range types {
		sp, err := newSpec(d, t, user)
		if err != nil {
			return nil, err
		}
		out[t] = sp
	}
	return out, nil
}

// find returns the current container of type typ and index with hash that
// is alive (running, or being restarted by Docker), if any.
func (a *appState) find(typ string, index int, hash string, alive map[string]bool) *ctr {
	for _, c := range a.current {
		if c.typ == typ && c.index == index && c.hash == hash && alive[c.id] {
			return c
		}
	}
	return nil
}

// refresh compares what the scheduler holds of app with the daemon: it
// forgets containers that are gone, adopts Pier's containers of the app it
// did not know (an earlier Apply that could not clean up), and returns the
// ids of those that run or are being restarted.
func (s *Scheduler) refresh(ctx context.Context, a *appState) (map[string]bool, error) {
	list, err := s.listManaged(ctx, a.name)
	if err != nil {
		return nil, err
	}
	alive := map[string]bool{}
	exists := map[string]bool{}
	var probe []*ctr
	defer func() {
		for _, c := range probe {
			s.startProbe(c, c.runSeq)
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sum := range list {
		if sum.Labels[LabelOneOff] != "" {
			continue
		}
		exists[sum.ID] = true
		if sum.State == container.StateRunning || sum.State == container.StateRestarting {
			alive[sum.ID] = true
		}
		if s.byID[sum.ID] != nil {
			continue
		}
		if c, ok := ctrFromLabels(sum.ID, summaryName(sum), sum.Labels); ok && c.app == a.name {
			if sum.State == container.StateRunning {
				c.running = true
				c.runSeq++
				probe = append(probe, c)
			}
			a.current = append(a.current, c)
			s.byID[c.id] = c
			s.ports.take(c.port)
		}
	}
	kept := a.current[:0]
	for _, c := range a.current {
		if exists[c.id] {
			kept = append(kept, c)
			continue
		}
		delete(s.byID, c.id)
		s.ports.put(c.port)
	}
	a.current = kept
	return alive, nil
}

// plan is a container to start: its identity and how to create it on a
// port.
type plan struct {
	typ     string
	index   int
	release int
	hash    string
	create  func(port int) (*container.Config, *container.HostConfig)
}

func (sp *spec) plan(index int) plan {
	return plan{typ: sp.typ, index: index, release: sp.release, hash: sp.hash, create: func(port int) (*container.Config, *container.HostConfig) {
		return sp.create(index, port)
	}}
}

// commit makes the booted containers serve and takes the replaced ones
// out of the routes in one step, so the router never sees the app with
// neither; then it tells the router and stops the replaced ones.
func (s *Scheduler) commit(a *appState, started, stop []*ctr) {
	s.mu.Lock()
	drop := map[*ctr]bool{}
	for _, c := range stop {
		drop[c] = true
		c.stopping = true
		a.stopping[c] = struct{}{}
	}
	next := make([]*ctr, 0, len(a.current)+len(started))
	for _, c := range a.current {
		if !drop[c] {
			next = append(next, c)
		}
	}
	for _, c := range started {
		delete(a.pending, c)
		c.booting = false
		next = append(next, c)
	}
	sort.Slice(next, func(i, j int) bool {
		if next[i].typ != next[j].typ {
			return next[i].typ < next[j].typ
		}
		return next[i].index < next[j].index
	})
	a.current = next
	a.deployed = true
	s.mu.Unlock()
	s.notify()
	s.stopInBackground(a, stop)
}

// keeps says what serves while a new release boots, for error messages.
func (s *Scheduler) keeps(a *appState) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	releases := map[int]bool{}
	for _, c := range a.current {
		releases[c.release] = true
	}
	if len(releases) == 0 {
		return "nothing was running before"
	}
	nums := make([]int, 0, len(releases))
	for v := range releases {
		nums = append(nums, v)
	}
	sort.Ints(nums)
	var vs []string
	for _, v := range nums {
		vs = append(vs, fmt.Sprintf("v%d", v))
	}
	return strings.Join(vs, ", ") + " keeps running"
}
