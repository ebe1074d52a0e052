package builder

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
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

// Finding 6 of issue 14: each link's text was checked alone. "a/b" -> ".."
// looks contained (it is the tree's root), and so does
// "escape" -> "a/b/a/b/../../outside/secret" read lexically ("a/b/outside/
// secret"); but the kernel follows a/b twice, climbs out twice, and the
// build reads a file beside the tree. A real git commit with those links
// must be refused by CheckoutTree, and nothing readable through the tree.
func TestSymlinkChainEscapesCheckout(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	// base/outside/secret is what the push must not reach; the checkout
	// lands in base/x/tree, so that a/b/a/b/../.. climbs from tree to
	// base/x and then base.
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "outside"), 0o755)
	os.WriteFile(filepath.Join(base, "outside", "secret"), []byte("host secret"), 0o644)
	tree := filepath.Join(base, "x", "tree")

	work, bare := t.TempDir(), t.TempDir()
	git := func(dir string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(work, "init", "-q", "-b", "main")
	os.MkdirAll(filepath.Join(work, "a"), 0o755)
	os.Symlink("..", filepath.Join(work, "a", "b"))
	os.Symlink("a/b/a/b/../../outside/secret", filepath.Join(work, "escape"))
	os.WriteFile(filepath.Join(work, "main.go"), []byte("package main\n"), 0o644)
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "links")
	git(bare, "init", "-q", "--bare")
	git(work, "push", "-q", bare, "main")
	commit := git(work, "rev-parse", "HEAD")

	err := CheckoutTree(t.Context(), bare, commit, tree)
	if err == nil || !strings.Contains(err.Error(), `symlink "escape" refused`) {
		t.Errorf("CheckoutTree: %v; want the link escape refused", err)
	}
	if b, err := os.ReadFile(filepath.Join(tree, "escape")); err == nil {
		t.Errorf("the tree's escape link reads %q from outside the tree", b)
	}

	// Links that only look odd but stay inside still check out.
	ok := []entry{
		{name: "a/", typ: tar.TypeDir},
		{name: "a/c/", typ: tar.TypeDir},
		{name: "a/b", typ: tar.TypeSymlink, link: ".."},
		{name: "in", typ: tar.TypeSymlink, link: "a/b/a/c/../b/main.go"},
		{name: "main.go", typ: tar.TypeReg, body: "package main"},
	}
	dir := t.TempDir()
	if err := extractTar(tarOf(t, ok...), dir, 1<<20); err != nil {
		t.Fatalf("contained links refused: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "in")); err != nil || string(b) != "package main" {
		t.Errorf("in: %q %v", b, err)
	}
	// A loop is refused, not followed forever.
	loop := []entry{{name: "p", typ: tar.TypeSymlink, link: "q"}, {name: "q", typ: tar.TypeSymlink, link: "p"}}
	if err := extractTar(tarOf(t, loop...), t.TempDir(), 1<<20); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("a link loop: %v", err)
	}
}

// A push is checked out in its server's TreeDir, and ResetTreeDir, run
// when the server starts, removes what a killed server left there.
func TestCheckoutInTreeDir(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	work, bare := t.TempDir(), t.TempDir()
	git := func(dir string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(work, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "main.go"), []byte("package main\n"), 0o644)
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "one")
	git(bare, "init", "-q", "--bare")
	git(work, "push", "-q", bare, "main")

	trees := filepath.Join(t.TempDir(), "src")
	if err := ResetTreeDir(trees); err != nil {
		t.Fatal(err)
	}
	req := DeployRequest{Repo: bare, Commit: git(work, "rev-parse", "HEAD"), TreeDir: trees}
	dir, remove, err := req.Checkout(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != trees {
		t.Fatalf("checked out in %s, not in TreeDir %s", dir, trees)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "main.go")); err != nil || string(b) != "package main\n" {
		t.Fatalf("main.go: %q %v", b, err)
	}
	// The server is killed before remove runs; the next one starts.
	_ = remove
	if err := ResetTreeDir(trees); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(trees); len(left) != 0 {
		t.Fatalf("left in TreeDir after ResetTreeDir: %v", left)
	}
	if fi, err := os.Stat(trees); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("TreeDir after ResetTreeDir: %v %v", fi, err)
	}
}
