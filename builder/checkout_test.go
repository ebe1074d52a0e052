package builder

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
}

func tarOf(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body))}
		if e.typ == tar.TypeXGlobalHeader {
			// As git archive writes it: the commit id, no file.
			h = &tar.Header{Typeflag: e.typ, PAXRecords: map[string]string{"comment": "0123abcd"}}
		}
		if h.Mode == 0 && e.typ != tar.TypeXGlobalHeader {
			h.Mode = 0o644
		}
		if e.typ != tar.TypeReg && e.typ != tar.TypeXGlobalHeader {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &buf
}

func TestExtractTar(t *testing.T) {
	dir := t.TempDir()
	err := extractTar(tarOf(t,
		entry{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
		entry{name: "src/", typ: tar.TypeDir},
		entry{name: "src/main.go", typ: tar.TypeReg, body: "package main"},
		entry{name: "run.sh", typ: tar.TypeReg, body: "#!/bin/sh", mode: 0o4755},
		entry{name: "link", typ: tar.TypeSymlink, link: "src/main.go"},
		entry{name: "src/up", typ: tar.TypeSymlink, link: "../run.sh"},
	), dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "link")); err != nil || string(b) != "package main" {
		t.Errorf("link: %q %v", b, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "run.sh"))
	if err != nil || fi.Mode().Perm()&0o100 == 0 || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("run.sh: mode %v, %v; want executable, not setuid", fi.Mode(), err)
	}

	refused := map[string][]entry{
		"absolute":          {{name: "/tmp/evil", typ: tar.TypeReg, body: "x"}},
		"dotdot":            {{name: "../evil", typ: tar.TypeReg, body: "x"}},
		"inner dotdot":      {{name: "a/../../evil", typ: tar.TypeReg, body: "x"}},
		"absolute symlink":  {{name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"}},
		"escaping symlink":  {{name: "a/l", typ: tar.TypeSymlink, link: "../../etc"}},
		"hard link":         {{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}},
		"device":            {{name: "d", typ: tar.TypeChar}},
		"too large":         {{name: "big", typ: tar.TypeReg, body: strings.Repeat("x", 2048)}},
		"duplicate":         {{name: "f", typ: tar.TypeReg, body: "1"}, {name: "f", typ: tar.TypeReg, body: "2"}},
		"write via symlink": {{name: "l", typ: tar.TypeSymlink, link: "."}, {name: "l", typ: tar.TypeReg, body: "x"}},
		// Lexically "l/l/x" -> "l/x" stays inside, but l is the root
		// itself, so the link would really point to ../x.
		"link below link": {{name: "l", typ: tar.TypeSymlink, link: "."}, {name: "l/l/x", typ: tar.TypeSymlink, link: "../x"}},
		"file below link": {{name: "l", typ: tar.TypeSymlink, link: "."}, {name: "l/f", typ: tar.TypeReg, body: "x"}},
	}
	for name, entries := range refused {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "tree")
			os.Mkdir(dir, 0o755)
			if err := extractTar(tarOf(t, entries...), dir, 1024); err == nil {
				t.Fatal("extracted; want an error")
			} else {
				t.Log(err)
			}
			// Nothing may appear beside the tree.
			if got, _ := os.ReadDir(parent); len(got) != 1 {
				t.Errorf("files outside the tree: %v", got)
			}
		})
	}
}

func TestCheckoutTreeRejectsBadCommit(t *testing.T) {
	for _, c := range []string{"", "HEAD", "--output=/tmp/x", "main", strings.Repeat("g", 40)} {
		if err := CheckoutTree(t.Context(), t.TempDir(), c, t.TempDir()); err == nil {
			t.Errorf("CheckoutTree(%q) succeeded", c)
		}
	}
}
