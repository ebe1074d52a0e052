package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) {
	workFactor = 10 // seconds per test otherwise; the format is the same
	testenv.Main(m)
}

const pass = "correct horse battery staple"

// fakeDB serves fixed rows.
type fakeDB map[string]string

func (f fakeDB) CopyTo(_ context.Context, table string, w io.Writer) (int64, error) {
	s := f[table]
	_, err := io.WriteString(w, s)
	return int64(strings.Count(s, "\n")), err
}

func fakeSource(t *testing.T, dataDir string) Source {
	db := fakeDB{"users": "1\tada\n2\tbob\n", "apps": "1\tweb-one\t1\n", "events": ""}
	return Source{DB: db, SchemaVersion: 11, DataDir: dataDir, Spool: t.TempDir(), Tables: []Table{
		{Name: "users", Columns: []string{"id", "username"}, Rows: 2},
		{Name: "apps", Columns: []string{"id", "name", "owner_id"}, Rows: 1},
		{Name: "events", Columns: []string{"id"}, Rows: 0},
	}}
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// platformDataDir is a data dir as pierd leaves it.
func platformDataDir(t *testing.T) string {
	d := t.TempDir()
	write(t, filepath.Join(d, "ssh_host_ed25519_key"), "HOST KEY", 0o600)
	write(t, filepath.Join(d, "admin-password"), "local admin's", 0o600)
	write(t, filepath.Join(d, "postgres-password"), "the old cluster's", 0o600)
	write(t, filepath.Join(d, "runtime", "builds", "x"), "build output", 0o644)
	write(t, filepath.Join(d, "backups", "pier-20260101T000000Z.backup"), "an older backup", 0o600)
	repo := filepath.Join(d, "repos", "web-one.git")
	write(t, filepath.Join(repo, "HEAD"), "ref: refs/heads/main\n", 0o644)
	write(t, filepath.Join(repo, "refs", "heads", "main"), "abc\n", 0o644)
	write(t, filepath.Join(repo, "objects", "ab", "cdef"), "object", 0o444)
	write(t, filepath.Join(repo, "objects", "incoming-x1", "ab"), "quarantined", 0o444)
	write(t, filepath.Join(repo, "refs", "heads", "main.lock"), "in flight", 0o644)
	write(t, filepath.Join(repo, "pier-app"), "2026-01-01T00:00:00Z\n", 0o644)
	if err := os.MkdirAll(filepath.Join(repo, "refs", "tags"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(repo, "evil")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(d, "repos", "web-one.lock"), "", 0o600)
	write(t, filepath.Join(d, "repos", ".init-web-two-123", "HEAD"), "half made", 0o644)
	return d
}

// tree lists a dir: path → content ("/" for dirs).
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[rel] = "/"
		} else {
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

func TestRoundTrip(t *testing.T) {
	src := platformDataDir(t)
	file := filepath.Join(t.TempDir(), "pier.backup")
	var progress bytes.Buffer
	sum, err := WriteFile(context.Background(), file, pass, fakeSource(t, src), &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v\n%s", sum, progress.String())
	if sum.Tables != 3 || sum.Rows != 3 || sum.Repos != 1 || sum.Files != 2 {
		t.Errorf("summary %+v", sum)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != sum.Bytes || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v %v (summary says %d bytes)", fi, err, sum.Bytes)
	}
	if b, _ := os.ReadFile(file); bytes.Contains(b, []byte("ada")) || bytes.Contains(b, []byte("HOST KEY")) {
		t.Error("the backup is not sealed")
	}

	dst := t.TempDir()
	if err := CheckDataDir(dst); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(file)
	defer f.Close()
	st, err := Stage(f, pass, dst)
	if err != nil {
		t.Fatal(err)
	}
	m := st.Manifest
	if m.Format != Format || m.SchemaVersion != 11 || len(m.Tables) != 3 || m.Tables[0].Name != "users" || m.Tables[0].Rows != 2 {
		t.Errorf("manifest %+v", m)
	}
	sort.Strings(m.Files)
	if strings.Join(m.Files, " ") != "admin-password repos/web-one.git ssh_host_ed25519_key" {
		t.Errorf("files %v", m.Files)
	}
	r, err := st.Table("users")
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := io.ReadAll(r)
	r.Close()
	if string(rows) != "1\tada\n2\tbob\n" {
		t.Errorf("users rows %q", rows)
	}
	if err := st.Install(dst); err != nil {
		t.Fatal(err)
	}
	st.Remove()
	got := tree(t, dst)
	want := map[string]string{
		".": "/", "ssh_host_ed25519_key": "HOST KEY", "admin-password": "local admin's",
		"repos": "/", "repos/web-one.git": "/", "repos/web-one.git/HEAD": "ref: refs/heads/main\n",
		"repos/web-one.git/refs": "/", "repos/web-one.git/refs/heads": "/", "repos/web-one.git/refs/tags": "/",
		"repos/web-one.git/refs/heads/main": "abc\n", "repos/web-one.git/objects": "/",
		"repos/web-one.git/objects/ab": "/", "repos/web-one.git/objects/ab/cdef": "object",
		"repos/web-one.git/pier-app": "2026-01-01T00:00:00Z\n",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("restored %s, which is not Pier's to back up", k)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dst, "ssh_host_ed25519_key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v", fi.Mode())
	}
	// Restored once, a data dir is refused the second time.
	if err := CheckDataDir(dst); err == nil || !strings.Contains(err.Error(), "host key") {
		t.Errorf("CheckDataDir of a data dir in use: %v", err)
	}
}

func TestWrongPassphrase(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, pass, fakeSource(t, platformDataDir(t)), nil); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	_, err := Stage(bytes.NewReader(buf.Bytes()), pass+"!", dst)
	if !errors.Is(err, ErrPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if strings.Contains(err.Error(), pass) {
		t.Errorf("the error shows the passphrase: %v", err)
	}
	if got := tree(t, dst); len(got) != 1 {
		t.Errorf("a refused restore wrote %v", got)
	}
	// Cut short: damaged, not a wrong passphrase.
	_, err = Stage(bytes.NewReader(buf.Bytes()[:buf.Len()-10]), pass, dst)
	if err == nil || errors.Is(err, ErrPassphrase) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("truncated backup: %v", err)
	}
	if got := tree(t, dst); len(got) != 1 {
		t.Errorf("a truncated backup wrote %v", got)
	}
}

func TestShortPassphrase(t *testing.T) {
	dir := t.TempDir()
	_, err := WriteFile(context.Background(), filepath.Join(dir, "b"), "short", fakeSource(t, platformDataDir(t)), nil)
	if err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("short passphrase: %v", err)
	}
	if strings.Contains(err.Error(), "short") && !strings.Contains(err.Error(), "5 characters") {
		t.Errorf("error %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a refused backup left %v", ents)
	}
}

// forge seals a tar of the given entries as a backup would be sealed.
func forge(t *testing.T, entries []*tar.Header, bodies map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	rcpt, _ := age.NewScryptRecipient(pass)
	rcpt.SetWorkFactor(workFactor)
	sealed, err := age.Encrypt(&buf, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(sealed)
	tw := tar.NewWriter(gz)
	m, _ := json.Marshal(Manifest{Format: Format, SchemaVersion: 11, Tables: []Table{{Name: "users", Rows: 0}}})
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o600, Size: int64(len(m)), Typeflag: tar.TypeReg})
	tw.Write(m)
	tw.WriteHeader(&tar.Header{Name: "db/users.copy", Mode: 0o600, Typeflag: tar.TypeReg})
	for _, h := range entries {
		body := bodies[h.Name]
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	tw.Close()
	gz.Close()
	sealed.Close()
	return buf.Bytes()
}

// TestHostileArchive: a backup forged by someone who knows the passphrase
// cannot put anything outside the staging dir, nor anything Pier does not
// back up; a refused archive leaves nothing behind.
func TestHostileArchive(t *testing.T) {
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg} }
	cases := map[string]*tar.Header{
		"dot-dot":        reg("data/repos/web-one.git/../../../../etc/cron.d/x"),
		"dot-dot-top":    reg("../outside"),
		"absolute":       reg("/etc/cron.d/x"),
		"symlink":        {Name: "data/repos/web-one.git/hooks/post-update", Typeflag: tar.TypeSymlink, Linkname: "/bin/sh", Mode: 0o777},
		"hard link":      {Name: "data/repos/web-one.git/config", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"},
		"device":         {Name: "data/repos/web-one.git/dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1},
		"not backed up":  reg("data/postgres-password"),
		"runtime":        reg("data/runtime/builds/x"),
		"bad app":        reg("data/repos/../x.git/HEAD"),
		"invalid app":    reg("data/repos/Not_An_App.git/HEAD"),
		"unknown table":  reg("db/pg_authid.copy"),
		"top-level file": reg("evil.sh"),
		"unclean":        reg("data/repos/web-one.git//HEAD"),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			sealed := forge(t, []*tar.Header{reg("data/ssh_host_ed25519_key"), h}, map[string]string{"data/ssh_host_ed25519_key": "k", h.Name: "evil"})
			parent := t.TempDir()
			_, err := Stage(bytes.NewReader(sealed), pass, parent)
			if err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Fatalf("forged entry %q: %v", h.Name, err)
			}
			t.Log(err)
			if got := tree(t, parent); len(got) != 1 {
				t.Errorf("a refused archive left %v", got)
			}
		})
	}
	// A file that is also a directory is refused too.
	sealed := forge(t, []*tar.Header{reg("data/repos/web-one.git/x"), {Name: "data/repos/web-one.git/x/", Mode: 0o755, Typeflag: tar.TypeDir}}, nil)
	if _, err := Stage(bytes.NewReader(sealed), pass, t.TempDir()); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("a file that is a directory too: %v", err)
	}
	// The same entry twice is refused too.
	sealed = forge(t, []*tar.Header{reg("data/admin-password"), reg("data/admin-password")}, nil)
	if _, err := Stage(bytes.NewReader(sealed), pass, t.TempDir()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate entry: %v", err)
	}
}

// TestSetuidDropped: no set-uid, set-gid, sticky or world-writable file or
// dir comes out of a backup.
func TestSetuidDropped(t *testing.T) {
	sealed := forge(t, []*tar.Header{
		{Name: "data/repos/web-one.git/", Mode: 0o1777, Typeflag: tar.TypeDir},
		{Name: "data/repos/web-one.git/hooks", Mode: 0o6777, Typeflag: tar.TypeReg},
		{Name: "data/ssh_host_ed25519_key", Mode: 0o4777, Typeflag: tar.TypeReg},
	}, map[string]string{"data/repos/web-one.git/hooks": "#!/bin/sh", "data/ssh_host_ed25519_key": "k"})
	st, err := Stage(bytes.NewReader(sealed), pass, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Remove()
	for name, want := range map[string]os.FileMode{
		"data/repos/web-one.git":       os.ModeDir | 0o755,
		"data/repos/web-one.git/hooks": 0o755,
		"data/ssh_host_ed25519_key":    0o600,
	} {
		fi, err := os.Stat(filepath.Join(st.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"pier-20260101T000000Z.backup", "pier-20260102T000000Z.backup", "pier-20260103T000000Z.backup", "mine.backup", "pier-notatime.backup"} {
		write(t, filepath.Join(dir, n), "x", 0o600)
	}
	removed, err := Prune(dir, 2)
	if err != nil || len(removed) != 1 || removed[0] != "pier-20260101T000000Z.backup" {
		t.Fatalf("Prune: %v %v", removed, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Errorf("left %v", ents)
	}
}
