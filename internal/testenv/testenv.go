// Package testenv provides test helpers: fresh Postgres databases, a
// Kubernetes control plane (KubeCluster, kube.go) and SSH keys.
//
// A package whose tests call Database must run them through Main:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// so that the Postgres cluster (or Kubernetes control plane) the test binary
// starts is stopped and removed when the tests end (they are separate
// daemons that would outlive the test).
//
// Database starts one embedded cluster per test process (Fast mode, in a
// temp dir), unless PIER_TEST_DATABASE_URL names a server to use instead.
// Without Postgres binaries and without that variable, tests are skipped,
// except when CI=true, where they fail.
package testenv

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/pierpaas/pier/postgres/embedded"
)

// EnvDatabaseURL names an existing server for Database to create its
// databases on, as a URL or keyword/value string; its user needs CREATEDB.
const EnvDatabaseURL = "PIER_TEST_DATABASE_URL"

var (
	mainCalled atomic.Bool

	setupOnce sync.Once
	setupErr  error
	skipMsg   string              // non-empty: no Postgres available
	cluster   *embedded.Cluster   // started by this process, if any
	baseDir   string              // temp dir of cluster
	adminCfg  *pgx.ConnConfig     // connection to the maintenance database
	serverDSN func(string) string // DSN of a database on the server

	adminMu   sync.Mutex
	adminConn *pgx.Conn

	dbCounter atomic.Int64
)

// Main runs the tests, then stops and removes any Postgres cluster and
// Kubernetes control plane this process started, runs atExit (a TestMain's
// own cleanups: its defers would never run, as Main exits), and exits with
// the tests' status.
func Main(m *testing.M, atExit ...func()) {
	mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
	}
	for _, fn := range atExit {
		fn()
	}
	os.Exit(code)
}

func shutdown() error {
	kubeErr := stopKube()
	return errors.Join(kubeErr, stopPostgres())
}

func stopPostgres() error {
	adminMu.Lock()
	if adminConn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		adminConn.Close(ctx)
		cancel()
		adminConn = nil
	}
	adminMu.Unlock()
	if cluster == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := cluster.Destroy(ctx)
	return errors.Join(err, os.RemoveAll(baseDir))
}

func isCI() bool { return os.Getenv("CI") == "true" }

func setup() {
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		cfg, err := pgx.ParseConfig(raw)
		if err != nil {
			setupErr = fmt.Errorf("parsing %s: %w", EnvDatabaseURL, err)
			return
		}
		adminCfg = cfg
		serverDSN = func(db string) string { return withDBName(raw, db) }
		return
	}
	if _, err := embedded.FindBinaries(); err != nil {
		skipMsg = fmt.Sprintf("no Postgres for tests: %v; or set %s to a server's URL", err, EnvDatabaseURL)
		return
	}
	dir, err := os.MkdirTemp("", "pier-testenv-")
	if err != nil {
		setupErr = err
		return
	}
	c := embedded.New(dir)
	c.Fast = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Record the cluster before Start, so Main cleans up a half-started one.
	cluster, baseDir = c, dir
	if err := c.Start(ctx); err != nil {
		setupErr = err
		return
	}
	adminCfg, err = pgx.ParseConfig(c.DSN("postgres"))
	if err != nil {
		setupErr = err
		return
	}
	serverDSN = c.DSN
}

// withDBName returns the connection string raw with its database replaced.
func withDBName(raw, db string) string {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		if u, err := url.Parse(raw); err == nil {
			u.Path = "/" + db
			u.RawPath = ""
			return u.String()
		}
	}
	// In keyword/value form the last occurrence of a keyword wins.
	return raw + " dbname='" + db + "'"
}

// admin runs f on the shared maintenance connection, reconnecting once if
// the connection has gone bad. Serialised: a pgx.Conn is not concurrency
// safe, and CREATE/DROP DATABASE are quick.
func admin(ctx context.Context, f func(*pgx.Conn) error) error {
	adminMu.Lock()
	defer adminMu.Unlock()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if adminConn == nil || adminConn.IsClosed() {
			adminConn, err = pgx.ConnectConfig(ctx, adminCfg)
			if err != nil {
				adminConn = nil
				return err
			}
		}
		err = f(adminConn)
		if err == nil || !adminConn.IsClosed() {
			return err
		}
	}
	return err
}

// Database returns the DSN of a fresh, empty database with a unique name,
// dropped (best effort) when the test ends. Safe for parallel tests.
func Database(t testing.TB) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("testenv.Database needs the package's TestMain to call testenv.Main(m), which stops the Postgres cluster after the tests")
	}
	setupOnce.Do(setup)
	if skipMsg != "" {
		if isCI() {
			t.Fatal(skipMsg + " (CI=true: not skipping)")
		}
		t.Skip(skipMsg)
	}
	if setupErr != nil {
		t.Fatalf("testenv: starting Postgres: %v", setupErr)
	}
	buf := make([]byte, 4)
	rand.Read(buf)
	name := fmt.Sprintf("pier_test_%d_%s", dbCounter.Add(1), hex.EncodeToString(buf))
	ident := pgx.Identifier{name}.Sanitize()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// template0 never has connections, so concurrent creates never fail
	// with "source database is being accessed by other users".
	err := admin(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0")
		return err
	})
	if err != nil {
		t.Fatalf("testenv: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE (Postgres 13+) ends sessions a test left open.
		err := admin(ctx, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
			return err
		})
		if err != nil {
			t.Logf("testenv: dropping database %s: %v", name, err)
		}
	})
	return serverDSN(name)
}

// SSHKey returns a new ed25519 public key as an authorized_keys line
// (without trailing newline) and its SHA256 fingerprint ("SHA256:...").
func SSHKey(t testing.TB) (authorizedKey string, fingerprint string) {
	t.Helper()
	_, authorizedKey, fingerprint = SSHSigner(t)
	return authorizedKey, fingerprint
}

// SSHSigner is SSHKey with the private half, for tests that connect as an
// SSH client (golang.org/x/crypto/ssh.PublicKeys(signer)).
func SSHSigner(t testing.TB) (signer ssh.Signer, authorizedKey string, fingerprint string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key := signer.PublicKey()
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))), ssh.FingerprintSHA256(key)
}
