package postgres

// Pier's own logical dump, for `pierd backup` and `pierd restore`. Not
// pg_dump: pg_dump must be at least as new as the server (compose runs
// Postgres 16 beside Debian's client 15) and the pierd image has none. The
// schema needs no dump of its own either: it is the migrations, which every
// pierd binary carries, so a dump is rows only (COPY text format, every
// column) plus the goose version they were taken at. goose's own table is
// never dumped: restore migrates the empty database to that version first,
// which writes it, then loads the rows, then migrates up to this binary's.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/pierpaas/pier/migrations"
)

// versionTable is goose's record of the applied migrations.
const versionTable = "goose_db_version"

// DumpTable is one table of a dump: its columns in COPY order and how many
// rows the snapshot holds.
type DumpTable struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Rows    int64    `json:"rows"`
}

// identRE is what Pier's table and column names look like; a dump or a
// backup naming anything else is refused before it reaches SQL.
var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Snapshot is one REPEATABLE READ, READ ONLY transaction: every table read
// through it shows the database at one moment, while pierd keeps running.
type Snapshot struct {
	conn *pgx.Conn
	tx   pgx.Tx
	// Version is the schema (goose) version the rows belong to.
	Version int64
	// Tables are every table but goose's, parents before the tables whose
	// foreign keys point at them, so that they load in this order.
	Tables []DumpTable
}

// OpenSnapshot connects to the database at dsn and opens a snapshot of it.
// Close it when done.
func OpenSnapshot(ctx context.Context, dsn string) (*Snapshot, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("postgres: starting the snapshot: %w", err)
	}
	s := &Snapshot{conn: conn, tx: tx}
	if err := s.read(ctx); err != nil {
		s.Close(ctx)
		return nil, err
	}
	return s, nil
}

func (s *Snapshot) read(ctx context.Context) error {
	var err error
	if s.Version, err = schemaVersion(ctx, s.tx); err != nil {
		return err
	}
	if s.Version == 0 {
		return errors.New("postgres: the database has no Pier schema (no migration applied): is this Pier's database?")
	}
	names, err := tablesInLoadOrder(ctx, s.tx)
	if err != nil {
		return err
	}
	for _, name := range names {
		cols, err := columns(ctx, s.tx, name)
		if err != nil {
			return err
		}
		t := DumpTable{Name: name, Columns: cols}
		if err := s.tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{name}.Sanitize()).Scan(&t.Rows); err != nil {
			return fmt.Errorf("postgres: counting the rows of %s: %w", name, err)
		}
		s.Tables = append(s.Tables, t)
	}
	return nil
}

// CopyTo writes table's rows to w in COPY text format and returns how many
// it wrote.
func (s *Snapshot) CopyTo(ctx context.Context, table string, w io.Writer) (int64, error) {
	t, ok := s.table(table)
	if !ok {
		return 0, fmt.Errorf("postgres: no table %q in the snapshot", table)
	}
	tag, err := s.tx.Conn().PgConn().CopyTo(ctx, w, "COPY "+pgx.Identifier{t.Name}.Sanitize()+" ("+columnList(t.Columns)+") TO STDOUT")
	if err != nil {
		return 0, fmt.Errorf("postgres: dumping %s: %w", table, err)
	}
	return tag.RowsAffected(), nil
}

func (s *Snapshot) table(name string) (DumpTable, bool) {
	for _, t := range s.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return DumpTable{}, false
}

// Close ends the snapshot and the connection.
func (s *Snapshot) Close(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	s.tx.Rollback(ctx)
	return s.conn.Close(ctx)
}

// schemaVersion is the newest migration goose applied, 0 when none (or no
// goose table at all).
func schemaVersion(ctx context.Context, q querier) (int64, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("postgres: reading the schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM `+versionTable+` WHERE is_applied`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("postgres: reading the schema version: %w", err)
	}
	return v, nil
}

// tablesInLoadOrder lists the tables of the current schema but goose's,
// each after every table its foreign keys refer to (ties by name).
func tablesInLoadOrder(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname <> $1`, versionTable)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing the tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: listing the tables: %w", err)
	}
	rows, err = q.Query(ctx, `
		SELECT cl.relname, ref.relname FROM pg_constraint co
		JOIN pg_class cl ON cl.oid = co.conrelid
		JOIN pg_class ref ON ref.oid = co.confrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace
		WHERE co.contype = 'f' AND n.nspname = current_schema()`)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing the foreign keys: %w", err)
	}
	parents := map[string][]string{}
	for rows.Next() {
		var child, parent string
		if err := rows.Scan(&child, &parent); err != nil {
			rows.Close()
			return nil, err
		}
		if child != parent { // a table referring to itself loads in one COPY
			parents[child] = append(parents[child], parent)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: listing the foreign keys: %w", err)
	}
	for _, n := range names {
		if !identRE.MatchString(n) {
			return nil, fmt.Errorf("postgres: table %q is not one of Pier's (unexpected name)", n)
		}
	}
	return loadOrder(names, parents)
}

// loadOrder sorts names so that each comes after its parents.
func loadOrder(names []string, parents map[string][]string) ([]string, error) {
	sort.Strings(names)
	done := map[string]bool{}
	var out []string
	for len(out) < len(names) {
		progressed := false
		for _, n := range names {
			if done[n] {
				continue
			}
			ready := true
			for _, p := range parents[n] {
				if !done[p] {
					ready = false
					break
				}
			}
			if ready {
				done[n] = true
				out = append(out, n)
				progressed = true
			}
		}
		if !progressed {
			return nil, errors.New("postgres: the tables' foreign keys form a cycle; Pier's schema has none, so this is not a database Pier made")
		}
	}
	return out, nil
}

// columns are table's stored columns in order (generated ones are left out:
// COPY FROM cannot write them).
func columns(ctx context.Context, q querier, table string) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT a.attname FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relname = $1
		  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, table)
	if err != nil {
		return nil, fmt.Errorf("postgres: columns of %s: %w", table, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: columns of %s: %w", table, err)
	}
	for _, c := range cols {
		if !identRE.MatchString(c) {
			return nil, fmt.Errorf("postgres: column %q of %s is not one of Pier's (unexpected name)", c, table)
		}
	}
	return cols, nil
}

func columnList(cols []string) string {
	s := ""
	for i, c := range cols {
		if i > 0 {
			s += ", "
		}
		s += pgx.Identifier{c}.Sanitize()
	}
	return s
}

// ErrNotEmpty is wrapped by Restore's error for a database that already
// holds users or apps.
var ErrNotEmpty = errors.New("the database is not empty")

// RestoreSource gives Restore the rows of one table of a dump.
type RestoreSource func(table string) (io.ReadCloser, error)

// Restore loads a dump into the database at dsn, which must hold no user
// and no app (a fresh database, or one a pierd started once but no one
// registered on). It migrates the database to the dump's schema version,
// loads every table in one transaction (rows left by that start, such as a
// bootstrap token, are replaced), sets every sequence past its column's
// largest value, commits, and then migrates up to this binary's schema.
// Nothing is loaded unless everything is. progress gets a line per step.
func Restore(ctx context.Context, dsn string, version int64, tables []DumpTable, open RestoreSource, progress io.Writer) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	latest, err := latestMigration()
	if err != nil {
		return err
	}
	if version > latest {
		return fmt.Errorf("the backup's schema version is %d, newer than this pierd's (%d): restore it with the pierd that made it, or a newer one", version, latest)
	}
	if version <= 0 {
		return errors.New("the backup names no schema version")
	}
	for _, t := range tables {
		if !identRE.MatchString(t.Name) || t.Name == versionTable {
			return fmt.Errorf("the backup names a table %q that Pier has not", t.Name)
		}
		for _, c := range t.Columns {
			if !identRE.MatchString(c) {
				return fmt.Errorf("the backup names a column %q of %s that Pier has not", c, t.Name)
			}
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := checkEmpty(ctx, conn); err != nil {
		return err
	}
	if err := migrateTo(ctx, cfg, version); err != nil {
		return err
	}
	fmt.Fprintf(progress, "Database migrated to the backup's schema version %d\n", version)
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		// Again, in the transaction: nobody registered in between.
		if err := checkEmpty(ctx, tx); err != nil {
			return err
		}
		have, err := tablesInLoadOrder(ctx, tx)
		if err != nil {
			return err
		}
		if len(have) > 0 {
			ids := make([]string, len(have))
			for i, n := range have {
				ids[i] = pgx.Identifier{n}.Sanitize()
			}
			if _, err := tx.Exec(ctx, "TRUNCATE "+joinComma(ids)+" CASCADE"); err != nil {
				return fmt.Errorf("postgres: emptying the tables: %w", err)
			}
		}
		var rows int64
		for _, t := range tables {
			n, err := loadTable(ctx, tx, t, open)
			if err != nil {
				return err
			}
			rows += n
		}
		if err := resetSequences(ctx, tx); err != nil {
			return err
		}
		fmt.Fprintf(progress, "Loaded %d tables, %d rows, in one transaction\n", len(tables), rows)
		return nil
	})
	if err != nil {
		return err
	}
	if err := migrate(ctx, cfg); err != nil {
		return fmt.Errorf("the backup is restored, but migrating it up to this pierd's schema failed (pierd all will try again at start): %w", err)
	}
	fmt.Fprintf(progress, "Database migrated up to schema version %d\n", latest)
	return nil
}

func loadTable(ctx context.Context, tx pgx.Tx, t DumpTable, open RestoreSource) (int64, error) {
	r, err := open(t.Name)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, r, "COPY "+pgx.Identifier{t.Name}.Sanitize()+" ("+columnList(t.Columns)+") FROM STDIN")
	if err != nil {
		// Postgres's message may quote a refused value (a config value, a
		// key): give only what went wrong, never the row.
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return 0, fmt.Errorf("restoring table %s: Postgres refused its rows (SQLSTATE %s): the backup does not match this schema, or is damaged", t.Name, pe.Code)
		}
		return 0, fmt.Errorf("restoring table %s: %w", t.Name, err)
	}
	if n := tag.RowsAffected(); n != t.Rows {
		return 0, fmt.Errorf("restoring table %s: the backup held %d rows, its manifest says %d: the backup is damaged", t.Name, n, t.Rows)
	}
	return tag.RowsAffected(), nil
}

// checkEmpty refuses a database with users or apps.
func checkEmpty(ctx context.Context, q querier) error {
	var users, apps int64
	for _, c := range []struct {
		table string
		n     *int64
	}{{"users", &users}, {"apps", &apps}} {
		var exists bool
		if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, c.table).Scan(&exists); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if !exists {
			continue
		}
		if err := q.QueryRow(ctx, "SELECT count(*) FROM "+c.table).Scan(c.n); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	if users > 0 || apps > 0 {
		return fmt.Errorf("%w: it holds %d users and %d apps. Restore only into an empty platform: a new database (drop and create this one, or point --database-url at another), or for the embedded database a new --data-dir", ErrNotEmpty, users, apps)
	}
	return nil
}

// resetSequences sets every sequence owned by a column (identity or
// serial) so that its next value is past the column's largest.
func resetSequences(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `
		SELECT s.seqrelid::regclass::text, t.relname, a.attname
		FROM pg_sequence s
		JOIN pg_depend d ON d.objid = s.seqrelid AND d.classid = 'pg_class'::regclass
		     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
		JOIN pg_class t ON t.oid = d.refobjid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
		WHERE n.nspname = current_schema()`)
	if err != nil {
		return fmt.Errorf("postgres: listing the sequences: %w", err)
	}
	type seq struct{ seq, table, col string }
	var seqs []seq
	for rows.Next() {
		var s seq
		if err := rows.Scan(&s.seq, &s.table, &s.col); err != nil {
			rows.Close()
			return err
		}
		seqs = append(seqs, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: listing the sequences: %w", err)
	}
	for _, s := range seqs {
		q := fmt.Sprintf("SELECT setval($1::regclass, coalesce((SELECT max(%s) FROM %s), 0) + 1, false)",
			pgx.Identifier{s.col}.Sanitize(), pgx.Identifier{s.table}.Sanitize())
		if _, err := tx.Exec(ctx, q, s.seq); err != nil {
			return fmt.Errorf("postgres: setting the sequence of %s.%s: %w", s.table, s.col, err)
		}
	}
	return nil
}

func joinComma(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}

// provider is goose over the embedded migrations, holding an advisory lock
// while it runs so that a second process starting at the same time waits.
// Polling every second for up to 5 minutes keeps a normal start fast.
func provider(cfg *pgx.ConnConfig) (*goose.Provider, func(), error) {
	sqldb := stdlib.OpenDB(*cfg.Copy())
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		sqldb.Close()
		return nil, nil, fmt.Errorf("postgres: migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqldb, migrations.FS,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		sqldb.Close()
		return nil, nil, fmt.Errorf("postgres: loading migrations: %w", err)
	}
	return p, func() { sqldb.Close() }, nil
}

// latestMigration is the newest schema version this binary knows: the
// largest NNNN of the embedded migrations' NNNN_what.sql.
func latestMigration() (int64, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return 0, fmt.Errorf("postgres: listing the migrations: %w", err)
	}
	var latest int64
	for _, n := range names {
		num, _, _ := strings.Cut(n, "_")
		if v, err := strconv.ParseInt(num, 10, 64); err == nil && v > latest {
			latest = v
		}
	}
	if latest == 0 {
		return 0, errors.New("postgres: no migrations embedded")
	}
	return latest, nil
}

// migrateTo brings an empty database to version exactly: up from an older
// one, down from a newer one (a pierd started on it once; it holds no
// user or app, so the down migrations lose nothing).
func migrateTo(ctx context.Context, cfg *pgx.ConnConfig, version int64) error {
	p, done, err := provider(cfg)
	if err != nil {
		return err
	}
	defer done()
	cur, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("postgres: reading the schema version: %w", err)
	}
	switch {
	case cur < version:
		_, err = p.UpTo(ctx, version)
	case cur > version:
		_, err = p.DownTo(ctx, version)
	}
	if err != nil {
		return fmt.Errorf("postgres: migrating to the backup's schema version %d: %w", version, err)
	}
	return nil
}
