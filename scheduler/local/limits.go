package local

import (
	"fmt"
	"os/exec"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pierpaas/pier"
)

// DefaultPidsMax bounds the processes and threads of one process group
// (a process and everything it forks) when Config.PidsMax is zero: enough
// for a JVM or a pre-forking server, few enough that a fork bomb cannot
// starve the host. Heroku's dynos allow 256 to 32768 by size.
const DefaultPidsMax = 1024

// limiter enforces the limits of process groups (`pier limits:set`, and
// Config.PidsMax for every one): with cgroups when pierd is root, with
// rlimits otherwise (limits_*.go, cgroup_linux.go, rlimit_linux.go).
type limiter interface {
	// box prepares the bounds of one run of a process group before it
	// starts. It may set fields of cmd.SysProcAttr.
	box(name string, l pier.Limits, cmd *exec.Cmd) (box, error)
	// close removes what the limiter made for this installation, once
	// every box is closed (Shutdown).
	close() error
}

// box holds one run of a process group within its limits. enter and leave
// run on the spawner's thread around the fork; the others anywhere.
type box interface {
	enter() error
	leave()
	started(pid int) error // the process exists, not yet waited for
	// oomKilled says whether the kernel killed a process of the group
	// for going past its memory limit.
	oomKilled() bool
	// close kills what is left of the group and removes its bounds.
	close()
}

// limitValues are limits in the units the kernel takes. Zero: none.
type limitValues struct {
	memory   int64 // bytes
	cpuMilli int64 // thousandths of a core
	pids     int64
}

func (s *Scheduler) limitValues(l pier.Limits) (limitValues, error) {
	v := limitValues{pids: int64(s.cfg.PidsMax)}
	if v.pids < 0 {
		v.pids = 0
	}
	if l.Memory != "" {
		if err := pier.ValidateMemory(l.Memory); err != nil {
			return v, err
		}
		q, err := resource.ParseQuantity(l.Memory)
		if err != nil {
			return v, pier.Errorf(pier.EINVALID, "memory limit %q is not a Kubernetes quantity: use such as 512Mi", l.Memory)
		}
		v.memory = q.Value()
	}
	if l.CPU != "" {
		if err := pier.ValidateCPU(l.CPU); err != nil {
			return v, err
		}
		q, err := resource.ParseQuantity(l.CPU)
		if err != nil {
			return v, pier.Errorf(pier.EINVALID, "cpu limit %q is not a Kubernetes quantity: use such as 500m", l.CPU)
		}
		v.cpuMilli = q.MilliValue()
	}
	return v, nil
}

// oomReason is what `pier ps` says of a process the kernel killed for
// going past its memory limit.
func oomReason(l pier.Limits) string {
	return fmt.Sprintf("OOM killed: memory limit %s", l.Memory)
}

// openBox bounds one run of a process group of app (name says which)
// with the limits of its type. A nil box means no limits at all.
func (s *Scheduler) openBox(name string, l pier.Limits, cmd *exec.Cmd) (box, error) {
	if s.limiter == nil {
		return noBox{}, nil
	}
	return s.limiter.box(name, l, cmd)
}

// noBox is the box of a limiter with nothing to enforce.
type noBox struct{}

func (noBox) enter() error      { return nil }
func (noBox) leave()            {}
func (noBox) started(int) error { return nil }
func (noBox) oomKilled() bool   { return false }
func (noBox) close()            {}

// unlimit removes the limiter's own cgroups at Shutdown.
func (s *Scheduler) unlimit() error {
	if s.limiter == nil {
		return nil
	}
	return s.limiter.close()
}
