package backup

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"filippo.io/age"

	"github.com/pierpaas/pier"
)

// ErrPassphrase is wrapped by Stage's error when the passphrase is not the
// one the backup was sealed with.
var ErrPassphrase = errors.New("wrong passphrase")

// maxManifest bounds the manifest read into memory.
const maxManifest = 16 << 20

var tableRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Staged is a backup unpacked into a private dir, checked entry by entry.
type Staged struct {
	Dir      string // 0700: db/ and data/ as in the archive
	Manifest Manifest
}

// CheckDataDir refuses a data dir that already holds what a restore would
// put there: an SSH host key, or git repositories.
func CheckDataDir(dataDir string) error {
	if _, err := os.Lstat(filepath.Join(dataDir, "ssh_host_ed25519_key")); err == nil {
		return fmt.Errorf("the data dir %s already holds an SSH host key: restore into a new, empty --data-dir (or move this one's ssh_host_ed25519_key and repos/ away first)", dataDir)
	}
	ents, err := os.ReadDir(filepath.Join(dataDir, "repos"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".git") {
			return fmt.Errorf("the data dir %s already holds git repositories (repos/%s): restore into a new, empty --data-dir (or move its repos/ away first)", dataDir, e.Name())
		}
	}
	return nil
}

// Stage decrypts the backup read from r and unpacks it into a new private
// dir under parent (the data dir, so that Install only renames). The whole
// archive is read and checked before Stage returns; on any error the dir
// is removed and nothing else was written.
func Stage(r io.Reader, passphrase, parent string) (_ *Staged, err error) {
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, err
	}
	plain, err := age.Decrypt(r, id)
	if err != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) {
			return nil, fmt.Errorf("%w: the backup was sealed with another passphrase (PIER_BACKUP_PASSPHRASE or --passphrase-file)", ErrPassphrase)
		}
		return nil, fmt.Errorf("not a Pier backup, or a damaged one (it does not open as an age file): %w", err)
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, ".pier-restore-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	s := &Staged{Dir: dir}
	if err := s.unpack(plain); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Staged) unpack(plain io.Reader) error {
	gz, err := gzip.NewReader(plain)
	if err != nil {
		return damaged(err)
	}
	tr := tar.NewReader(gz)
	hdr, err := tr.Next()
	if err != nil {
		return damaged(err)
	}
	if hdr.Name != "manifest.json" || hdr.Typeflag != tar.TypeReg || hdr.Size > maxManifest {
		return errors.New("not a Pier backup: it does not begin with its manifest")
	}
	if err := json.NewDecoder(io.LimitReader(tr, maxManifest)).Decode(&s.Manifest); err != nil {
		return damaged(err)
	}
	if s.Manifest.Format != Format {
		return fmt.Errorf("the backup's format is version %d; this pierd reads version %d: restore it with the pierd that made it", s.Manifest.Format, Format)
	}
	tables := map[string]bool{}
	for _, t := range s.Manifest.Tables {
		if !tableRE.MatchString(t.Name) {
			return fmt.Errorf("the backup's manifest names a table %q: refusing it (a forged or damaged backup)", t.Name)
		}
		tables[t.Name] = true
	}
	root, err := os.OpenRoot(s.Dir)
	if err != nil {
		return err
	}
	defer root.Close()
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return damaged(err)
		}
		name, err := allowed(hdr, tables)
		if err != nil {
			return err
		}
		if err := writeEntry(root, name, hdr, tr); err != nil {
			return err
		}
		if strings.HasPrefix(name, "db/") {
			seen[strings.TrimSuffix(strings.TrimPrefix(name, "db/"), ".copy")] = true
		}
	}
	// Read to the end: age checks the last chunk's tag there, so a file cut
	// short after the tar's last entry is still caught.
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return damaged(err)
	}
	for t := range tables {
		if !seen[t] {
			return fmt.Errorf("the backup has no rows for table %s, which its manifest lists: it is damaged", t)
		}
	}
	return nil
}

func damaged(err error) error {
	return fmt.Errorf("the backup is damaged or cut short: %w", err)
}

// allowed checks one entry against what a backup may hold, and returns its
// clean name. Only regular files and directories, only relative clean
// paths without "..", only the manifest's tables and the data dir's files
// Pier backs up.
func allowed(hdr *tar.Header, tables map[string]bool) (string, error) {
	refuse := func(why string) (string, error) {
		return "", fmt.Errorf("the backup holds %q, %s: refusing it (a forged or damaged backup); nothing was restored", clip(hdr.Name), why)
	}
	name := strings.TrimSuffix(hdr.Name, "/")
	switch {
	case hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeDir:
		return refuse("which is neither a file nor a directory (a link, a device...)")
	case name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0):
		return refuse("an absolute or malformed path")
	case path.Clean(name) != name || name == "." || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../"):
		return refuse("a path that is not clean or climbs out")
	}
	dir := hdr.Typeflag == tar.TypeDir
	parts := strings.Split(name, "/")
	switch {
	case name == "db" || name == "data" || name == "data/repos":
		if dir {
			return name, nil
		}
	case parts[0] == "db" && len(parts) == 2 && !dir:
		t, ok := strings.CutSuffix(parts[1], ".copy")
		if ok && tables[t] {
			return name, nil
		}
		return refuse("rows of a table its manifest does not list")
	case parts[0] == "data" && len(parts) == 2 && !dir:
		for _, f := range dataFiles {
			if parts[1] == f {
				return name, nil
			}
		}
	case parts[0] == "data" && len(parts) >= 3 && parts[1] == "repos":
		app, ok := strings.CutSuffix(parts[2], ".git")
		if ok && pier.ValidateAppName(app) == nil && (len(parts) > 3 || dir) {
			return name, nil
		}
	}
	return refuse("which is not a file Pier backs up")
}

// writeEntry creates one entry below root (os.Root: nothing can land
// outside it, whatever the names). Modes keep only the permission bits, and
// no write bit for group or others: no set-uid, set-gid or sticky file
// comes out of a backup.
func writeEntry(root *os.Root, name string, hdr *tar.Header, r io.Reader) error {
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		err := root.Mkdir(name, 0o700)
		if errors.Is(err, fs.ErrExist) {
			if fi, lerr := root.Lstat(name); lerr != nil || !fi.IsDir() {
				return fmt.Errorf("the backup holds %q as a file and as a directory: refusing it (a forged or damaged backup)", clip(name))
			}
		} else if err != nil {
			return err
		}
		return root.Chmod(name, fs.FileMode(hdr.Mode)&0o755|0o700)
	}
	mode := fs.FileMode(hdr.Mode)&0o755 | 0o600
	if strings.HasPrefix(name, "db/") || !strings.HasPrefix(name, "data/repos/") {
		mode = 0o600 // rows, the host key, tokens and passwords
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("the backup holds %q twice: refusing it (a forged or damaged backup)", clip(name))
	}
	if err != nil {
		return err
	}
	_, err = io.CopyN(f, r, hdr.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return damaged(err)
	}
	// The umask may have taken bits OpenFile was given.
	return root.Chmod(name, mode)
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// Table opens the staged rows of one table, for postgres.Restore.
func (s *Staged) Table(name string) (io.ReadCloser, error) {
	if !tableRE.MatchString(name) {
		return nil, fmt.Errorf("no table %q in the backup", name)
	}
	return os.Open(filepath.Join(s.Dir, "db", name+".copy"))
}

// Install moves the staged data dir files into dataDir: the host key, the
// tokens and each repository, by rename. Call it once the database is
// restored. It refuses to replace a host key or a repository.
func (s *Staged) Install(dataDir string) error {
	data := filepath.Join(s.Dir, "data")
	for _, f := range dataFiles {
		src := filepath.Join(data, f)
		if _, err := os.Lstat(src); err != nil {
			continue
		}
		dst := filepath.Join(dataDir, f)
		if f == "ssh_host_ed25519_key" {
			if _, err := os.Lstat(dst); err == nil {
				return fmt.Errorf("the data dir %s gained an SSH host key during the restore: is a pierd running on it?", dataDir)
			}
		}
		if err := os.Rename(src, dst); err != nil {
			return err
		}
	}
	repos, err := os.ReadDir(filepath.Join(data, "repos"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(repos) > 0 {
		if err := os.MkdirAll(filepath.Join(dataDir, "repos"), 0o700); err != nil {
			return err
		}
	}
	for _, r := range repos {
		dst := filepath.Join(dataDir, "repos", r.Name())
		if _, err := os.Lstat(dst); err == nil {
			return fmt.Errorf("the data dir %s gained the repository %s during the restore: is a pierd running on it?", dataDir, r.Name())
		}
		if err := os.Rename(filepath.Join(data, "repos", r.Name()), dst); err != nil {
			return err
		}
	}
	if d, err := os.Open(dataDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Remove deletes the staging dir and what is left in it.
func (s *Staged) Remove() error { return os.RemoveAll(s.Dir) }
