package local

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierpaas/pier"
)

// cgroupMount is where the kernel's control groups are mounted.
const cgroupMount = "/sys/fs/cgroup"

// cgroupName names this installation's cgroups after its data dir, so
// that two pierds on one host (tests, staging) never sweep each other's.
func cgroupName(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return "pier-" + hex.EncodeToString(sum[:6])
}

// newCgroups returns the limiter of cgroup v2 (unified) or, on a v1 or
// hybrid host, of the v1 memory, cpu and pids hierarchies, having removed
// the cgroups an earlier run on this data dir left.
func newCgroups(s *Scheduler) (limiter, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupMount, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", cgroupMount, err)
	}
	name := cgroupName(s.cfg.DataDir)
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return newCgroupV2(s, filepath.Join(cgroupMount, name))
	}
	return newCgroupV1(s, name)
}

// cgroupSeq makes each run's cgroup name unique: a restart must not find
// the oom_kill count of the run before it.
var cgroupSeq atomic.Uint64

func boxName(name string) string {
	return name + "-" + strconv.FormatUint(cgroupSeq.Add(1), 10)
}

func writeCgroup(dir, file, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, filepath.Join(dir, file), err)
	}
	return nil
}

// cgroupCount reads "key N" from a flat-keyed cgroup file, such as
// oom_kill in memory.events (v2) or memory.oom_control (v1).
func cgroupCount(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// cpuQuota turns millicores into a CFS quota and period in µs. The kernel
// takes quotas of 1ms or more: below 10m the period stretches to 1s.
func cpuQuota(milli int64) (quota, period int64) {
	period = 100000
	if milli < 10 {
		period = 1000000
	}
	return milli * period / 1000, period
}

// emptyCgroup kills every process of a cgroup dir and removes it; with
// killFile (v2's cgroup.kill) the kernel kills them all at once,
// otherwise they are listed and killed until none is left (the pids limit
// bounds how many a fork loop can add meanwhile).
func emptyCgroup(dir string, killFile bool) error {
	if killFile {
		writeCgroup(dir, "cgroup.kill", "1")
	}
	var err error
	for i := 0; i < 200; i++ {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			// pierd itself is listed (v1) if the spawner's thread could
			// not leave: it is not killed, and the cgroup stays.
			if pid, _ := strconv.Atoi(f); pid > 0 && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, err)
}

// sweep removes the cgroups of parent that an earlier pierd left, with
// whatever still runs in them (processes that left their process group).
func sweep(s *Scheduler, parent string, killFile bool) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if err := emptyCgroup(filepath.Join(parent, e.Name()), killFile); err != nil {
			s.log.Warn("cannot remove a cgroup left by an earlier run", "err", err)
		} else {
			s.log.Info("removed a cgroup left by an earlier run", "cgroup", filepath.Join(parent, e.Name()))
		}
	}
}

// cgroupV2 puts each run of a process group into its own child of
// /sys/fs/cgroup/pier-<hash>, started directly inside it (clone3 with
// CLONE_INTO_CGROUP): no instant of the process runs unbounded.
type cgroupV2 struct {
	s      *Scheduler
	parent string
}

func newCgroupV2(s *Scheduler, parent string) (*cgroupV2, error) {
	// Controllers must be enabled for the children of every level above
	// the group: the root's (systemd enables them) and Pier's parent.
	for _, c := range []string{"memory", "cpu", "pids"} {
		if err := enableController(cgroupMount, c); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	sweep(s, parent, true)
	for _, c := range []string{"memory", "cpu", "pids"} {
		if err := enableController(parent, c); err != nil {
			return nil, err
		}
	}
	return &cgroupV2{s: s, parent: parent}, nil
}

func enableController(dir, c string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	for _, have := range strings.Fields(string(b)) {
		if have == c {
			return nil
		}
	}
	if err := writeCgroup(dir, "cgroup.subtree_control", "+"+c); err != nil {
		return fmt.Errorf("the %s controller cannot be enabled (is it in %s?): %w", c, filepath.Join(dir, "cgroup.controllers"), err)
	}
	return nil
}

// close removes the installation's parent cgroup. Should a one-off
// process still be closing its own (Shutdown does not wait for that last
// step), the parent stays, and the next New sweeps it.
func (c *cgroupV2) close() error {
	return rmdirParent(c.parent)
}

func rmdirParent(dir string) error {
	err := syscall.Rmdir(dir)
	if err == nil || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EBUSY) {
		return nil
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, err)
}

func (c *cgroupV2) box(name string, l pier.Limits, cmd *exec.Cmd) (box, error) {
	v, err := c.s.limitValues(l)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.parent, boxName(name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	b := &v2Box{dir: dir, fd: -1, limits: l}
	if err := b.set(v); err != nil {
		b.close()
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.close()
		return nil, err
	}
	b.fd = fd
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	return b, nil
}

type v2Box struct {
	dir    string
	fd     int
	limits pier.Limits
}

func (b *v2Box) set(v limitValues) error {
	if v.memory > 0 {
		if err := writeCgroup(b.dir, "memory.max", strconv.FormatInt(v.memory, 10)); err != nil {
			return err
		}
		// No swap on top, as on Kubernetes: the limit is the limit.
		if _, err := os.Stat(filepath.Join(b.dir, "memory.swap.max")); err == nil {
			if err := writeCgroup(b.dir, "memory.swap.max", "0"); err != nil {
				return err
			}
		}
	}
	if v.cpuMilli > 0 {
		q, p := cpuQuota(v.cpuMilli)
		if err := writeCgroup(b.dir, "cpu.max", fmt.Sprintf("%d %d", q, p)); err != nil {
			return err
		}
	}
	if v.pids > 0 {
		if err := writeCgroup(b.dir, "pids.max", strconv.FormatInt(v.pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

func (b *v2Box) enter() error { return nil }
func (b *v2Box) leave()       {}

func (b *v2Box) started(int) error {
	b.closeFD()
	return nil
}

func (b *v2Box) closeFD() {
	if b.fd >= 0 {
		unix.Close(b.fd)
		b.fd = -1
	}
}

func (b *v2Box) oomKilled() bool {
	return b.limits.Memory != "" && cgroupCount(filepath.Join(b.dir, "memory.events"), "oom_kill") > 0
}

func (b *v2Box) close() {
	b.closeFD()
	emptyCgroup(b.dir, true)
}

// cgroupV1 puts each run of a process group into its own cgroup of each
// of the memory, cpu and pids hierarchies. v1 has no way to fork into a
// cgroup, so the spawner's own thread joins the group's cgroups before the
// fork (the child inherits them) and returns to its own after: the process
// never runs unbounded either.
type cgroupV1 struct {
	s       *Scheduler
	mounts  map[string]v1Mount // by controller
	parents map[string]string  // by controller: the installation's dir
}

type v1Mount struct{ dir, root string }

var v1Controllers = []string{"memory", "cpu", "pids"}

func newCgroupV1(s *Scheduler, name string) (*cgroupV1, error) {
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	c := &cgroupV1{s: s, mounts: mounts, parents: map[string]string{}}
	for _, ctl := range v1Controllers {
		m, ok := mounts[ctl]
		if !ok {
			return nil, fmt.Errorf("no cgroup v1 hierarchy has the %s controller (see /proc/self/mountinfo)", ctl)
		}
		parent := filepath.Join(m.dir, name)
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		sweep(s, parent, false)
		c.parents[ctl] = parent
	}
	return c, nil
}

// v1Mounts finds the mount of each v1 controller in /proc/self/mountinfo.
func v1Mounts() (map[string]v1Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]v1Mount{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 || b[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(b[2], ",") {
			for _, ctl := range v1Controllers {
				if opt == ctl {
					if _, seen := out[ctl]; !seen {
						out[ctl] = v1Mount{dir: a[4], root: a[3]}
					}
				}
			}
		}
	}
	return out, sc.Err()
}

func (c *cgroupV1) close() error {
	var errs []error
	for _, ctl := range v1Controllers {
		errs = append(errs, rmdirParent(c.parents[ctl]))
	}
	return errors.Join(errs...)
}

func (c *cgroupV1) box(name string, l pier.Limits, cmd *exec.Cmd) (box, error) {
	v, err := c.s.limitValues(l)
	if err != nil {
		return nil, err
	}
	n := boxName(name)
	b := &v1Box{c: c, limits: l, dirs: map[string]string{}}
	for _, ctl := range v1Controllers {
		dir := filepath.Join(c.parents[ctl], n)
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.close()
			return nil, err
		}
		b.dirs[ctl] = dir
	}
	if err := b.set(v); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

type v1Box struct {
	c      *cgroupV1
	limits pier.Limits
	dirs   map[string]string // by controller
	home   map[string]string // by controller: the spawner thread's own cgroup dir
	pids   int64             // pids.max once the spawner's thread has left
}

func (b *v1Box) set(v limitValues) error {
	if v.memory > 0 {
		m := strconv.FormatInt(v.memory, 10)
		if err := writeCgroup(b.dirs["memory"], "memory.limit_in_bytes", m); err != nil {
			return err
		}
		// No swap on top where swap is accounted (memsw): the limit is the limit.
		if _, err := os.Stat(filepath.Join(b.dirs["memory"], "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeCgroup(b.dirs["memory"], "memory.memsw.limit_in_bytes", m); err != nil {
				return err
			}
		}
	}
	if v.cpuMilli > 0 {
		// The spawner's thread runs under this quota while it forks: at
		// worst (a few millicores) it waits for the next period, 1s.
		q, p := cpuQuota(v.cpuMilli)
		if err := writeCgroup(b.dirs["cpu"], "cpu.cfs_period_us", strconv.FormatInt(p, 10)); err != nil {
			return err
		}
		if err := writeCgroup(b.dirs["cpu"], "cpu.cfs_quota_us", strconv.FormatInt(q, 10)); err != nil {
			return err
		}
	}
	if v.pids > 0 {
		// The spawner's thread is counted while it forks: one more,
		// taken back once it has left (leave).
		b.pids = v.pids
		if err := writeCgroup(b.dirs["pids"], "pids.max", strconv.FormatInt(v.pids+1, 10)); err != nil {
			return err
		}
	}
	return nil
}

// enter moves the calling thread (the spawner's, locked) into the group's
// cgroups, having noted where it was.
func (b *v1Box) enter() error {
	home, err := b.c.threadCgroups()
	if err != nil {
		return err
	}
	b.home = home
	tid := strconv.Itoa(unix.Gettid())
	for _, ctl := range v1Controllers {
		if err := writeCgroup(b.dirs[ctl], "tasks", tid); err != nil {
			b.leave()
			return err
		}
	}
	return nil
}

// leave moves the spawner's thread back. Should that fail, the next
// process would start in this group's cgroups: that is logged loudly, and
// the next enter moves the thread on anyway.
func (b *v1Box) leave() {
	tid := strconv.Itoa(unix.Gettid())
	for _, ctl := range v1Controllers {
		if err := writeCgroup(b.home[ctl], "tasks", tid); err != nil {
			b.c.s.log.Error("the process spawner cannot leave a process group's cgroup", "err", err)
		}
	}
	if b.pids > 0 {
		if err := writeCgroup(b.dirs["pids"], "pids.max", strconv.FormatInt(b.pids, 10)); err != nil {
			b.c.s.log.Error("cannot set the pids limit of a process group", "err", err)
		}
	}
}

// threadCgroups reads the calling thread's cgroup dir in each hierarchy.
func (c *cgroupV1) threadCgroups() (map[string]string, error) {
	data, err := os.ReadFile("/proc/thread-self/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		// hierarchy-id:controller,list:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			m, ok := c.mounts[ctl]
			if !ok {
				continue
			}
			rel := parts[2]
			if m.root != "/" {
				rel = strings.TrimPrefix(rel, m.root)
			}
			out[ctl] = filepath.Join(m.dir, rel)
		}
	}
	for _, ctl := range v1Controllers {
		if out[ctl] == "" {
			return nil, fmt.Errorf("the %s cgroup of the spawner's thread is not in /proc/thread-self/cgroup", ctl)
		}
	}
	return out, nil
}

func (b *v1Box) started(int) error { return nil }

func (b *v1Box) oomKilled() bool {
	return b.limits.Memory != "" && cgroupCount(filepath.Join(b.dirs["memory"], "memory.oom_control"), "oom_kill") > 0
}

func (b *v1Box) close() {
	for _, ctl := range v1Controllers {
		if dir := b.dirs[ctl]; dir != "" {
			if err := emptyCgroup(dir, false); err != nil {
				b.c.s.log.Warn("cannot remove a process group's cgroup", "err", err)
			}
		}
	}
}
