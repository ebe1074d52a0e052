// Package embedded runs a private PostgreSQL cluster with the local server
// binaries (initdb, pg_ctl, postgres). It backs Pier's embedded default
// ("pierd all", "make run") and the test helpers in internal/testenv.
//
// Security: the cluster listens only on a unix socket (listen_addresses is
// empty, so no TCP port is opened) in a 0700 directory, and every connection
// needs a password (scram-sha-256; "trust" is never used). The superuser is
// "pier"; its password is generated with crypto/rand on first initialisation
// and kept in a 0600 file in the base directory, so a second Start on the same
// base directory reuses both the data and the password.
//
// Layout. As an ordinary user, everything lives under baseDir:
//
//	baseDir/postgres-password   superuser password (0600)
//	baseDir/postgres/data       data directory (0700)
//	baseDir/postgres/run        socket directory (0700)
//	baseDir/postgres/postgres.log
//
// As root (the machines Pier targets run as root), initdb and postgres refuse
// to run, so they run as the "postgres" system user instead, and that user
// must be able to reach the data directory. It cannot enter anything below a
// 0700 directory such as /root, where a checkout usually lives, so the
// cluster files move to /var/lib/pier/pg-<first 16 hex digits of the SHA-256
// of the absolute baseDir>/ (owned by postgres, 0700), while the password
// file stays in baseDir. The same baseDir always maps to the same cluster
// directory, so restarts find their data.
package embedded

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultPort is the port number of the cluster. Only a unix socket is
// opened, whose file name includes the number (.s.PGSQL.5432), so it cannot
// conflict with a TCP listener or with clusters using other socket dirs.
const DefaultPort = 5432

// DefaultUser is the superuser created by initdb.
const DefaultUser = "pier"

// RelocatedRoot is where clusters live when the process runs as root.
const RelocatedRoot = "/var/lib/pier"

// ErrNotInstalled is returned (wrapped) when the Postgres server binaries
// cannot be found.
var ErrNotInstalled = errors.New("postgres server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; install them with `apt-get install -y postgresql`")

// Cluster is one private Postgres cluster. New fills every field; callers may
// change Port, Fast or BinDir before Start.
type Cluster struct {
	BaseDir      string // directory given to New; holds the password file
	Root         string // directory holding the data dir, socket dir and log
	Dir          string // data directory
	SocketDir    string // unix socket directory
	LogFile      string // server log
	PasswordFile string // superuser password, 0600
	Port         int    // socket "port" (part of the socket file name)
	User         string // superuser name
	Password     string // superuser password; set by Start

	// Fast trades durability for speed (fsync, synchronous_commit and
	// full_page_writes off, initdb without sync). For tests only: a crash
	// can corrupt such a cluster.
	Fast bool

	// BinDir holds initdb, pg_ctl and postgres. Empty means FindBinaries.
	BinDir string

	// Adopted is set by Start when it found the postmaster already running
	// (a pierd serving on this data dir): a one-off command such as `pierd
	// migrate` or `pierd backup` then leaves it running.
	Adopted bool
}

// New returns a cluster laid out under baseDir (see the package comment for
// where the files go when running as root). It touches no files.
func New(baseDir string) *Cluster {
	abs, err := filepath.Abs(baseDir)
	if err != nil {
		abs = filepath.Clean(baseDir)
	}
	c := &Cluster{
		BaseDir:      abs,
		PasswordFile: filepath.Join(abs, "postgres-password"),
		Port:         DefaultPort,
		User:         DefaultUser,
	}
	if os.Geteuid() == 0 {
		c.Root = RelocatedDir("pg", abs)
	} else {
		c.Root = filepath.Join(abs, "postgres")
	}
	c.Dir = filepath.Join(c.Root, "data")
	c.SocketDir = filepath.Join(c.Root, "run")
	// A unix socket path is limited to 107 bytes; a deep baseDir (t.TempDir
	// of a long test name, say) would make the server fail to create it.
	if len(c.SocketDir)+len("/.s.PGSQL.65535.lock") > 100 {
		c.SocketDir = filepath.Join(os.TempDir(), "pier-pg-"+shortHash(abs))
	}
	c.LogFile = filepath.Join(c.Root, "postgres.log")
	return c
}

// RelocatedDir is where, as root, a directory of kind ("pg": a cluster's;
// pierd's "rt": its runtime dir) belonging to baseDir lives: under
// RelocatedRoot, named after kind and a hash of baseDir's absolute path,
// so that the same baseDir always maps to the same directory.
func RelocatedDir(kind, baseDir string) string {
	abs, err := filepath.Abs(baseDir)
	if err != nil {
		abs = filepath.Clean(baseDir)
	}
	return filepath.Join(RelocatedRoot, kind+"-"+shortHash(abs))
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// FindBinaries returns the directory holding initdb, pg_ctl and postgres:
// the one pg_ctl on PATH resolves to, else the highest version under
// /usr/lib/postgresql/*/bin. The error wraps ErrNotInstalled.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		// Resolve symlinks (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin)
		// so that initdb and postgres come from the same installation.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if dir := filepath.Dir(p); hasBinaries(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		return versionOf(dirs[i]) > versionOf(dirs[j])
	})
	for _, dir := range dirs {
		if hasBinaries(dir) {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// runAs is the identity initdb and pg_ctl run under: nil means the current
// user, otherwise the postgres system user (we are root).
type runAs struct {
	uid, gid int
}

func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, so the server must run as the \"postgres\" system user, which does not exist (apt-get install -y postgresql creates it): %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("bad uid/gid %q/%q for user postgres", u.Uid, u.Gid)
	}
	return &runAs{uid: uid, gid: gid}, nil
}

// Start initialises the cluster if needed and starts it, or adopts a
// postmaster already running on the data directory. It is idempotent.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.start(ctx); err != nil {
		return fmt.Errorf("embedded postgres in %s: %w", c.Root, err)
	}
	return nil
}

func (c *Cluster) start(ctx context.Context) error {
	if c.BinDir == "" {
		dir, err := FindBinaries()
		if err != nil {
			return err
		}
		c.BinDir = dir
	}
	as, err := serverUser()
	if err != nil {
		return err
	}
	if as != nil {
		// The server user must traverse /var/lib/pier to reach its cluster.
		if err := os.MkdirAll(RelocatedRoot, 0o755); err != nil {
			return err
		}
		if fi, err := os.Stat(RelocatedRoot); err != nil {
			return err
		} else if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(RelocatedRoot, fi.Mode().Perm()|0o001); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(c.BaseDir, 0o700); err != nil {
		return err
	}
	for _, dir := range []string{c.Root, c.SocketDir} {
		if err := mkdirOwned(dir, as); err != nil {
			return err
		}
	}
	initialised := exists(filepath.Join(c.Dir, "PG_VERSION"))
	if err := c.loadPassword(!initialised); err != nil {
		return err
	}
	if !initialised {
		if err := c.initdb(ctx, as); err != nil {
			return err
		}
	}
	if pid, ok := c.runningPID(); ok {
		c.Adopted = true
		return c.adopt(ctx, pid)
	}
	c.Adopted = false
	if err := c.writeConf(as); err != nil {
		return err
	}
	// The log is appended to across starts; show only this attempt's lines.
	var logStart int64
	if fi, err := os.Stat(c.LogFile); err == nil {
		logStart = fi.Size()
	}
	out, err := c.run(ctx, as, "pg_ctl", "start", "-w", "-t", "60", "-s",
		"-D", c.Dir, "-l", c.LogFile)
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\nserver log (%s):\n%s", err, bytes.TrimSpace(out), c.LogFile, tail(c.LogFile, logStart, 4096))
	}
	return nil
}

// mkdirOwned creates dir 0700 and, when as is set, gives it to that user so
// the server can write there; it also repairs the mode of an existing dir.
func mkdirOwned(dir string, as *runAs) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if as != nil {
		return os.Chown(dir, as.uid, as.gid)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// loadPassword reads the password file, creating it when create is set.
// Without create (the data already exists) a missing file is fatal: the
// password is only known to the cluster as a scram verifier.
func (c *Cluster) loadPassword(create bool) error {
	b, err := os.ReadFile(c.PasswordFile)
	if err == nil {
		c.Password = strings.TrimSpace(string(b))
		if c.Password == "" {
			return fmt.Errorf("password file %s is empty", c.PasswordFile)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return fmt.Errorf("reading the superuser password: %w (the data dir %s exists; remove it to start afresh)", err, c.Dir)
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return err
	}
	// Hex keeps the password free of characters that need quoting anywhere.
	pw := hex.EncodeToString(buf)
	f, err := os.OpenFile(c.PasswordFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(pw + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(c.PasswordFile)
		return err
	}
	c.Password = pw
	return nil
}

// initdb creates the data directory. It initialises a sibling directory and
// renames it into place, so that c.Dir existing means initdb completed
// (initdb writes PG_VERSION long before it finishes).
func (c *Cluster) initdb(ctx context.Context, as *runAs) error {
	tmp := c.Dir + ".init"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		return err
	}
	// The password file in BaseDir may be out of the server user's reach,
	// so hand initdb a copy in the cluster dir, removed right after.
	pwfile := filepath.Join(c.Root, "initdb-pwfile")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if as != nil {
		if err := os.Chown(pwfile, as.uid, as.gid); err != nil {
			return err
		}
	}
	args := []string{"-D", tmp, "-U", c.User, "--auth=scram-sha-256",
		"--pwfile=" + pwfile, "--encoding=UTF8", "--locale=C"}
	if c.Fast {
		args = append(args, "--no-sync")
	}
	if out, err := c.run(ctx, as, "initdb", args...); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// Settings Pier owns live in pier.conf, rewritten at every Start, so that
	// pg_ctl needs no -o option (which it would pass through a shell).
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# Added by Pier: settings rewritten at every start.\ninclude_if_exists = 'pier.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, c.Dir)
}

func (c *Cluster) writeConf(as *runAs) error {
	var b strings.Builder
	b.WriteString("# Written by Pier at every start; edits are lost.\n")
	// No TCP listener at all: app processes on this host must not reach it.
	b.WriteString("listen_addresses = ''\n")
	fmt.Fprintf(&b, "port = %d\n", c.Port)
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", confQuote(c.SocketDir))
	b.WriteString("unix_socket_permissions = 0700\n")
	b.WriteString("password_encryption = 'scram-sha-256'\n")
	if c.Fast {
		b.WriteString("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
	}
	if c.majorVersion() >= 14 {
		// Crash recovery (after the supervisor restarts a killed server)
		// first syncs the data dir: one syncfs is much quicker than an
		// fsync of every file.
		b.WriteString("recovery_init_sync_method = syncfs\n")
	}
	path := filepath.Join(c.Dir, "pier.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if as != nil {
		return os.Chown(path, as.uid, as.gid)
	}
	return nil
}

// majorVersion is the data dir's Postgres major version (PG_VERSION), 0
// if unknown.
func (c *Cluster) majorVersion() int {
	b, err := os.ReadFile(filepath.Join(c.Dir, "PG_VERSION"))
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return v
}

// confQuote quotes a postgresql.conf string value.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// Stop shuts the server down (fast mode: open sessions are disconnected).
// Stopping a cluster that is not running is not an error.
func (c *Cluster) Stop(ctx context.Context) error {
	if _, ok := c.runningPID(); !ok {
		return nil
	}
	if c.BinDir == "" {
		dir, err := FindBinaries()
		if err != nil {
			return fmt.Errorf("embedded postgres: %w", err)
		}
		c.BinDir = dir
	}
	as, err := serverUser()
	if err != nil {
		return fmt.Errorf("embedded postgres: %w", err)
	}
	if out, err := c.run(ctx, as, "pg_ctl", "stop", "-w", "-t", "60", "-s", "-m", "fast", "-D", c.Dir); err != nil {
		if _, ok := c.runningPID(); !ok {
			return nil // it stopped anyway, or was already stopping
		}
		return fmt.Errorf("embedded postgres: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Destroy stops the cluster and deletes its files and password file. For
// throwaway clusters (tests); Pier's own data is never destroyed this way.
func (c *Cluster) Destroy(ctx context.Context) error {
	err := c.Stop(ctx)
	return errors.Join(err, os.RemoveAll(c.Root), os.RemoveAll(c.SocketDir), os.Remove(c.PasswordFile))
}

// run runs one of the server binaries directly (no shell) as the given user.
// It returns the combined output for error messages.
func (c *Cluster) run(ctx context.Context, as *runAs, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, name), args...)
	// The caller's cwd may be out of the server user's reach (/root/...);
	// postgres warns or fails when it cannot return to it.
	cmd.Dir = c.Root
	cmd.Env = serverEnv(c.Root, as != nil)
	if as != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: uint32(as.uid), Gid: uint32(as.gid), Groups: []uint32{uint32(as.gid)},
		}}
	}
	// pg_ctl start sends the server's output to the log file, so these pipes
	// close when pg_ctl exits; WaitDelay guards against a server that keeps
	// them open anyway.
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// serverEnv is the environment of initdb and pg_ctl: the caller's without
// PG* variables (PGDATA, PGPORT... would silently redirect them), in the C
// locale so log messages and locale checks are predictable.
func serverEnv(home string, otherUser bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		if otherUser && (k == "HOME" || k == "USER" || k == "LOGNAME") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if otherUser {
		env = append(env, "HOME="+home, "USER=postgres", "LOGNAME=postgres")
	}
	return env
}

// tail returns the end of a file from offset from on, at most n bytes, for
// error messages.
func tail(path string, from, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		from = max(from, fi.Size()-n)
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.TrimSpace(string(b))
}

// DSN returns a keyword/value connection string for dbname over the unix
// socket. It holds the password (known only after Start): never log it.
func (c *Cluster) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable",
		dsnQuote(c.SocketDir), c.Port, dsnQuote(c.User), dsnQuote(c.Password), dsnQuote(dbname))
}

// dsnQuote quotes a keyword/value connection string value.
func dsnQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// CreateDatabase creates database name unless it exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	if name == "" || len(name) > 63 || strings.ContainsRune(name, 0) {
		return fmt.Errorf("embedded postgres: invalid database name %q (1 to 63 bytes)", name)
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("embedded postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var found bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&found); err != nil {
		return fmt.Errorf("embedded postgres: %w", err)
	}
	if found {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: lost a race
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded postgres: creating database %q: %w", name, err)
	}
	return nil
}
