package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pierpaas/pier/backup"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/postgres/embedded"
)

const backupUsage = `pierd backup writes one file holding the whole platform: every table of
Pier's database (one consistent snapshot) and what the data dir holds that
the database does not (the builder's SSH host key, the apps' git
repositories, the bootstrap token and make run's admin-password), sealed
with age under a passphrase. It works while the platform runs: with the
embedded database it uses pierd's running Postgres and leaves it running;
with --database-url it only connects.

The passphrase comes from PIER_BACKUP_PASSPHRASE or --passphrase-file (- is
standard input), never from the command line; at least 16 characters. Keep
it apart from the backups: without it a backup cannot be opened.

The file is written beside FILE first and renamed over it once complete:
FILE is either the previous backup or a whole new one, never half written.

Usage:
  pierd backup --to FILE [--data-dir DIR | --database-url URL] [--passphrase-file FILE]

Examples:
  PIER_BACKUP_PASSPHRASE_FILE=/etc/pier/backup-passphrase pierd backup --to /srv/backups/pier.backup
  pierd backup --to pier.backup --passphrase-file - < passphrase

Flags:
`

const restoreUsage = `pierd restore puts a backup (pierd backup) into an empty platform: a new
data dir (with the embedded database, made here) or an empty database
(--database-url: created, with no users or apps). It refuses a database
that holds users or apps and a data dir that holds an SSH host key or git
repositories. Stop pierd first.

The whole backup is read and checked before anything is written; the
database is loaded in one transaction; the data dir's files are moved into
place only once the database is committed. Then start the platform as
before: pierd all brings every app back (host builds are rebuilt from the
restored repositories; images come back from the registry).

Restore to the same --data-dir path as the platform that was backed up:
host builds live at paths derived from it.

Usage:
  pierd restore --from FILE [--data-dir DIR | --database-url URL] [--passphrase-file FILE]

FILE - reads the backup from standard input (into a container, say).

Flags:
`

// oneOffOptions are the flags of pierd backup and pierd restore.
type oneOffOptions struct {
	dataDir, databaseURL string
	file                 string // --to or --from
	passphraseFile       string
}

func oneOffFlags(name, usage, fileFlag, fileHelp string, o *oneOffOptions, out io.Writer) *flag.FlagSet {
	fs := componentFlagSet(name, usage, out)
	fs.StringVar(&o.file, fileFlag, "", fileHelp)
	fs.StringVar(&o.dataDir, "data-dir", env("PIER_DATA_DIR", ".pier"), "the platform's data dir (env PIER_DATA_DIR)")
	fs.StringVar(&o.databaseURL, "database-url", env("DATABASE_URL", ""), "Postgres URL; empty: the embedded database of the data dir (env DATABASE_URL)")
	fs.StringVar(&o.passphraseFile, "passphrase-file", env("PIER_BACKUP_PASSPHRASE_FILE", ""), "file holding the backup passphrase, - for standard input; default: PIER_BACKUP_PASSPHRASE (env PIER_BACKUP_PASSPHRASE_FILE)")
	return fs
}

// backupMain is `pierd backup`.
func backupMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o oneOffOptions
	fs := oneOffFlags("pierd backup", backupUsage, "to", "the backup file to write (required)", &o, stderr)
	return componentMain("pierd backup", fs, args, stderr, noHint, func() error { return runBackup(ctx, o, stdout) })
}

// restoreMain is `pierd restore`.
func restoreMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o oneOffOptions
	fs := oneOffFlags("pierd restore", restoreUsage, "from", "the backup file to restore, - for standard input (required)", &o, stderr)
	return componentMain("pierd restore", fs, args, stderr, noHint, func() error { return runRestore(ctx, o, stdout) })
}

func noHint(error) string { return "" }

// readPassphrase reads the backup passphrase from file (- : standard
// input), else from PIER_BACKUP_PASSPHRASE. Only a trailing newline is cut.
func readPassphrase(file string) (string, error) {
	var b []byte
	var err error
	switch file {
	case "":
		v, ok := os.LookupEnv("PIER_BACKUP_PASSPHRASE")
		if !ok || v == "" {
			return "", usageErr{errors.New("no backup passphrase: set PIER_BACKUP_PASSPHRASE or give --passphrase-file FILE (- for standard input); it is never taken from the command line")}
		}
		return v, nil
	case "-":
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
	default:
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("reading the backup passphrase: %w", err)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return "", usageErr{fmt.Errorf("the backup passphrase file %s is empty", file)}
	}
	return p, nil
}

// oneOffDatabase is the DSN of the platform's database for a one-off
// command. The embedded cluster is used as pierd left it: a running one
// (pierd all serving) is adopted and left running; a stopped one is
// started and stopped again. create makes a new cluster (restore); without
// it a data dir with no cluster is an error rather than a new, empty one.
func oneOffDatabase(ctx context.Context, o oneOffOptions, create bool, out io.Writer) (dsn string, stop func(), err error) {
	if o.databaseURL != "" {
		return o.databaseURL, func() {}, nil
	}
	c := embedded.New(o.dataDir)
	if _, err := os.Stat(filepath.Join(c.Dir, "PG_VERSION")); err != nil && !create {
		return "", nil, usageErr{fmt.Errorf("no embedded database for the data dir %s (none at %s): give the platform's --data-dir, or --database-url", o.dataDir, c.Dir)}
	}
	if err := c.Start(ctx); err != nil {
		return "", nil, err
	}
	stop = func() {}
	if c.Adopted && create {
		fmt.Fprintf(out, "The embedded Postgres of %s is running: if a pierd serves on this data dir, restart it once the restore is done\n", o.dataDir)
	} else if c.Adopted {
		fmt.Fprintf(out, "Using the embedded Postgres that pierd runs (left running)\n")
	} else {
		fmt.Fprintf(out, "Started the embedded Postgres in %s (stopped when done)\n", c.Root)
		stop = func() { stopCluster(c, out) }
	}
	if err := c.CreateDatabase(ctx, "pier"); err != nil {
		stop()
		return "", nil, err
	}
	return c.DSN("pier"), stop, nil
}

func runBackup(ctx context.Context, o oneOffOptions, out io.Writer) error {
	if o.file == "" {
		return usageErr{errors.New("--to FILE is required: where to write the backup")}
	}
	pass, err := readPassphrase(o.passphraseFile)
	if err != nil {
		return err
	}
	if err := backup.CheckPassphrase(pass); err != nil {
		return usageErr{err}
	}
	if err := os.MkdirAll(filepath.Dir(o.file), 0o700); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	dsn, stop, err := oneOffDatabase(ctx, o, false, out)
	if err != nil {
		return err
	}
	defer stop()
	_, err = writeBackup(ctx, dsn, o.dataDir, o.file, pass, out)
	return err
}

// writeBackup takes one backup of the database at dsn and the data dir
// into file, saying what it holds on out.
func writeBackup(ctx context.Context, dsn, dataDir, file, pass string, out io.Writer) (backup.Summary, error) {
	start := time.Now()
	snap, err := postgres.OpenSnapshot(ctx, dsn)
	if err != nil {
		return backup.Summary{}, err
	}
	defer snap.Close(ctx)
	src := backup.Source{DB: snap, SchemaVersion: snap.Version, DataDir: dataDir}
	for _, t := range snap.Tables {
		src.Tables = append(src.Tables, backup.Table{Name: t.Name, Columns: t.Columns, Rows: t.Rows})
	}
	sum, err := backup.WriteFile(ctx, file, pass, src, out)
	if err != nil {
		return sum, err
	}
	fmt.Fprintf(out, "Backup written to %s: %s in %.1fs\n", file, formatSize(sum.Bytes), time.Since(start).Seconds())
	return sum, nil
}

func formatSize(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d kB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func runRestore(ctx context.Context, o oneOffOptions, out io.Writer) error {
	if o.file == "" {
		return usageErr{errors.New("--from FILE is required: the backup to restore")}
	}
	if o.file == "-" && o.passphraseFile == "-" {
		return usageErr{errors.New("--from - reads the backup from standard input: take the passphrase from PIER_BACKUP_PASSPHRASE or a --passphrase-file then")}
	}
	pass, err := readPassphrase(o.passphraseFile)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := backup.CheckDataDir(o.dataDir); err != nil {
		return err
	}
	in := os.Stdin // --from -: a backup piped in, as into a container
	if o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	st, err := backup.Stage(in, pass, o.dataDir)
	if err != nil {
		return err
	}
	defer st.Remove()
	m := st.Manifest
	var rows int64
	for _, t := range m.Tables {
		rows += t.Rows
	}
	fmt.Fprintf(out, "Backup of %s: schema version %d, %d tables, %d rows, %d data dir entries; checked in %.1fs\n",
		m.Created.Format(time.RFC3339), m.SchemaVersion, len(m.Tables), rows, len(m.Files), time.Since(start).Seconds())
	if abs, err := filepath.Abs(o.dataDir); err == nil && m.DataDir != "" && m.DataDir != abs {
		fmt.Fprintf(out, "Note: the backup was taken of the data dir %s, this is %s: host builds, whose paths derive from it, will not be rebuilt; restore to the same path to bring them back\n", m.DataDir, abs)
	}
	dsn, stop, err := oneOffDatabase(ctx, o, true, out)
	if err != nil {
		return err
	}
	defer stop()
	tables := make([]postgres.DumpTable, len(m.Tables))
	for i, t := range m.Tables {
		tables[i] = postgres.DumpTable{Name: t.Name, Columns: t.Columns, Rows: t.Rows}
	}
	if err := postgres.Restore(ctx, dsn, m.SchemaVersion, tables, st.Table, out); err != nil {
		return err
	}
	if err := st.Install(o.dataDir); err != nil {
		return fmt.Errorf("the database is restored, but moving the data dir's files into %s failed: %w; move them by hand from %s (ssh_host_ed25519_key, repos/) before starting pierd", o.dataDir, err, filepath.Join(st.Dir, "data"))
	}
	fmt.Fprintf(out, "Restored in %.1fs. Start the platform as before (pierd all --data-dir %s): it brings every app back.\n", time.Since(start).Seconds(), o.dataDir)
	return nil
}

// scheduleOptions are the flags of scheduled backups in pierd all and
// pierd controller.
type scheduleOptions struct {
	every          time.Duration // 0: off
	dir            string        // "": <data-dir>/backups
	keep           int
	passphraseFile string
	bad            string // a PIER_BACKUP_SCHEDULE or PIER_BACKUP_KEEP that does not parse
	pass           string // read by check
}

func (s *scheduleOptions) flags(fs *flag.FlagSet) {
	every, err := time.ParseDuration(env("PIER_BACKUP_SCHEDULE", "0s"))
	if err != nil {
		s.bad = "PIER_BACKUP_SCHEDULE=" + strconv.Quote(os.Getenv("PIER_BACKUP_SCHEDULE")) + " is not a duration: give one such as 24h"
	}
	keep, err := strconv.Atoi(env("PIER_BACKUP_KEEP", "7"))
	if err != nil {
		s.bad = "PIER_BACKUP_KEEP=" + strconv.Quote(os.Getenv("PIER_BACKUP_KEEP")) + " is not a number"
	}
	fs.DurationVar(&s.every, "backup-schedule", every, "pierd all and controller: take a backup (as pierd backup does) this often, such as 24h; 0: never (env PIER_BACKUP_SCHEDULE)")
	fs.StringVar(&s.dir, "backup-dir", env("PIER_BACKUP_DIR", ""), "where scheduled backups go, as pier-<UTC time>.backup; default <data-dir>/backups; best on another disk or machine (env PIER_BACKUP_DIR)")
	fs.IntVar(&s.keep, "backup-keep", keep, "how many scheduled backups to keep: the newest N; older ones in --backup-dir are removed (env PIER_BACKUP_KEEP)")
	fs.StringVar(&s.passphraseFile, "backup-passphrase-file", env("PIER_BACKUP_PASSPHRASE_FILE", ""), "file holding the passphrase scheduled backups are sealed with; default: PIER_BACKUP_PASSPHRASE (env PIER_BACKUP_PASSPHRASE_FILE)")
}

// check checks the flags and, when backups are scheduled, reads the
// passphrase: a pierd that cannot seal its backups refuses to start, before
// it starts anything, rather than run believing it is backed up.
func (s *scheduleOptions) check() error {
	switch {
	case s.bad != "":
		return errors.New(s.bad)
	case s.every < 0:
		return fmt.Errorf("--backup-schedule %s: give a positive interval such as 24h, or 0 for none", s.every)
	case s.every > 0 && s.every < time.Second:
		return fmt.Errorf("--backup-schedule %s is too often: give at least 1s, such as 24h", s.every)
	case s.keep < 1:
		return fmt.Errorf("--backup-keep %d: keep at least 1 backup", s.keep)
	case s.every == 0:
		return nil
	case s.passphraseFile == "-":
		return errors.New("--backup-passphrase-file: give a file; standard input is for pierd backup")
	}
	pass, err := readPassphrase(s.passphraseFile)
	if err != nil {
		return fmt.Errorf("--backup-schedule: %w", err)
	}
	if err := backup.CheckPassphrase(pass); err != nil {
		return fmt.Errorf("--backup-schedule: %w", err)
	}
	s.pass = pass
	return nil
}

// start takes a backup every s.every until ctx ends, and keeps the newest
// s.keep (check has read the passphrase).
func (s scheduleOptions) start(ctx context.Context, dsn, dataDir string, log *slog.Logger, out io.Writer) (stop func(), err error) {
	if s.every == 0 {
		return func() {}, nil
	}
	pass := s.pass
	dir := s.dir
	if dir == "" {
		dir = filepath.Join(dataDir, "backups")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--backup-dir: %w", err)
	}
	fmt.Fprintf(out, "Backups every %s into %s, keeping the newest %d\n", s.every, dir, s.keep)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			file := filepath.Join(dir, backup.Name(time.Now()))
			start := time.Now()
			sum, err := writeBackup(ctx, dsn, dataDir, file, pass, io.Discard)
			if err != nil {
				log.Error("scheduled backup failed; the next one is due in "+s.every.String(), "err", err)
				continue
			}
			log.Info("backup written", "file", file, "bytes", sum.Bytes, "tables", sum.Tables, "rows", sum.Rows, "repos", sum.Repos, "took", time.Since(start).Round(time.Millisecond))
			removed, err := backup.Prune(dir, s.keep)
			if err != nil {
				log.Error("removing old backups", "dir", dir, "err", err)
			}
			for _, r := range removed {
				log.Info("old backup removed", "file", filepath.Join(dir, r))
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}
