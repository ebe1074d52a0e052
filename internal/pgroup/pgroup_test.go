package pgroup

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func needLinux(t *testing.T) {
	t.Helper()
	if !supported {
		t.Skip("process group records need Linux")
	}
}

// startGroup starts sh in its own process group; sh starts `sleep 300` in
// the background (the same group) and prints its pid. With exit, sh then
// exits and leaves the sleep behind, as an app's launcher can.
func startGroup(t *testing.T, exit bool) (*exec.Cmd, int) {
	t.Helper()
	script := "sleep 300 & echo $!; wait"
	if exit {
		script = "sleep 300 & echo $!"
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	child, err2 := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || err2 != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sh said %q: %v %v", line, err, err2)
	}
	t.Cleanup(func() {
		syscall.Kill(child, syscall.SIGKILL)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	return cmd, child
}

func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func records(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestOpenIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pgroups")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("records dir: %v %v", fi, err)
	}
}

// Wait kills what the leader left in its group and removes the record.
func TestWaitKillsTheGroupAndForgetsIt(t *testing.T) {
	needLinux(t)
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd, child := startGroup(t, true)
	g, err := r.Track(cmd)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, r.Dir())
	if len(recs) != 1 || !strings.HasPrefix(recs[0], strconv.Itoa(cmd.Process.Pid)+"-") {
		t.Fatalf("records %v", recs)
	}
	var rec record
	b, _ := os.ReadFile(filepath.Join(r.Dir(), recs[0]))
	if err := json.Unmarshal(b, &rec); err != nil || rec.PGID != cmd.Process.Pid || rec.UID != os.Getuid() || rec.Start == 0 || rec.SID != mustSID(t) || rec.Boot == "" {
		t.Fatalf("record %s: %v", b, err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the leader's child dies with the group", func() bool { return !alive(child) })
	if recs := records(t, r.Dir()); len(recs) != 0 {
		t.Fatalf("records left after Wait: %v", recs)
	}
	if err := g.Signal(syscall.SIGKILL); err != syscall.ESRCH {
		t.Fatalf("Signal after Wait: %v", err)
	}
}

func mustSID(t *testing.T) int {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return st.sid
}

// Reap kills the groups an earlier run left behind, leader and children,
// and deletes the records.
func TestReapKillsLeftovers(t *testing.T) {
	needLinux(t)
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd, child := startGroup(t, false)
	if _, err := r.Track(cmd); err != nil { // and then "pierd dies"
		t.Fatal(err)
	}
	// A group whose leader is gone (reaped), its child orphaned.
	cmd2, orphan := startGroup(t, true)
	if _, err := r.Track(cmd2); err != nil {
		t.Fatal(err)
	}
	cmd2.Wait()
	if !alive(orphan) {
		t.Fatal("the orphan died by itself")
	}
	var logs bytes.Buffer
	again, _ := Open(dir)
	reaped, err := again.Reap(slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Wait would block on the pipe the leftover child holds if Reap
	// missed it: the test fails instead, and the cleanup kills it.
	eventually(t, "the leader is killed", func() bool { return !alive(cmd.Process.Pid) })
	eventually(t, "the leftover child is killed", func() bool { return !alive(child) })
	eventually(t, "the orphan is killed", func() bool { return !alive(orphan) })
	pids := map[int]bool{}
	for _, p := range reaped {
		pids[p.PID] = true
		if p.PGID != cmd.Process.Pid && p.PGID != cmd2.Process.Pid {
			t.Errorf("reaped %+v, of another group", p)
		}
	}
	if !pids[child] || !pids[cmd.Process.Pid] || !pids[orphan] || len(reaped) != 3 {
		t.Errorf("reaped %+v, want %d, %d and %d", reaped, cmd.Process.Pid, child, orphan)
	}
	if !strings.Contains(logs.String(), "pid="+strconv.Itoa(child)) || !strings.Contains(logs.String(), "command=sleep") {
		t.Errorf("log does not name what was killed:\n%s", logs.String())
	}
	if recs := records(t, dir); len(recs) != 0 {
		t.Fatalf("records left after Reap: %v", recs)
	}
	cmd.Wait()
}

// Reap leaves alone a group whose record does not match it in every way.
func TestReapSparesStrangers(t *testing.T) {
	needLinux(t)
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd, child := startGroup(t, false)
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	st, err := readStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	good := record{PGID: st.pgid, SID: st.sid, UID: os.Getuid(), Start: st.start, Boot: bootID()}
	for name, mod := range map[string]func(*record){
		"recycled leader pid": func(r *record) { r.Start-- },
		"another session":     func(r *record) { r.SID++ },
		"another uid":         func(r *record) { r.UID = os.Getuid() + 1 },
		"another boot":        func(r *record) { r.Boot = "not-this-boot" },
	} {
		rec := good
		mod(&rec)
		b, _ := json.Marshal(rec)
		if err := os.WriteFile(filepath.Join(dir, strings.ReplaceAll(name, " ", "-")), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "garbage"), []byte("{not json"), 0o600)
	reaped, err := r.Reap(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 0 {
		t.Errorf("reaped %+v", reaped)
	}
	if !alive(cmd.Process.Pid) || !alive(child) {
		t.Error("a stranger's process was killed")
	}
	if recs := records(t, dir); len(recs) != 0 {
		t.Fatalf("records left after Reap: %v", recs)
	}
}

// In a container the session's leader is often outside the PID namespace
// and the kernel gives the session as 0. Reap must still kill the groups
// recorded there: the reap tests run again inside a new PID namespace.
func TestReapInsideAPIDNamespace(t *testing.T) {
	needLinux(t)
	if os.Getenv("PIER_PGROUP_IN_NAMESPACE") != "" {
		t.Skip("already inside the namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("with CI=true this test needs root and unshare (util-linux): euid %d, %v", os.Geteuid(), err)
		}
		t.Skip("needs root and unshare (util-linux) for a PID namespace")
	}
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", os.Args[0],
		"-test.run", "^(TestReapKillsLeftovers|TestReapSparesStrangers)$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "PIER_PGROUP_IN_NAMESPACE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the reap tests failed inside a PID namespace: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestReapKillsLeftovers")) {
		t.Fatalf("the reap tests did not run inside the namespace:\n%s", out)
	}
	// The namespace must really hide the session, or this test proves
	// nothing.
	sid, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "sh", "-c", "cut -d' ' -f6 /proc/self/stat").Output()
	if err != nil || strings.TrimSpace(string(sid)) != "0" {
		t.Fatalf("inside the namespace the session is %q (%v), want 0", sid, err)
	}
}
