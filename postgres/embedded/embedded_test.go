package embedded

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// needPostgres skips in -short runs (these tests start real servers), and
// when the binaries are missing, unless CI=true.
func needPostgres(t *testing.T) {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if testing.Short() && !ci {
		t.Skip("starts a real Postgres server; skipped with -short")
	}
	if _, err := FindBinaries(); err != nil {
		if ci {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func TestClusterLifecycle(t *testing.T) {
	needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := t.TempDir()

	c := New(base)
	// Production settings (no Fast): this is what `make run` gets.
	t.Cleanup(func() {
		if err := New(base).Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		if os.Geteuid() == 0 && !strings.HasPrefix(c.Root, RelocatedRoot+"/") {
			t.Errorf("as root, cluster in %s, want under %s", c.Root, RelocatedRoot)
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Password == "" || len(c.Password) < 32 {
		t.Fatalf("password %q", c.Password)
	}
	checkModes(t, c)

	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var listen, auth string
	if err := conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != "" {
		t.Errorf("listen_addresses = %q, want '' (no TCP)", listen)
	}
	if err := conn.QueryRow(ctx, "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules").Scan(&auth); err != nil {
		t.Fatal(err)
	}
	if auth != "scram-sha-256" {
		t.Errorf("pg_hba auth methods %q, want only scram-sha-256", auth)
	}
	conn.Close(ctx)

	// A wrong password and no password are both refused.
	for _, pw := range []string{"wrong", ""} {
		bad := *c
		bad.Password = pw
		if conn, err := pgx.Connect(ctx, bad.DSN("postgres")); err == nil {
			conn.Close(ctx)
			t.Fatalf("connected with password %q", pw)
		}
	}

	if err := c.CreateDatabase(ctx, "pier-app"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(ctx, "pier-app"); err != nil {
		t.Fatalf("second CreateDatabase: %v", err)
	}
	conn, err = pgx.Connect(ctx, c.DSN("pier-app"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	// Start on a running cluster adopts the running postmaster.
	pid, _ := c.runningPID()
	again := New(base)
	if err := again.Start(ctx); err != nil {
		t.Fatalf("Start while running: %v", err)
	}
	if p, _ := again.runningPID(); p != pid {
		t.Fatalf("postmaster pid %d after second Start, want %d (reused)", p, pid)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.runningPID(); ok {
		t.Fatal("still running after Stop")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop when stopped: %v", err)
	}

	// A restart, as a second `make run` does, keeps data and password.
	re := New(base)
	if err := re.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if re.Password != c.Password {
		t.Fatal("password changed across restarts")
	}
	conn, err = pgx.Connect(ctx, re.DSN("pier-app"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "hello" {
		t.Fatalf("data after restart: %q, %v", v, err)
	}
}

func checkModes(t *testing.T, c *Cluster) {
	t.Helper()
	want := map[string]os.FileMode{c.PasswordFile: 0o600, c.Dir: 0o700, c.SocketDir: 0o700, c.Root: 0o700}
	for path, mode := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{c.Root, c.Dir, c.SocketDir} {
		fi, _ := os.Stat(path)
		if uid := fi.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != pg.Uid {
			t.Errorf("%s owned by uid %d, want postgres (%s)", path, uid, pg.Uid)
		}
	}
}

func TestStartFailureShowsLog(t *testing.T) {
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
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// A setting the server rejects at start-up must surface its log line.
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("shared_buffers = 'not a size'\n")
	f.Close()
	err = c.Start(ctx)
	if err == nil {
		c.Stop(ctx)
		t.Fatal("Start succeeded with a broken config")
	}
	t.Logf("Start error (expected): %v", err)
	if !strings.Contains(err.Error(), "shared_buffers") {
		t.Fatalf("error does not show the log: %v", err)
	}
}

func TestDSNQuoting(t *testing.T) {
	c := &Cluster{SocketDir: `/tmp/a dir/it's`, Port: 5433, User: "pier", Password: `p'a\ss word`}
	cfg, err := pgconn.ParseConfig(c.DSN("my db"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != c.SocketDir || cfg.Port != 5433 || cfg.User != "pier" || cfg.Password != c.Password || cfg.Database != "my db" {
		t.Fatalf("round trip: %+v", cfg)
	}
}

func TestNewLayout(t *testing.T) {
	c := New("rel/dir")
	if !filepath.IsAbs(c.BaseDir) || filepath.Dir(c.PasswordFile) != c.BaseDir {
		t.Fatalf("BaseDir %q PasswordFile %q", c.BaseDir, c.PasswordFile)
	}
	if os.Geteuid() == 0 {
		if filepath.Dir(c.Root) != RelocatedRoot || New("rel/dir").Root != c.Root || New("other").Root == c.Root {
			t.Fatalf("root layout: %s", c.Root)
		}
	} else if c.Root != filepath.Join(c.BaseDir, "postgres") {
		t.Fatalf("Root %q", c.Root)
	}
	if c.Port != DefaultPort || c.User != DefaultUser || c.Fast {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestCreateDatabaseRejectsBadNames(t *testing.T) {
	c := New(t.TempDir())
	for _, name := range []string{"", strings.Repeat("x", 64), "a\x00b"} {
		if err := c.CreateDatabase(context.Background(), name); err == nil {
			t.Errorf("CreateDatabase(%q) = %v, want an error", name, err)
		}
	}
}
