package tarball

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoundTrip: files keep their contents and permission bits, links
// their targets, and .git stays behind.
func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(src, ".git"), 0o755))
	must(os.WriteFile(filepath.Join(src, "bin", "run"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(src, "Procfile"), []byte("web: bin/run\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, ".git", "HEAD"), []byte("ref"), 0o644))
	must(os.Symlink("bin/run", filepath.Join(src, "start")))
	var buf bytes.Buffer
	must(Write(&buf, src))
	dst := t.TempDir()
	must(Extract(&buf, dst))
	if b, err := os.ReadFile(filepath.Join(dst, "Procfile")); err != nil || string(b) != "web: bin/run\n" {
		t.Fatalf("Procfile: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "bin", "run")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("bin/run lost its execute bit: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "start")); err != nil || l != "bin/run" {
		t.Fatalf("link: %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); !os.IsNotExist(err) {
		t.Fatalf(".git went along: %v", err)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	mk := func(hs ...*tar.Header) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for _, h := range hs {
			tw.WriteHeader(h)
			if h.Typeflag == tar.TypeReg {
				tw.Write(make([]byte, h.Size))
			}
		}
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}
	for name, tb := range map[string][]byte{
		"dot-dot":     mk(&tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Size: 1, Mode: 0o644}),
		"absolute":    mk(&tar.Header{Typeflag: tar.TypeReg, Name: "/etc/evil", Size: 1, Mode: 0o644}),
		"via symlink": mk(&tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/tmp"}, &tar.Header{Typeflag: tar.TypeReg, Name: "l/evil", Size: 1, Mode: 0o644}),
		"device":      mk(&tar.Header{Typeflag: tar.TypeChar, Name: "dev"}),
	} {
		if err := Extract(bytes.NewReader(tb), t.TempDir()); err == nil {
			t.Errorf("%s: extracted", name)
		}
	}
}

// writeTarGz writes a real .tar.gz file of the headers in dir, each
// regular file's content zeros, and returns its path.
func writeTarGz(t *testing.T, dir string, hs ...*tar.Header) string {
	t.Helper()
	p := filepath.Join(dir, "src.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	zeros := make([]byte, 1<<20)
	for _, h := range hs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		for left := h.Size; h.Typeflag == tar.TypeReg && left > 0; {
			n := min(left, int64(len(zeros)))
			if _, err := tw.Write(zeros[:n]); err != nil {
				t.Fatal(err)
			}
			left -= n
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func extractFile(t *testing.T, tgz, dir string, lim Limits) error {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return ExtractLimited(f, dir, lim)
}

// du is the bytes of file content under dir.
func du(t *testing.T, dir string) (n int64) {
	t.Helper()
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TestTarballBombBounded (issue 14, finding 6): a tarball of about
// 1 MiB that unpacks to 1 GiB, or to thousands of empty files, is
// refused at the bound, having written no more than the bound.
func TestTarballBombBounded(t *testing.T) {
	lim := Limits{MaxBytes: 64 << 20, MaxEntries: 1000}
	t.Run("bytes", func(t *testing.T) {
		tgz := writeTarGz(t, t.TempDir(), &tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Size: 1 << 30, Mode: 0o644})
		if fi, err := os.Stat(tgz); err != nil || fi.Size() > 2<<20 {
			t.Fatalf("the bomb is not small: %v %v", fi.Size(), err)
		}
		dst := t.TempDir()
		err := extractFile(t, tgz, dst, lim)
		if err == nil || !strings.Contains(err.Error(), "more than") {
			t.Fatalf("a 1 GiB tarball extracted within a 64 MiB bound: %v", err)
		}
		t.Log(err)
		if n := du(t, dst); n > lim.MaxBytes {
			t.Fatalf("wrote %d bytes, over the bound of %d", n, lim.MaxBytes)
		}
	})
	t.Run("entries", func(t *testing.T) {
		var hs []*tar.Header
		for i := range 5000 {
			hs = append(hs, &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%d", i), Mode: 0o644})
		}
		tgz := writeTarGz(t, t.TempDir(), hs...)
		dst := t.TempDir()
		err := extractFile(t, tgz, dst, lim)
		if err == nil || !strings.Contains(err.Error(), "entries") {
			t.Fatalf("5000 entries extracted within a bound of 1000: %v", err)
		}
		t.Log(err)
		if got, _ := os.ReadDir(dst); len(got) > lim.MaxEntries {
			t.Fatalf("wrote %d entries, over the bound of %d", len(got), lim.MaxEntries)
		}
	})
	t.Run("within", func(t *testing.T) {
		tgz := writeTarGz(t, t.TempDir(), &tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Size: 1 << 20, Mode: 0o644})
		if err := extractFile(t, tgz, t.TempDir(), lim); err != nil {
			t.Fatalf("a tarball within the bounds: %v", err)
		}
	})
}

// TestTarballWriteThroughLink (issue 14, finding 6): no entry is written
// through a symbolic link, nor below one, nor may a link lead outside the
// tree through a chain of links that each look contained.
func TestTarballWriteThroughLink(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}
	}
	for name, hs := range map[string][]*tar.Header{
		// A link under a link that points out: the second link is made
		// in the outside directory.
		"link under absolute link": {link("l", outside), link("l/evil", "x")},
		"link under dot-dot link":  {link("up", ".."), link("up/evil", "x")},
		"link under link to root":  {link("l", "."), link("l/l/evil", "../x")},
		// Each looks contained; followed, e climbs two levels out.
		"chained links": {&tar.Header{Typeflag: tar.TypeDir, Name: "a/", Mode: 0o755}, link("a/b", ".."), link("e", "a/b/a/b/../../"+filepath.Base(outside)+"/secret")},
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "tree")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			err := extractFile(t, writeTarGz(t, t.TempDir(), hs...), dst, DefaultLimits)
			if err == nil {
				t.Fatal("extracted; want the tarball refused")
			}
			t.Log(err)
			for _, dir := range []string{parent, outside} {
				got, _ := os.ReadDir(dir)
				var names []string
				for _, e := range got {
					names = append(names, e.Name())
				}
				if want := map[string]string{parent: "tree", outside: "secret"}[dir]; len(names) != 1 || names[0] != want {
					t.Errorf("%s holds %v; want only %s", dir, names, want)
				}
			}
		})
	}
}
