package main_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestKillMidDeploy is acceptance point 7: pierd killed with SIGKILL in the
// middle of a deploy leaves no app process running unsupervised, and once
// started again every app is back at its current release and formation,
// with no duplicate processes.
func TestKillMidDeploy(t *testing.T) {
	skipShort(t)
	s := startStack(t)
	r := s.newRepo("testdata/hello", "survivor")
	// Config vars are in every app process's environment: a fresh value
	// finds this app's processes, and only them.
	mark := fmt.Sprintf("%d", time.Now().UnixNano())
	s.c.must("", "config:set", "KILL_TEST_MARK="+mark, "-a", "survivor")
	r.mustPush()
	s.c.must("", "scale", "web=2", "-a", "survivor")
	procs := func() []int { return markedProcesses(t, "KILL_TEST_MARK", mark) }
	eventually(t, 10*time.Second, "two processes run", func() (bool, string) {
		p := procs()
		return len(p) == 2, fmt.Sprint(p)
	})

	// Killed during the build: the release is not written, so the app
	// comes back at v3 with the old code.
	r.edit("main.go", `"one"`, `"two"`, "second")
	s.killDuringPush(r, "-----> Go app detected")
	eventually(t, 5*time.Second, "no app process outlives pierd", func() (bool, string) {
		p := procs()
		return len(p) == 0, fmt.Sprint(p)
	})
	s.start()
	s.checkBack(r, procs, 2, map[int]string{3: "hello  from one"})
	if builds := lifecycleProcesses(t); len(builds) > 0 {
		t.Errorf("build processes left from the killed pierd: %v", builds)
	}

	// The app deploys again as usual.
	if out := r.mustPush(); !strings.Contains(out, "Released v4") {
		t.Fatalf("push after restart:\n%s", out)
	}
	s.checkBack(r, procs, 2, map[int]string{4: "hello  from two"})

	// Killed while the new processes start: whichever release Postgres
	// names is the one that serves.
	r.edit("main.go", `"two"`, `"three"`, "third")
	s.killDuringPush(r, "-----> Starting v5")
	eventually(t, 5*time.Second, "no app process outlives pierd", func() (bool, string) {
		p := procs()
		return len(p) == 0, fmt.Sprint(p)
	})
	s.start()
	s.checkBack(r, procs, 2, map[int]string{4: "hello  from two", 5: "hello  from three"})
	s.d.stop(t)
}

// killDuringPush pushes and SIGKILLs pierd as soon as the push output
// shows line; the push then fails.
func (s *stack) killDuringPush(r *repo, line string) {
	s.t.Helper()
	r.pointRemote()
	cmd := r.command("push", "pier", "main")
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	pushed := make(chan error, 1)
	go func() { pushed <- cmd.Wait() }()
	deadline := time.After(3 * time.Minute)
	for !strings.Contains(out.String(), line) {
		select {
		case err := <-pushed:
			s.t.Fatalf("push ended (%v) before %q:\n%s", err, line, out)
		case <-deadline:
			s.t.Fatalf("push never showed %q:\n%s", line, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := s.d.cmd.Process.Kill(); err != nil {
		s.t.Fatal(err)
	}
	<-s.d.done
	if err := <-pushed; err == nil && !strings.Contains(out.String(), "Released v") {
		s.t.Fatalf("push succeeded although pierd was killed before releasing:\n%s", out)
	}
}

// checkBack waits until the app serves the body its current release
// should (wants maps the acceptable current versions to their bodies),
// and checks it runs exactly n processes, a while later too.
func (s *stack) checkBack(r *repo, procs func() []int, n int, wants map[int]string) {
	s.t.Helper()
	var rels []pier.Release
	jsonOut(s.t, s.c.must("", "releases", "-a", r.app, "-n", "1", "--json"), &rels)
	want, ok := wants[rels[0].Version]
	if !ok {
		s.t.Fatalf("current release is v%d, want one of %v", rels[0].Version, wants)
	}
	eventually(s.t, 30*time.Second, "the app serves its current release", func() (bool, string) {
		code, body, err := s.get(&http.Client{Timeout: 5 * time.Second}, r.app, "/")
		return code == 200 && body == want, fmt.Sprintf("%d %q %v", code, body, err)
	})
	eventually(s.t, 10*time.Second, fmt.Sprintf("%d processes run", n), func() (bool, string) {
		p := procs()
		return len(p) == n, fmt.Sprint(p)
	})
	time.Sleep(time.Second)
	if p := procs(); len(p) != n {
		s.t.Fatalf("%d processes of v%d a second later, want %d: %v", len(p), rels[0].Version, n, p)
	}
}

// lifecycleProcesses lists the running processes of this test binary's
// copy of the CNB lifecycle (builds).
func lifecycleProcesses(t *testing.T) []string {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, filepath.Join(binDir, "lifecycle")) {
			out = append(out, e.Name()+" "+exe)
		}
	}
	return out
}
