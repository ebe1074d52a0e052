package docker

import (
	"context"
	"net"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/pierpaas/pier"
)

// ctr is one container of a process, such as web.2 of v7. Its mutable
// fields are guarded by Scheduler.mu.
type ctr struct {
	id      string
	name    string
	app     string
	typ     string
	index   int
	release int
	port    int
	hash    string

	running  bool   // its process runs (Docker's view, from events)
	ready    bool   // up: web accepts connections, others ran UpAfter
	booting  bool   // Apply or Restart is still deciding about it
	stopping bool   // being stopped and removed
	died     int    // deaths seen, to catch a crash during boot
	exit     string // how it last died, for Apply's error
	runSeq   int    // bumped at each start: a probe of an older run stops
}

func (c *ctr) procName() string { return c.typ + "." + strconv.Itoa(c.index) }

func (c *ctr) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) }

// ctrFromLabels rebuilds the record of a container from its labels; ok is
// false for a container without Pier's process labels.
func ctrFromLabels(id, name string, labels map[string]string) (*ctr, bool) {
	index, err1 := strconv.Atoi(labels[LabelIndex])
	release, err2 := strconv.Atoi(labels[LabelRelease])
	port, err3 := strconv.Atoi(labels[LabelPort])
	app, typ := labels[LabelApp], labels[LabelType]
	if err1 != nil || err2 != nil || err3 != nil || pier.ValidateAppName(app) != nil || pier.ValidateProcessType(typ) != nil {
		return nil, false
	}
	return &ctr{id: id, name: name, app: app, typ: typ, index: index, release: release, port: port, hash: labels[LabelHash]}, true
}

// managedFilter selects Pier's containers of one instance ("": of any),
// and of one app if app is not "".
func managedFilter(instance, app string) filters.Args {
	f := filters.NewArgs(filters.Arg("label", LabelManagedBy+"="+managedBy))
	if instance != "" {
		f.Add("label", LabelInstance+"="+instance)
	}
	if app != "" {
		f.Add("label", LabelApp+"="+app)
	}
	return f
}

// listManaged lists Pier's containers (of app, or all), running or not.
func (s *Scheduler) listManaged(ctx context.Context, app string) ([]container.Summary, error) {
	list, err := s.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: managedFilter(s.cfg.Instance, app)})
	if err != nil {
		return nil, daemonError(err, "listing containers")
	}
	return list, nil
}

func summaryName(c container.Summary) string {
	if len(c.Names) > 0 {
		return c.Names[0][1:]
	}
	return c.ID[:12]
}

// recover adopts the containers an earlier run of pierd left: their labels
// say everything Apply needs to compare them with a deployment. Running
// ones are probed, and enter the routes once ready.
func (s *Scheduler) recover(ctx context.Context) error {
	list, err := s.listManaged(ctx, "")
	if err != nil {
		return err
	}
	var probe []*ctr
	s.mu.Lock()
	for _, sum := range list {
		if sum.Labels[LabelOneOff] != "" {
			// Its session ended with the pierd that ran it.
			s.removeInBackground(sum.ID, summaryName(sum))
			continue
		}
		c, ok := ctrFromLabels(sum.ID, summaryName(sum), sum.Labels)
		if !ok {
			s.log.Warn("container labelled managed-by=pier without Pier's labels: leaving it alone", "container", summaryName(sum))
			continue
		}
		if s.byID[c.id] != nil {
			continue // seen by the watch already
		}
		a := s.appLocked(c.app)
		a.deployed = true
		a.current = append(a.current, c)
		s.byID[c.id] = c
		s.ports.take(c.port)
		if sum.State == container.StateRunning {
			c.running = true
			c.runSeq++
			probe = append(probe, c)
		}
	}
	s.mu.Unlock()
	for _, c := range probe {
		s.startProbe(c, c.runSeq)
	}
	if len(list) > 0 {
		s.log.Info("adopted containers", "containers", len(list))
	}
	return nil
}
