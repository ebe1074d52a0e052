package embedded

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSupervise kills the postmaster with SIGKILL, as the OOM killer would:
// the supervisor starts it again, with crash recovery, and committed data
// is still there. Once the supervisor is stopped, a stopped cluster stays
// stopped.
func TestSupervise(t *testing.T) {
	needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := t.TempDir()
	c := New(base) // durable settings: crash recovery is the point
	t.Cleanup(func() { New(base).Destroy(context.Background()) })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Adopted {
		t.Fatal("a fresh cluster was adopted")
	}
	exec := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the kill')")

	// The supervisor owns c from here on: the test connects with a copy.
	probe := *c
	sup := c.Supervise(ctx, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	t.Cleanup(sup.Stop) // before Destroy, on a failure too
	for round := 1; round <= 2; round++ {
		pid, ok := probe.runningPID()
		if !ok {
			t.Fatal("no postmaster")
		}
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var back time.Duration
		for {
			if now, ok := probe.runningPID(); ok && now != pid && probe.ready(ctx) {
				back = time.Since(killed)
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("round %d: the postmaster was not started again:\n%s", round, tail(c.LogFile, 0, 4096))
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("round %d: postmaster %d killed; a new one was ready %s later", round, pid, back.Round(time.Millisecond))
	}
	conn, err := pgx.Connect(ctx, probe.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "before the kill" {
		t.Fatalf("after the kills: %q, %v", v, err)
	}
	conn.Close(ctx)

	// Stopped in the order pierd stops: the supervisor, then the cluster.
	sup.Stop()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if pid, ok := c.runningPID(); ok {
		t.Fatalf("postmaster %d runs after the supervisor and the cluster were stopped", pid)
	}
}

// TestSuperviseNeverInitdb: a data dir that vanished under a supervised
// cluster (an unmounted volume) is never replaced by a new, empty one; the
// supervisor waits, and starts the cluster once the dir is back.
func TestSuperviseNeverInitdb(t *testing.T) {
	needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := t.TempDir()
	c := New(base)
	c.Fast = true
	t.Cleanup(func() { New(base).Destroy(context.Background()) })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	probe := *c
	pid, ok := probe.runningPID()
	if !ok {
		t.Fatal("no postmaster")
	}
	sup := c.Supervise(ctx, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	t.Cleanup(sup.Stop)
	away := c.Dir + ".away"
	if err := os.Rename(c.Dir, away); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Several restart attempts (backoff 0.5 s, 1 s, 2 s) find no data dir.
	time.Sleep(4 * time.Second)
	if _, err := os.Lstat(c.Dir); !os.IsNotExist(err) {
		t.Fatalf("the supervisor made a data dir where the old one vanished (%v)", err)
	}
	if err := os.Rename(away, c.Dir); err != nil {
		t.Fatal(err)
	}
	for !probe.ready(ctx) {
		if ctx.Err() != nil {
			t.Fatalf("the cluster was not started once its data dir came back:\n%s", tail(c.LogFile, 0, 4096))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStartAdopts: a second Start on a running cluster adopts it.
func TestStartAdopts(t *testing.T) {
	needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := t.TempDir()
	c := New(base)
	c.Fast = true
	t.Cleanup(func() { New(base).Destroy(context.Background()) })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	again := New(base)
	if err := again.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !again.Adopted {
		t.Fatal("a second Start on a running cluster did not adopt it")
	}
}

// TestClearLocks: lock files naming a dead process are removed, one naming
// a live postgres is kept.
func TestClearLocks(t *testing.T) {
	dir := t.TempDir()
	c := &Cluster{Dir: dir, SocketDir: dir, Port: 5432}
	write := func(name string, pid int) {
		if err := os.WriteFile(dir+"/"+name, []byte(strconv.Itoa(pid)+"\n"+dir+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A pid that is surely dead: a child we started and reaped.
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	write("postmaster.pid", p.Pid)
	write(".s.PGSQL.5432.lock", os.Getpid()) // alive, but not postgres
	c.clearLocks()
	for _, name := range []string{"postmaster.pid", ".s.PGSQL.5432.lock"} {
		if _, err := os.Stat(dir + "/" + name); !os.IsNotExist(err) {
			t.Errorf("%s naming a process that is no postmaster was kept (%v)", name, err)
		}
	}
}

// ready says whether the cluster accepts connections.
func (c *Cluster) ready(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, c.DSN("postgres"))
	if err != nil {
		return false
	}
	conn.Close(cctx)
	return true
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
