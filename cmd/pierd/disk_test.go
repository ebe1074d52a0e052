package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/postgres/embedded"
)

// fullDiskSize is the filesystem TestFullDisk gives pierd: room for the
// embedded Postgres and two builds of the Go sample with their cache.
const fullDiskSize = "768m"

// TestFullDisk is issue 15's point 5: pierd with everything it writes on
// one small filesystem (its data dir, TMPDIR, and, as root, the Postgres
// cluster and the runtime dir that live under /var/lib/pier), which then
// fills up. A push and a config change fail saying "no space left on
// device" and what to do, leave nothing half-written, and the app keeps
// serving its release; once space is freed, both work again.
//
// The filesystem is a tmpfs mounted in a mount namespace of pierd's own
// (and of its Postgres, builds and apps, which inherit it): nothing
// outside that namespace sees it, so other tests running at the same time
// are untouched (see startFullDiskStack). The test reaches into it through
// /proc/<holder>/root.
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
	d.prepareChurn(t)
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

	// 4. The database itself keeps writing on the full disk (the test's
	// churn in the maintenance database stands for what piles up while a
	// disk stays full): once its WAL must grow, Postgres PANICs, and its
	// crash recovery fails for want of space, attempt after attempt of
	// pierd's supervisor. The API says the database is not answering
	// (503), never "internal error", and the app keeps serving.
	err = d.churnUntilFull(t)
	t.Logf("the churn on the full disk ended with: %v", err)
	var down time.Time
	eventually(t, time.Minute, "the API says the database is not answering", func() (bool, string) {
		out, err := s.c.run("", "config:set", "GREETING=nodb", "-a", "brimful")
		if err == nil {
			return false, "config:set succeeded"
		}
		if strings.Contains(out, "internal error") {
			t.Errorf("config:set with the database down answered an internal error: %s", out)
		}
		down = time.Now()
		return strings.Contains(out, pier.OutageMessage), strings.TrimSpace(out)
	})
	for _, l := range d.postgresLog(t) {
		t.Logf("postgres.log: %s", l)
	}
	if got := s.body("brimful", "/"); got != "hello  from one" {
		t.Fatalf("with the database down, the app serves %q", got)
	}

	// 5. Space freed: the supervisor's next attempt recovers the database,
	// with no restart of pierd and no committed change lost.
	d.free0(t)
	freed := time.Now()
	eventually(t, 2*time.Minute, "the database is back without a restart of pierd", func() (bool, string) {
		out, err := s.c.run("", "releases", "-a", "brimful", "--json")
		return err == nil, strings.TrimSpace(out)
	})
	t.Logf("the database answered again %s after space was freed, %s after the API first said it was not answering",
		time.Since(freed).Round(100*time.Millisecond), time.Since(down).Round(100*time.Millisecond))
	if after := s.releases(t, "brimful"); len(after) != len(rels) || after[0].Version != cur || after[0].Note != rels[0].Note {
		t.Fatalf("after recovery, releases %+v, before the crash %+v", after, rels)
	}
	out = r.mustPush()
	if !strings.Contains(out, fmt.Sprintf("Released v%d", cur+1)) {
		t.Fatalf("push after freeing space, want v%d:\n%s", cur+1, out)
	}
	s.c.must("", "config:set", "GREETING=again", "-a", "brimful")
	if got := s.body("brimful", "/"); got != "hello again from two" {
		t.Fatalf("after freeing space the app serves %q", got)
	}
	if now := d.buildDirs(t, "brimful"); len(now) != len(builds)+1 {
		t.Errorf("build store after the next push: %v (before the full disk: %v)", now, builds)
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

// smallDisk is the one filesystem that holds what pierd writes.
type smallDisk struct {
	root   string // the tmpfs, as the test reaches it: /proc/<holder>/root/<its mount point>
	filler string
	pg, rt string // the embedded Postgres cluster's dir and pierd's runtime dir, on it
}

// startFullDiskStack starts pierd all with everything it writes on one
// tmpfs of fullDiskSize, mounted in a mount namespace of its own, and
// signs a user in. The namespace is held by a process of its own, so that
// pierd can be restarted in it.
//
// The tmpfs is mounted on a temp dir of the test and holds pierd's data
// dir and TMPDIR; two of its dirs are bound over the dirs that, as root,
// pierd keeps its Postgres cluster and runtime dir in,
// /var/lib/pier/{pg,rt}-<hash of the data dir>. The rest of /var/lib/pier
// stays as it is, in the namespace as outside it: pierd's start removes
// the firewall chains of runtime dirs it finds gone (scheduler/local/
// firewall), and the other tests' pierds running at the same time must
// see each other's, and this one's, as there.
func startFullDiskStack(t *testing.T) (*stack, *smallDisk) {
	t.Helper()
	mnt := t.TempDir()
	data := filepath.Join(mnt, "data")
	pg, rt := embedded.RelocatedDir("pg", data), embedded.RelocatedDir("rt", data)
	// The mount points, as everyone outside the namespace sees them; the
	// runtime's scheduler dir names this pierd's firewall chain.
	for _, d := range []string{pg, filepath.Join(rt, "scheduler")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount -t tmpfs -o size=`+fullDiskSize+`,mode=0755 pier-full-disk "$1" &&
			mkdir -m 0700 "$1/pg" && mkdir -m 0711 "$1/rt" && mkdir -m 1777 "$1/tmp" &&
			mount --bind "$1/pg" "$2" && mount --bind "$1/rt" "$3" && exec sleep infinity`,
		"sh", mnt, pg, rt)
	holder.Stdout, holder.Stderr = os.Stderr, os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	pid := holder.Process.Pid
	ns := fmt.Sprintf("/proc/%d/ns/mnt", pid)
	inNS := func(p string) string { return fmt.Sprintf("/proc/%d/root%s", pid, p) }
	d := &smallDisk{root: inNS(mnt), pg: inNS(pg), rt: inNS(rt)}
	d.filler = filepath.Join(d.root, "filler")
	// Cleanups run last first: this one runs after pierd has stopped, and
	// ends what is left in the namespace (a Postgres pierd could not stop,
	// the holder), by pid, which frees the tmpfs; then it removes the
	// mount points.
	var nsLink string
	t.Cleanup(func() {
		holder.Process.Kill()
		holder.Wait()
		if nsLink != "" {
			killNamespace(t, nsLink)
		}
		for _, d := range []string{filepath.Join(rt, "scheduler"), rt, pg} {
			if err := os.Remove(d); err != nil {
				t.Logf("removing the mount point %s: %v", d, err)
			}
		}
	})
	eventually(t, 10*time.Second, "the tmpfs is mounted", func() (bool, string) {
		var fs syscall.Statfs_t
		var root, pgDir, rtDir syscall.Stat_t
		err := errors.Join(syscall.Statfs(d.root, &fs), syscall.Stat(d.root, &root), syscall.Stat(d.pg, &pgDir), syscall.Stat(d.rt, &rtDir))
		// TMPFS_MAGIC, and the cluster's and runtime dirs on that one filesystem.
		return err == nil && fs.Type == 0x01021994 && pgDir.Dev == root.Dev && rtDir.Dev == root.Dev, fmt.Sprint(err)
	})
	var err error
	if nsLink, err = os.Readlink(ns); err != nil {
		t.Fatal(err)
	}
	if own, _ := os.Readlink("/proc/self/ns/mnt"); own == nsLink {
		t.Fatal("the holder is in the test's own mount namespace")
	}
	s := &stack{t: t, data: data, prefix: []string{"nsenter", "--mount=" + ns, "--"}}
	s.env = []string{"PIER_DATA_DIR=" + s.data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0", "PIER_SSH_ADDR=127.0.0.1:0", "TMPDIR=" + filepath.Join(mnt, "tmp")}
	s.start()
	if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", s.d.cmd.Process.Pid)); link != nsLink {
		t.Fatalf("pierd runs in mount namespace %s, not the tmpfs's %s", link, nsLink)
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
	ents, err := os.ReadDir(filepath.Join(d.rt, "builds", app))
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
// cache, and no pushed tree left in TMPDIR or the runtime dir's src/.
func (d *smallDisk) checkNothingHalfWritten(t *testing.T, app string, before []string) {
	t.Helper()
	if now := d.buildDirs(t, app); strings.Join(now, " ") != strings.Join(before, " ") {
		t.Errorf("the build store of %s holds %v, had %v", app, now, before)
	}
	for _, dir := range []string{filepath.Join(d.root, "tmp"), filepath.Join(d.rt, "src")} {
		if left, _ := os.ReadDir(dir); len(left) > 0 {
			var names []string
			for _, e := range left {
				names = append(names, e.Name())
			}
			t.Errorf("left in %s: %v", dir, names)
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// connect opens a superuser connection to the embedded Postgres in the
// namespace, through its socket as /proc/<holder>/root reaches it.
func (d *smallDisk) connect(t *testing.T, ctx context.Context) *pgx.Conn {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(d.root, "data", "postgres-password"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig("dbname=postgres sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Password = filepath.Join(d.pg, "run"), embedded.DefaultPort, embedded.DefaultUser, strings.TrimSpace(string(pw))
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// prepareChurn makes, in the cluster's maintenance database (not Pier's),
// a table that can be updated in place for ever: HOT updates of rows of
// one size, in pages half empty. Such updates need no new page, only WAL.
func (d *smallDisk) prepareChurn(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := d.connect(t, ctx)
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE churn (id int PRIMARY KEY, v text) WITH (fillfactor = 50)`,
		`INSERT INTO churn SELECT g, md5(g::text) FROM generate_series(1, 1000) g`,
		`CREATE PROCEDURE churn() LANGUAGE plpgsql AS $$
			BEGIN FOR i IN 1..10000000 LOOP
				UPDATE churn SET v = md5(random()::text) WHERE id = 1 + i % 1000; COMMIT;
			END LOOP; END $$`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

// churnUntilFull writes WAL, committing all along, until the server
// fails; it returns how.
func (d *smallDisk) churnUntilFull(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn := d.connect(t, ctx)
	defer conn.Close(context.Background())
	_, err := conn.Exec(ctx, `CALL churn()`)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("10M commits on a full disk: %v", err)
	}
	return err
}

// postgresLog is what the cluster's log says of a full disk.
func (d *smallDisk) postgresLog(t *testing.T) []string {
	b, _ := os.ReadFile(filepath.Join(d.pg, "postgres.log"))
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "PANIC") || strings.Contains(line, "No space left") || strings.Contains(line, "FATAL") ||
			strings.Contains(line, "shut down") || strings.Contains(line, "redo done") {
			lines = append(lines, line)
		}
	}
	return lines
}
