package local_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/scheduler/local"
)

// limitsMain is the test app of the limits tests. hog: once up, allocate
// and touch memory, 4 MiB at a time, up to 512 MiB, then say "survived".
// forkbomb: start sleeping children until the kernel refuses, then say how
// many it got ("refused after N") or "unbounded" at 300.
func limitsMain(mode string) {
	switch mode {
	case "hog":
		time.Sleep(300 * time.Millisecond) // up first: the crash is a restart, not a failed deploy
		var keep [][]byte
		for i := 0; i < 128; i++ {
			b := make([]byte, 4<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("survived", len(keep)*4, "MiB")
		time.Sleep(time.Hour)
	case "forkbomb":
		time.Sleep(300 * time.Millisecond)
		for n := 0; n < 300; n++ {
			c := exec.Command("/bin/sleep", "3600")
			if err := c.Start(); err != nil {
				fmt.Printf("refused after %d: %v\n", n, err)
				time.Sleep(time.Hour)
			}
		}
		fmt.Println("unbounded")
		time.Sleep(time.Hour)
	}
}

// logHas says whether the app's log holds a line containing text.
func logHas(s *local.Scheduler, app, text string) (string, bool) {
	var found string
	s.Logs(context.Background(), app, pier.LogOptions{Lines: 1000}, func(l pier.LogLine) error {
		if strings.Contains(l.Text, text) {
			found = l.Text
		}
		return nil
	})
	return found, found != ""
}

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root")
	}
}

// Finding 5 of issue 14: `pier limits:set` memory is enforced by the local
// scheduler, and a process killed for going past it says so in `pier ps`.
func TestMemoryLimitEnforced(t *testing.T) {
	skipUnlessRoot(t)
	s, _ := newScheduler(t)
	d := deployment("hungry", 1, pier.Formation{"hog": 1}, nil)
	d.Limits = map[string]pier.Limits{"hog": {Memory: "64Mi"}}
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	var last pier.Process
	eventually(t, "the hog is OOM killed and ps says so", func() bool {
		if line, ok := logHas(s, "hungry", "survived"); ok {
			t.Fatalf("the hog went past its 64Mi limit: %s", line)
		}
		ps, err := s.Processes(context.Background(), "hungry")
		if err != nil || len(ps) != 1 {
			t.Fatalf("processes %v %v", ps, err)
		}
		last = ps[0]
		return last.Reason == "OOM killed: memory limit 64Mi"
	})
	if line, ok := logHas(s, "hungry", "OOM killed: memory limit 64Mi"); !ok {
		t.Fatal("the app's log does not say why the hog crashed")
	} else {
		t.Log(line)
	}
}

// Finding 5 of issue 14: a fork bomb stops at the pids limit.
func TestPidsLimitEnforced(t *testing.T) {
	skipUnlessRoot(t)
	s, _ := newScheduler(t, func(c *local.Config) { c.PidsMax = 40 })
	d := deployment("bomb", 1, pier.Formation{"forkbomb": 1}, pier.Config{"GOMAXPROCS": "1"})
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	var line string
	eventually(t, "the fork bomb reports", func() bool {
		if l, ok := logHas(s, "bomb", "unbounded"); ok {
			t.Fatalf("the fork bomb was not bounded: %s", l)
		}
		var ok bool
		line, ok = logHas(s, "bomb", "refused after")
		return ok
	})
	var n int
	if _, err := fmt.Sscanf(line, "refused after %d", &n); err != nil || n >= 40 {
		t.Fatalf("%q: the limit is 40 processes and threads", line)
	}
	t.Log(line)
}

// Finding 5 of issue 14: `pier limits:set --cpu` becomes the CFS quota of
// the cgroup the process runs in; the cgroup goes with the process.
func TestCPULimitEnforced(t *testing.T) {
	skipUnlessRoot(t)
	s, _ := newScheduler(t)
	d := deployment("busy", 1, pier.Formation{"web": 1}, nil)
	d.Limits = map[string]pier.Limits{"web": {CPU: "250m", Memory: "128Mi"}}
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	ps, _ := s.Processes(context.Background(), "busy")
	id := getIdentity(ps[0].Addr)
	if id.PID == 0 {
		t.Fatal("no identity")
	}
	cpu := cgroupDir(t, id.PID, "cpu")
	var quota string
	if cpu.v2 {
		quota = readTrim(t, filepath.Join(cpu.dir, "cpu.max"))
	} else {
		quota = readTrim(t, filepath.Join(cpu.dir, "cpu.cfs_quota_us")) + " " + readTrim(t, filepath.Join(cpu.dir, "cpu.cfs_period_us"))
	}
	if quota != "25000 100000" {
		t.Fatalf("cpu quota of %s is %q, want 25000 100000 (250m)", cpu.dir, quota)
	}
	mem := cgroupDir(t, id.PID, "memory")
	file := "memory.limit_in_bytes"
	if mem.v2 {
		file = "memory.max"
	}
	if got := readTrim(t, filepath.Join(mem.dir, file)); got != strconv.Itoa(128<<20) {
		t.Fatalf("memory limit of %s is %s, want 128Mi", mem.dir, got)
	}
	if err := s.Destroy(context.Background(), "busy"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{cpu.dir, mem.dir} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("cgroup %s outlives its process (%v)", dir, err)
		}
	}
}

// Without root (forced here), memory and pids are rlimits of the process.
func TestLimitsWithoutCgroups(t *testing.T) {
	defer local.ForceRlimits(true)()
	if os.Geteuid() == 0 {
		// The rlimits are a pierd's that is not root: its processes run
		// as its own uid. As root they would be an app uid's, and prlimit
		// on another uid's process needs CAP_SYS_RESOURCE, which root in
		// a container may lack (it does in CI). So the test runs again as
		// a uid of its own, through the test binary any uid can run.
		cmd := exec.Command(helperBin, "-test.run=^TestLimitsWithoutCgroups$", "-test.count=1", "-test.v")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 100998, Gid: 100998, Groups: []uint32{}}}
		cmd.Env = append(os.Environ(), "HOME=/tmp")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestLimitsWithoutCgroups") {
			t.Fatalf("as uid 100998: %v\n%s", err, out)
		}
		return
	}
	// The process is a shell that execs sleep, not the test binary: built
	// with -race, that binary reserves far more than 256Mi of address
	// space before main runs, and the data limit would stop it booting.
	pidFile := filepath.Join(t.TempDir(), "pid")
	s, _ := newScheduler(t, func(c *local.Config) {
		c.PidsMax = 500
		c.Launch = func(pier.Deployment, string) (*exec.Cmd, error) {
			return exec.Command("/bin/sh", "-c", `echo $$ > "$1"; exec sleep 600`, "sh", pidFile), nil
		}
	})
	d := deployment("small", 1, pier.Formation{"worker": 1}, nil)
	d.Limits = map[string]pier.Limits{"worker": {Memory: "256Mi"}}
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	var pid int
	eventually(t, "the worker wrote its pid", func() bool {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	limits := readTrim(t, "/proc/"+strconv.Itoa(pid)+"/limits")
	var data, nproc []string
	for _, l := range strings.Split(limits, "\n") {
		switch {
		case strings.HasPrefix(l, "Max data size"):
			data = strings.Fields(strings.TrimPrefix(l, "Max data size"))
		case strings.HasPrefix(l, "Max processes"):
			nproc = strings.Fields(strings.TrimPrefix(l, "Max processes"))
		}
	}
	if len(data) < 2 || data[0] != strconv.Itoa(256<<20) || data[1] != strconv.Itoa(256<<20) {
		t.Fatalf("data limit %v, want 256Mi:\n%s", data, limits)
	}
	if n, err := strconv.Atoi(nproc[0]); err != nil || n < 500 || n > 100000 {
		t.Fatalf("process limit %v, want what the uid runs plus 500:\n%s", nproc, limits)
	}
}

type cgroupOf struct {
	dir string
	v2  bool
}

// cgroupDir finds the dir of pid's cgroup for a controller, from
// /proc/PID/cgroup and the mounts.
func cgroupDir(t *testing.T, pid int, controller string) cgroupOf {
	t.Helper()
	mounts := map[string]string{} // controller ("" for v2) → mount dir
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, _ := strings.Cut(sc.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 {
			continue
		}
		switch b[0] {
		case "cgroup2":
			mounts[""] = a[4]
		case "cgroup":
			for _, o := range strings.Split(b[2], ",") {
				mounts[o] = a[4]
			}
		}
	}
	data := readTrim(t, "/proc/"+strconv.Itoa(pid)+"/cgroup")
	for _, line := range strings.Split(data, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller && mounts[c] != "" {
				return cgroupOf{dir: filepath.Join(mounts[c], parts[2])}
			}
		}
	}
	for _, line := range strings.Split(data, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			dir := filepath.Join(mounts[""], p)
			if _, err := os.Stat(filepath.Join(dir, controller+".max")); err == nil || controller == "memory" {
				return cgroupOf{dir: dir, v2: true}
			}
		}
	}
	t.Fatalf("process %d is in no %s cgroup:\n%s", pid, controller, data)
	return cgroupOf{}
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// The cgroups of a pierd killed with SIGKILL (and what still runs in them)
// are removed by the next New on its data dir.
func TestNewRemovesStaleCgroups(t *testing.T) {
	skipUnlessRoot(t)
	dir := dataDir(t)
	sup, pid, child := startSupervisor(t, dir, "child")
	if child == 0 {
		t.Fatal("the web process started no child")
	}
	stale := cgroupDir(t, child, "pids").dir
	sup.Process.Kill()
	sup.Wait()
	eventually(t, "the web process dies with its supervisor", func() bool { return !alive(pid) })
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the killed supervisor's cgroup is not there to sweep: %v", err)
	}
	defer syscall.Kill(child, syscall.SIGKILL) // should the test fail
	sweepCgroups(t, dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s, left by the killed supervisor, is still there after New (%v)", stale, err)
	}
	eventually(t, "the child left behind is killed", func() bool { return !alive(child) })
	// Shutdown removed the installation's own cgroup too.
	if _, err := os.Stat(filepath.Dir(stale)); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s outlives Shutdown (%v)", filepath.Dir(stale), err)
	}
}

// sweepCgroups starts and stops a scheduler on dir, which removes the
// cgroups a killed supervisor left there.
func sweepCgroups(t *testing.T, dir string) {
	t.Helper()
	s, err := local.New(local.Config{DataDir: dir, Launch: launch})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
