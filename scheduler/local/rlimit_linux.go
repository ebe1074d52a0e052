package local

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pierpaas/pier"
)

// rlimits bounds process groups where cgroups are not ours to use (pierd
// is not root), with resource limits set on each process right after it
// starts (prlimit): there is no way to set them between fork and exec
// from Go, so for an instant the process runs unbounded; what it forks
// inherits them. They are cruder than cgroups:
//   - memory: RLIMIT_DATA, the process's private writable memory (heap,
//     anonymous mappings) — not shared memory, nor what its children use,
//     and an allocation past it fails instead of the process being killed,
//     so `pier ps` cannot say it was the limit;
//   - pids: RLIMIT_NPROC counts every process and thread of the *uid*, not
//     of the group: the limit set is what the uid runs at that moment plus
//     PidsMax, so a fork bomb stops after about PidsMax more;
//   - cpu: a rate cannot be expressed as an rlimit (RLIMIT_CPU kills at a
//     total of seconds): it is not enforced, and the log says so once.
type rlimits struct {
	s       *Scheduler
	cpuOnce sync.Once
}

func (r *rlimits) box(name string, l pier.Limits, cmd *exec.Cmd) (box, error) {
	v, err := r.s.limitValues(l)
	if err != nil {
		return nil, err
	}
	if v.cpuMilli > 0 {
		r.cpuOnce.Do(func() {
			r.s.log.Warn("cpu limits (pier limits:set --cpu) are not enforced: without root the local scheduler has no cgroups, and an rlimit cannot bound a rate")
		})
	}
	uid := os.Getuid()
	if a := cmd.SysProcAttr; a != nil && a.Credential != nil {
		uid = int(a.Credential.Uid)
	}
	return &rlimitBox{v: v, uid: uid}, nil
}

func (r *rlimits) close() error { return nil }

type rlimitBox struct {
	noBox
	v   limitValues
	uid int
}

// started lowers the process's limits (never raises them: that needs
// CAP_SYS_RESOURCE). pierd may set them on its own uid's processes; as
// root without CAP_SYS_RESOURCE, not on an app uid's: the process is then
// refused rather than run unbounded.
func (b *rlimitBox) started(pid int) error {
	lower := func(res int, name string, n uint64) error {
		var old unix.Rlimit
		if err := unix.Prlimit(pid, res, nil, &old); err != nil {
			return fmt.Errorf("reading its %s rlimit: %w", name, err)
		}
		lim := unix.Rlimit{Cur: min(n, old.Cur), Max: min(n, old.Max)}
		if err := unix.Prlimit(pid, res, &lim, nil); err != nil {
			return fmt.Errorf("setting its %s rlimit to %d: %w", name, n, err)
		}
		return nil
	}
	if b.v.memory > 0 {
		if err := lower(unix.RLIMIT_DATA, "data", uint64(b.v.memory)); err != nil {
			return err
		}
	}
	if b.v.pids > 0 {
		if err := lower(unix.RLIMIT_NPROC, "nproc", uint64(tasksOf(b.uid))+uint64(b.v.pids)); err != nil {
			return err
		}
	}
	return nil
}

// tasksOf counts the processes and threads whose real uid is uid, as
// RLIMIT_NPROC does.
func tasksOf(uid int) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		var real, threads int = -1, 0
		for _, line := range strings.Split(string(b), "\n") {
			switch k, v, _ := strings.Cut(line, ":"); k {
			case "Uid":
				if f := strings.Fields(v); len(f) > 0 {
					real, _ = strconv.Atoi(f[0])
				}
			case "Threads":
				threads, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if real == uid {
			n += threads
		}
	}
	return n
}
