// Package backup owns the format of a backup of Pier itself: one file, a
// gzipped tar sealed with age (https://age-encryption.org) under a scrypt
// passphrase. It holds
//
//	manifest.json           format and schema version, time, tables and row counts, files
//	db/<table>.copy         every table's rows in COPY text format (package postgres)
//	data/<path>             what the data dir holds that Postgres does not
//
// From the data dir it takes the builder's SSH host key, the apps' git
// repositories (repos/<app>.git), and the bootstrap token and `make run`'s
// admin-password when present. It never takes postgres-password (the
// embedded cluster's own secret: a restore makes a new cluster with a new
// one), the embedded cluster, the runtime dir (builds, app processes:
// rebuilt or re-pulled after a restore) or earlier backups.
//
// Restore (Stage, then Staged.Install) unpacks into a private staging dir
// beside the data dir, reading the whole archive (age authenticates every
// chunk, so a damaged or truncated file fails here) before anything else is
// touched, and refuses any entry that is not one of the above: absolute
// paths, "..", links, devices. The files move into the data dir only after
// the database has been restored.
package backup

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"

	"github.com/pierpaas/pier"
)

// Format is the version of the archive layout this package writes and reads.
const Format = 1

// MinPassphrase is the shortest passphrase a backup is sealed with: the
// archive holds every secret of the platform, and scrypt only slows down a
// guesser, it does not make a short passphrase long.
const MinPassphrase = 16

// workFactor is scrypt's log2 N for new backups (age's default: about a
// second). Tests lower it.
var workFactor = 18

// Files of the data dir a backup holds, besides repos/.
var dataFiles = []string{"ssh_host_ed25519_key", "bootstrap-token", "admin-password"}

// Table is one table of the database dump.
type Table struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Rows    int64    `json:"rows"`
}

// Manifest describes a backup; it is the archive's first entry.
type Manifest struct {
	Format        int       `json:"format"`
	SchemaVersion int64     `json:"schema_version"`
	Created       time.Time `json:"created"`
	Tables        []Table   `json:"tables"`
	Files         []string  `json:"files"`    // data dir entries: files and repos/<app>.git
	DataDir       string    `json:"data_dir"` // its absolute path: host builds' paths derive from it
}

// Database is the snapshot the rows come from (a postgres.Snapshot).
type Database interface {
	CopyTo(ctx context.Context, table string, w io.Writer) (int64, error)
}

// Source is what one backup is taken of.
type Source struct {
	DB            Database
	SchemaVersion int64
	Tables        []Table // in load order
	DataDir       string
	// Spool is where each table's rows wait until their size is known
	// (a tar header comes first): an unlinked file, gone when closed.
	// "" is the system's temp dir.
	Spool string
}

// Summary says what a backup holds.
type Summary struct {
	Tables, Repos, Files int
	Rows                 int64
	Bytes                int64 // of the sealed file
}

// CheckPassphrase refuses a passphrase too short to seal a backup with.
func CheckPassphrase(p string) error {
	if n := len([]rune(p)); n < MinPassphrase {
		return fmt.Errorf("the backup passphrase has %d characters; give at least %d (for example: head -c 24 /dev/urandom | base64)", n, MinPassphrase)
	}
	return nil
}

// Write writes a sealed backup of src to w. Nothing of the database or the
// data dir is changed. The data dir is read after the database snapshot
// was taken, so every commit the snapshot names is in the repositories.
func Write(ctx context.Context, w io.Writer, passphrase string, src Source, progress io.Writer) (Summary, error) {
	var sum Summary
	if err := CheckPassphrase(passphrase); err != nil {
		return sum, err
	}
	if progress == nil {
		progress = io.Discard
	}
	files, repos, err := dataDirEntries(src.DataDir)
	if err != nil {
		return sum, err
	}
	rcpt, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return sum, err
	}
	rcpt.SetWorkFactor(workFactor)
	cw := &countingWriter{w: w}
	sealed, err := age.Encrypt(cw, rcpt)
	if err != nil {
		return sum, err
	}
	gz := gzip.NewWriter(sealed)
	tw := tar.NewWriter(gz)
	m := Manifest{Format: Format, SchemaVersion: src.SchemaVersion, Created: time.Now().UTC(), Tables: src.Tables}
	m.DataDir, _ = filepath.Abs(src.DataDir)
	m.Files = append(append(m.Files, files...), repos...)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return sum, err
	}
	if err := writeBytes(tw, "manifest.json", mb, 0o600); err != nil {
		return sum, err
	}
	for _, t := range src.Tables {
		n, err := writeTable(ctx, tw, src, t)
		if err != nil {
			return sum, err
		}
		sum.Tables++
		sum.Rows += n
	}
	fmt.Fprintf(progress, "Database: %d tables, %d rows (schema version %d)\n", sum.Tables, sum.Rows, src.SchemaVersion)
	for _, f := range files {
		if err := writeFile(tw, src.DataDir, f); err != nil {
			return sum, err
		}
		sum.Files++
	}
	for _, r := range repos {
		if err := writeRepo(tw, src.DataDir, r); err != nil {
			return sum, err
		}
		sum.Repos++
	}
	held := strings.Join(files, ", ")
	if held == "" {
		held = "no key or token"
	}
	fmt.Fprintf(progress, "Data dir: %s; %d git repositories\n", held, sum.Repos)
	if err := tw.Close(); err != nil {
		return sum, err
	}
	if err := gz.Close(); err != nil {
		return sum, err
	}
	if err := sealed.Close(); err != nil {
		return sum, err
	}
	sum.Bytes = cw.n
	return sum, nil
}

// dataDirEntries lists the files (dataFiles present) and repositories
// (repos/<app>.git) of the data dir a backup holds.
func dataDirEntries(dataDir string) (files, repos []string, err error) {
	for _, f := range dataFiles {
		fi, err := os.Lstat(filepath.Join(dataDir, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if fi.Mode().IsRegular() {
			files = append(files, f)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dataDir, "repos"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	for _, e := range ents {
		app, ok := strings.CutSuffix(e.Name(), ".git")
		// A dir being made (.init-*) or anything else is not an app's.
		if ok && e.IsDir() && pier.ValidateAppName(app) == nil {
			repos = append(repos, "repos/"+e.Name())
		}
	}
	return files, repos, nil
}

func writeTable(ctx context.Context, tw *tar.Writer, src Source, t Table) (int64, error) {
	spool, err := os.CreateTemp(src.Spool, ".pier-backup-rows-*")
	if err != nil {
		return 0, err
	}
	// Unlinked at once: the rows (password hashes, config values) are never
	// left in a file, whatever happens to this process.
	os.Remove(spool.Name())
	defer spool.Close()
	bw := bufio.NewWriterSize(spool, 256<<10)
	n, err := src.DB.CopyTo(ctx, t.Name, bw)
	if err != nil {
		return 0, err
	}
	if n != t.Rows {
		return 0, fmt.Errorf("table %s: the snapshot gave %d rows, it counted %d", t.Name, n, t.Rows)
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	size, err := spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	hdr := &tar.Header{Name: "db/" + t.Name + ".copy", Mode: 0o600, Size: size, Typeflag: tar.TypeReg, ModTime: time.Now()}
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, err
	}
	if _, err := io.CopyN(tw, spool, size); err != nil {
		return 0, err
	}
	return n, nil
}

func writeBytes(tw *tar.Writer, name string, b []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// writeFile adds the regular file rel of dataDir as data/rel, opened
// without following a symlink.
func writeFile(tw *tar.Writer, dataDir, rel string) error {
	f, err := os.OpenFile(filepath.Join(dataDir, rel), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	hdr := &tar.Header{Name: "data/" + filepath.ToSlash(rel), Mode: int64(fi.Mode().Perm()), Size: fi.Size(), Typeflag: tar.TypeReg, ModTime: fi.ModTime()}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// A file that grew is cut at the size its header gave; one that shrank
	// fails (tar refuses a short entry).
	_, err = io.CopyN(tw, f, fi.Size())
	return err
}

// writeRepo adds a bare repository: its refs and everything else first,
// objects/ last, so that every ref in the copy names objects that were
// there before it was read (git writes objects before the refs that name
// them). Lock files and the quarantine of a push under way are left out.
func writeRepo(tw *tar.Writer, dataDir, rel string) error {
	root := filepath.Join(dataDir, rel)
	top, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the app was destroyed since: the snapshot has it, without a repository
	}
	if err != nil {
		return err
	}
	sort.SliceStable(top, func(i, j int) bool { return top[j].Name() == "objects" && top[i].Name() != "objects" })
	if err := writeDir(tw, rel, root); err != nil {
		return err
	}
	for _, e := range top {
		err := filepath.WalkDir(filepath.Join(root, e.Name()), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) { // gone since listed: git's own temp files
					return nil
				}
				return err
			}
			name := d.Name()
			if d.IsDir() && (strings.HasPrefix(name, "incoming-") || strings.HasPrefix(name, "tmp_objdir")) {
				return filepath.SkipDir
			}
			r, _ := filepath.Rel(dataDir, p)
			switch {
			case d.IsDir():
				return writeDir(tw, r, p)
			case d.Type().IsRegular() && !strings.HasSuffix(name, ".lock") && !strings.HasPrefix(name, "tmp_"):
				err := writeFile(tw, dataDir, r)
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			return nil // symlinks and the like: git makes none in a bare repository
		})
		if err != nil {
			return fmt.Errorf("reading the repository %s: %w", rel, err)
		}
	}
	return nil
}

func writeDir(tw *tar.Writer, rel, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return tw.WriteHeader(&tar.Header{Name: "data/" + filepath.ToSlash(rel) + "/", Mode: int64(fi.Mode().Perm()), Typeflag: tar.TypeDir, ModTime: fi.ModTime()})
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteFile writes a backup to path: to a temp file beside it, fsynced,
// then renamed over path, so that path is always either the previous file
// or a whole new backup. On any failure the temp file is removed; a full
// disk says "no space left".
func WriteFile(ctx context.Context, path, passphrase string, src Source, progress io.Writer) (Summary, error) {
	if err := CheckPassphrase(passphrase); err != nil {
		return Summary{}, err
	}
	dir := filepath.Dir(path)
	if src.Spool == "" {
		src.Spool = dir // one disk to run out of, the one named in the error
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Summary{}, writeError(path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	sum, err := Write(ctx, bw, passphrase, src, progress)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return sum, writeError(path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil { // the rename itself, durable
		d.Sync()
		d.Close()
	}
	return sum, nil
}

// writeError says what a failed WriteFile left: nothing.
func writeError(path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("backing up to %s: no space left on its device: nothing was written (an earlier backup there is unchanged); free space or choose another place, and back up again", path)
	}
	return fmt.Errorf("backing up to %s: %w; nothing was written (an earlier backup there is unchanged)", path, err)
}

// Name is the file name of a backup taken at t, as scheduled backups are
// named; names sort by time.
func Name(t time.Time) string {
	return "pier-" + t.UTC().Format("20060102T150405Z") + ".backup"
}

// Prune removes the oldest backups named by Name in dir beyond the newest
// keep, and returns the names it removed. Other files are left alone.
func Prune(dir string, keep int) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, "pier-") && strings.HasSuffix(n, ".backup") {
			if _, err := time.Parse("20060102T150405Z", strings.TrimSuffix(strings.TrimPrefix(n, "pier-"), ".backup")); err == nil {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	var removed []string
	for len(names) > keep && keep > 0 {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			return removed, err
		}
		removed = append(removed, names[0])
		names = names[1:]
	}
	return removed, nil
}
