package main_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pierpaas/pier"
)

// fullDiskSize is the filesystem TestFullDisk gives pierd: room for the
// embedded Postgres and two builds of the Go sample with their cache.
const fullDiskSize = "768m"

// TestFullDisk is issue 15's point 5: pierd with everything it writes on
// one small filesystem (its data dir, and, as root, the Postgres cluster
// and the runtime dir that live under /var/lib/pier), which then fills
// up. A push and a config change fail saying "no space left on device"
// and what to do, leave nothing half-written, and the app keeps serving
// its release; once space is freed, both work again.
//
// The filesystem is a tmpfs mounted over /var/lib/pier in a mount
// namespace of pierd's own (and of its Postgres, builds and apps, which
// inherit it): nothing outside that namespace sees it, so the real
// /var/lib/pier of other tests running at the same time is untouched.
// The test reaches into it through /proc/<pierd>/root.
func TestFullDisk(t *testing.T) {
	skipShort(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("TestFullDisk mounts a tmpfs: CI must run it as root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	s, d := startFullDiskStack(t)
	r := s.newRepo("testdata/hello", "brimful")
	if out := r.mustPush(); !strings.Contains(out, "Released v2") {
		t.Fatalf("first push:\n%s", out)
	}
	if got := s.body("brimful", "/"); got != "hello  from one" {
		t.Fatalf("v2 serves %q", got)
	}
	deployed := r.head()
	builds := d.buildDirs(t, "brimful")
	t.Logf("after the first push: %s used of %s; build dirs %v", mib(d.used(t)), fullDiskSize, builds)

	// 1. Room for the push itself but not for the build: the build fails
	// on the full disk, and the app keeps its release.
	d.fill(t, 2<<20)
	r.edit("main.go", `"one"`, `"two"`, "second")
	out, err := r.push()
	t.Logf("push with %s free:\n%s", mib(d.free(t)), out)
	wantNoSpace(t, "the push whose build fills the disk", out, err)
	d.checkNothingHalfWritten(t, "brimful", builds)
	if got := s.body("brimful", "/"); got != "hello  from one" {
		t.Fatalf("after the failed build, the app serves %q", got)
	}

	// 2. No room at all: the push fails as git receives it.
	d.fill(t, 0)
	out, err = r.push()
	t.Logf("push with %s free:\n%s", mib(d.free(t)), out)
	wantNoSpace(t, "the push on a full disk", out, err)
	d.checkNothingHalfWritten(t, "brimful", builds)
	// Neither failed push moved main: the repository still has the
	// deployed commit.
	if got := strings.Fields(r.git("ls-remote", "pier", "refs/heads/main")); len(got) == 0 || got[0] != deployed {
		t.Fatalf("main on the server is %v after the failed pushes, want %s", got, deployed)
	}

	// 3. Config changes. Postgres writes into pages and WAL segments it
	// already has, so the first ones may still succeed; it runs out when
	// a table or the WAL must grow. Every failure must be the clear one.
	var ok, failed int
	for i := 0; i < 60 && failed == 0; i++ {
		out, err := s.c.run("", "config:set", "GREETING=full"+strconv.Itoa(i), "-a", "brimful")
		if err == nil {
			ok++
			continue
		}
		failed++
		t.Logf("config:set %d, after %d that succeeded on the full disk: %s", i, ok, out)
		wantNoSpace(t, "config:set on a full disk", out, err)
	}
	if failed == 0 {
		t.Fatalf("%d config changes succeeded on a full disk: it never filled (free: %s)", ok, mib(d.free(t)))
	}
	rels := s.releases(t, "brimful")
	for i, rel := range rels {
		if rel.Status == pier.ReleasePending {
			t.Errorf("release v%d is left pending: %+v", rel.Version, rel)
		}
		if i > 0 && rels[i-1].Version != rel.Version+1 {
			t.Errorf("releases have a gap: v%d after v%d", rels[i-1].Version, rel.Version)
		}
	}
	cur := rels[0].Version
	t.Logf("releases on the full disk: newest v%d (%d config changes succeeded)", cur, ok)
	if got := s.body("brimful", "/"); !strings.HasSuffix(got, "from one") {
		t.Fatalf("on the full disk the app serves %q", got)
	}
	// What the database made of it: a full WAL makes Postgres PANIC.
	logs, _ := filepath.Glob(filepath.Join(d.root, "pg-*", "postgres.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "PANIC") || strings.Contains(line, "No space left") {
				t.Logf("postgres.log: %s", line)
			}
		}
	}

	// 4. Space freed: the next push and config change go through.
	d.free0(t)
	out = r.mustPush()
	if !strings.Contains(out, fmt.Sprintf("Released v%d", cur+1)) {
		t.Fatalf("push after freeing space, want v%d:\n%s", cur+1, out)
	}
	s.c.must("", "config:set", "GREETING=again", "-a", "brimful")
	if got := s.body("brimful", "/"); got != "hello again from two" {
		t.Fatalf("after freeing space the app serves %q", got)
	}
	s.d.stop(t)
}

// wantNoSpace fails unless a command failed saying the disk is full and
// what to do, and not as an internal error.
func wantNoSpace(t *testing.T, what, out string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded:\n%s", what, out)
	}
	low := strings.ToLower(out)
	if !strings.Contains(low, "no space left on device") || !strings.Contains(low, "free space") {
		t.Errorf("%s does not say the disk is full and what to do:\n%s", what, out)
	}
	if strings.Contains(low, "internal error") {
		t.Errorf("%s says internal error:\n%s", what, out)
	}
}

func (s *stack) releases(t *testing.T, app string) []pier.Release {
	t.Helper()
	var rels []pier.Release
	jsonOut(t, s.c.must("", "releases", "-a", app, "--json"), &rels)
	return rels
}

// smallDisk is the filesystem pierd's mount namespace has at /var/lib/pier.
type smallDisk struct {
	root   string // /proc/<pierd>/root/var/lib/pier: the tmpfs, as the test reaches it
	filler string
}

// startFullDiskStack starts pierd all with a tmpfs of fullDiskSize over
// /var/lib/pier in a mount namespace of its own, its data dir and TMPDIR
// in it, and signs a user in.
func startFullDiskStack(t *testing.T) (*stack, *smallDisk) {
	t.Helper()
	const mnt = "/var/lib/pier"
	// The mount point must exist; creating it changes nothing there.
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: this one runs after pierd has stopped, and
	// ends what is left in the namespace (a Postgres pierd could not stop),
	// by pid, which frees the tmpfs.
	var ns string
	t.Cleanup(func() {
		if ns != "" {
			killNamespace(t, ns)
		}
	})
	s := &stack{t: t, data: mnt + "/data", prefix: []string{
		"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount -t tmpfs -o size=` + fullDiskSize + `,mode=0755 pier-full-disk ` + mnt +
			` && mkdir -m 1777 ` + mnt + `/tmp && exec "$@"`, "sh",
	}}
	s.env = []string{"PIER_DATA_DIR=" + s.data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0", "PIER_SSH_ADDR=127.0.0.1:0", "TMPDIR=" + mnt + "/tmp"}
	s.start()
	pid := s.d.cmd.Process.Pid
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		t.Fatal(err)
	}
	ns = link
	if own, _ := os.Readlink("/proc/self/ns/mnt"); own == ns {
		t.Fatal("pierd runs in the test's own mount namespace")
	}
	d := &smallDisk{root: fmt.Sprintf("/proc/%d/root%s", pid, mnt)}
	d.filler = filepath.Join(d.root, "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.root, &st); err != nil || st.Type != 0x01021994 { // TMPFS_MAGIC
		t.Fatalf("%s is not pierd's tmpfs: type %#x, %v", d.root, st.Type, err)
	}
	s.signIn(filepath.Join(d.root, "data", "bootstrap-token"))
	return s, d
}

// killNamespace SIGKILLs every process left in the mount namespace ns.
func killNamespace(t *testing.T, ns string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, _ := os.Readlink("/proc/" + e.Name() + "/ns/mnt"); link == ns {
			t.Logf("killing %d, left in pierd's mount namespace", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (d *smallDisk) statfs(t *testing.T) syscall.Statfs_t {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.root, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (d *smallDisk) free(t *testing.T) int64 {
	st := d.statfs(t)
	return int64(st.Bavail) * st.Bsize
}

func (d *smallDisk) used(t *testing.T) int64 {
	st := d.statfs(t)
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// fill grows the filler file until at most leave bytes are free (0: until
// the filesystem refuses to take more).
func (d *smallDisk) fill(t *testing.T, leave int64) {
	t.Helper()
	f, err := os.OpenFile(d.filler, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		n := int64(len(chunk))
		if leave > 0 {
			n = min(n, d.free(t)-leave)
			if n <= 0 {
				return
			}
		}
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				if leave > 0 {
					t.Fatalf("the disk filled up before %s were left", mib(leave))
				}
				return
			}
			t.Fatal(err)
		}
	}
}

// free0 removes the filler.
func (d *smallDisk) free0(t *testing.T) {
	t.Helper()
	if err := os.Remove(d.filler); err != nil {
		t.Fatal(err)
	}
}

// buildDirs lists the entries of the app's build store (builder/host):
// one dir per build, its .cache, and nothing else once builds are done.
func (d *smallDisk) buildDirs(t *testing.T, app string) []string {
	t.Helper()
	rts, err := filepath.Glob(filepath.Join(d.root, "rt-*", "builds", app))
	if err != nil || len(rts) != 1 {
		t.Fatalf("the build store of %s: %v %v", app, rts, err)
	}
	ents, err := os.ReadDir(rts[0])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// checkNothingHalfWritten: no new build dir, scratch dir or half-saved
// cache, and no pushed tree left in TMPDIR.
func (d *smallDisk) checkNothingHalfWritten(t *testing.T, app string, before []string) {
	t.Helper()
	if now := d.buildDirs(t, app); strings.Join(now, " ") != strings.Join(before, " ") {
		t.Errorf("the build store of %s holds %v, had %v", app, now, before)
	}
	if left, _ := os.ReadDir(filepath.Join(d.root, "tmp")); len(left) > 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("left in TMPDIR: %v", names)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
