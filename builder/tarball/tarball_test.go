package tarball

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
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
