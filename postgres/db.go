// Package postgres implements pier.Store on PostgreSQL with pgx.
//
// Desired state lives here and only here, so two controllers on one
// database must agree: counters are bumped in the row they belong to (which
// locks it), and every change writes its audit event in its own transaction.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pierpaas/pier"
)

// DB is a pier.Store on a pool of connections to one database.
type DB struct {
	pool         *pgxpool.Pool
	uidLo, uidHi int      // the range of new apps' uids (SetAppUIDs)
	dataDir      string   // where the server keeps its files, for disk-full errors (SetDataDir)
	mon          *monitor // the database's health (health.go)
}

var _ pier.Store = (*DB)(nil)

// Open connects to the database at dsn, checks that it answers, applies any
// pending migrations and returns the store.
func Open(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors redact the password.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// pgxpool's default, max(4, CPUs), makes API requests queue for a
	// connection while others wait for their COMMIT to reach disk (seen in
	// bench/). A request holds a connection only briefly, so allow more;
	// pool_max_conns in the DSN still decides.
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = int32(max(16, 4*runtime.GOMAXPROCS(0)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connecting to %s: %w", cfg.ConnConfig.Host, err)
	}
	if err := migrate(ctx, cfg.ConnConfig); err != nil {
		pool.Close()
		return nil, err
	}
	db := &DB{pool: pool, uidLo: DefaultAppUIDLow, uidHi: DefaultAppUIDHigh}
	db.startMonitor()
	return db, nil
}

// Migrate applies any pending migrations to the database at dsn.
func Migrate(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return migrate(ctx, cfg)
}

func migrate(ctx context.Context, cfg *pgx.ConnConfig) error {
	// An advisory lock held for the whole run makes a second process that
	// starts at the same time wait, then find nothing left to do (provider).
	p, done, err := provider(cfg)
	if err != nil {
		return err
	}
	defer done()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: applying migrations: %w", err)
	}
	return nil
}

// Close stops the health monitor and closes every connection.
func (db *DB) Close() {
	db.mon.stop()
	<-db.mon.done
	db.pool.Close()
}

// Pool is the underlying pool, for benchmarks and tests.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// querier is what both a pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SetDataDir names the directory the database server keeps its files in
// (the embedded cluster's), so that an error of a full disk says which
// volume to free space on. Without it, the message names "the database
// server's data directory". Call it before serving.
func (db *DB) SetDataDir(dir string) { db.dataDir = dir }

// inTx runs fn in a transaction, committed if fn returns nil. A full disk
// in fn (wrap has made it pier.NoSpace) or at COMMIT rolls the whole
// transaction back, so it is reported as pier.NoSpace naming the data
// dir: nothing was changed. (A WAL that cannot grow makes the server
// PANIC instead; its commit record never reached the disk, so recovery
// does not replay the transaction either.)
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{}, fn)
	if isDiskFull(err) || pier.IsNoSpace(err) {
		where := db.dataDir
		if where == "" {
			where = noSpaceWhere
		}
		return noSpace(where, err)
	}
	return err
}

// diskFull is pier.NoSpace(where) that keeps its cause for the server log
// (pier.ErrorMessage shows only the former).
type diskFull struct {
	where string
	cause error
}

func noSpace(where string, cause error) error {
	var df *diskFull
	if errors.As(cause, &df) {
		cause = df.cause // wrap's, now with a better where
	}
	return &diskFull{where: where, cause: cause}
}

func (e *diskFull) Error() string   { return pier.NoSpace(e.where).Message + ": " + e.cause.Error() }
func (e *diskFull) Unwrap() []error { return []error{pier.NoSpace(e.where), e.cause} }

// isNoRows reports whether err says a query found nothing.
func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// isUnique reports whether err is a unique violation (SQLSTATE 23505).
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// noSpaceWhere is where a full disk is, when SetDataDir was not called.
const noSpaceWhere = "the database server's data directory"

// isDiskFull reports whether err is the server's "no space left on
// device": SQLSTATE 53100 (disk_full), which Postgres gives when it cannot
// extend a table ("could not extend file") or write a file, WAL included
// ("could not write to file"). A PANIC on a full WAL disk carries it too,
// before the server restarts.
func isDiskFull(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "53100"
}

// wrap adds what the store was doing to an unexpected error; such errors
// become EINTERNAL, and their text goes to the server log only. what must
// never hold a config value or a token. A full disk is not unexpected: it
// becomes pier.NoSpace, since the statement that hit it changed nothing
// (inTx names the directory when it knows it).
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var e *pier.Error
	if errors.As(err, &e) {
		return err
	}
	if isDiskFull(err) {
		return noSpace(noSpaceWhere, fmt.Errorf(format+": %w", append(args, err)...))
	}
	return fmt.Errorf("postgres: "+format+": %w", append(args, err)...)
}

func appNotFound(name string) error {
	return pier.Errorf(pier.ENOTFOUND, "app %q not found", name)
}

func userNotFound(name string) error {
	return pier.Errorf(pier.ENOTFOUND, "user %q not found", name)
}

// Row locks appID can take on an app, held until the transaction ends.
type rowLock string

const (
	noLock rowLock = ""
	// keyShare keeps the app from being destroyed while rows that refer to
	// it are written, and conflicts with nothing else.
	keyShare rowLock = " FOR KEY SHARE"
	// noKeyUpdate conflicts with itself and with the UPDATE that adds a
	// release (nextVersion): it serialises changes to what runs.
	noKeyUpdate rowLock = " FOR NO KEY UPDATE"
)

// appID returns the ID of the app name (ENOTFOUND if none), taking lock on
// its row.
func appID(ctx context.Context, q querier, name string, lock rowLock) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT id FROM apps WHERE name = $1`+string(lock), name).Scan(&id)
	if isNoRows(err) {
		return 0, appNotFound(name)
	}
	return id, wrap(err, "find app %s", name)
}

// appMissing is called when a listing of an app's rows came back empty, to
// tell an app with no rows from no app, without a round trip in the common
// case.
func appMissing(ctx context.Context, q querier, name string) error {
	_, err := appID(ctx, q, name, noLock)
	return err
}
