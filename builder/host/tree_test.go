package host

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Unit tests of the fd walks (tree.go) and the cache moves (cache.go), on
// real files of real uids: root is needed to make them.

const (
	appUID   = 100141 // the build's uid
	otherUID = 100142 // someone else
)

func rootOnly(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root, and CI runs as root")
	}
	t.Skip("needs root: files of other uids")
}

// mk makes path: a directory when content is "/", a symlink to link when
// link is set, else a file; then gives it mode and owner uid:uid.
// node is a file, dir ("/" as content) or symlink (link) of a test tree.
type node struct {
	path, content, link string
	mode                fs.FileMode
	uid                 int
}

// mkTree makes nodes under top, in order.
func mkTree(t *testing.T, top string, nodes []node) {
	t.Helper()
	for _, n := range nodes {
		mk(t, filepath.Join(top, n.path), n.content, n.link, n.mode, n.uid)
	}
}

func mk(t *testing.T, path, content, link string, mode fs.FileMode, uid int) {
	t.Helper()
	var err error
	switch {
	case link != "":
		err = os.Symlink(link, path)
	case content == "/":
		err = os.Mkdir(path, 0o700)
	default:
		err = os.WriteFile(path, []byte(content), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	if link == "" {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

type owned struct {
	mode     fs.FileMode
	uid, gid uint32
}

func stat(t *testing.T, path string) owned {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return owned{fi.Mode(), st.Uid, st.Gid}
}

func expect(t *testing.T, path string, want owned) {
	t.Helper()
	if got := stat(t, path); got != want {
		t.Errorf("%s: %v uid %d gid %d, want %v uid %d gid %d", path, got.mode, got.uid, got.gid, want.mode, want.uid, want.gid)
	}
}

func scratch(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLockedMode(t *testing.T) {
	for mode, want := range map[uint32]uint32{
		0o644: 0o644, 0o755: 0o755, 0o600: 0o640, 0o700: 0o750, 0o777: 0o755,
		0o666: 0o644, 0o555: 0o555, 0o4755: 0o755, 0o2775: 0o755, 0o1777: 0o755, 0o000: 0o000,
	} {
		if got := lockedMode(mode); got != want {
			t.Errorf("lockedMode(%#o) = %#o, want %#o", mode, got, want)
		}
	}
}

// lockTree takes back what the build's uid owns, follows no symlink, and
// leaves alone other owners' files and what is in directories others may
// still write.
func TestLockTree(t *testing.T) {
	rootOnly(t)
	dir := scratch(t)
	top, outside := filepath.Join(dir, "build"), filepath.Join(dir, "outside")
	mk(t, top, "/", "", 0o755, 0)
	mk(t, outside, "/", "", 0o777, appUID)
	mk(t, filepath.Join(outside, "x"), "x", "", 0o666, appUID)
	mkTree(t, top, []node{
		{"a", "/", "", 0o777, appUID},
		{"a/b", "/", "", 0o700, appUID},
		{"a/b/c", "/", "", 0o755, appUID},
		{"a/b/c/deep", "deep", "", 0o600, appUID},
		{"a/b/suid", "#!/bin/sh\n", "", 0o755, appUID},
		{"a/theirs", "theirs", "", 0o666, otherUID},
		{"a/link", "", outside, 0, appUID},
		{"a/open", "/", "", 0o777, otherUID},
		{"a/open/mine", "mine", "", 0o666, appUID},
		{"rootdir", "/", "", 0o755, 0},
		{"rootdir/mine", "mine", "", 0o644, appUID},
	})
	// After the chown, which clears it.
	if err := os.Chmod(filepath.Join(top, "a/b/suid"), 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	expect(t, filepath.Join(top, "a/b/suid"), owned{0o755 | fs.ModeSetuid, appUID, appUID})

	if err := lockTree(top, appUID, appUID); err != nil {
		t.Fatal(err)
	}
	p := func(rel string) string { return filepath.Join(top, rel) }
	expect(t, top, owned{fs.ModeDir | 0o755, 0, 0})
	expect(t, p("a"), owned{fs.ModeDir | 0o755, 0, appUID})
	expect(t, p("a/b"), owned{fs.ModeDir | 0o750, 0, appUID})
	expect(t, p("a/b/c"), owned{fs.ModeDir | 0o755, 0, appUID})
	expect(t, p("a/b/c/deep"), owned{0o640, 0, appUID})
	expect(t, p("a/b/suid"), owned{0o755, 0, appUID})
	expect(t, p("a/theirs"), owned{0o666, otherUID, otherUID})
	expect(t, p("a/link"), owned{fs.ModeSymlink | 0o777, 0, appUID})
	expect(t, p("a/open"), owned{fs.ModeDir | 0o777, otherUID, otherUID})
	expect(t, p("a/open/mine"), owned{0o666, appUID, appUID})
	expect(t, p("rootdir/mine"), owned{0o644, 0, appUID})
	// Not followed: the symlink's target is as it was.
	expect(t, outside, owned{fs.ModeDir | 0o777, appUID, appUID})
	expect(t, filepath.Join(outside, "x"), owned{0o666, appUID, appUID})
}

// giveTree hands over every entry of a tree root wrote, and a symlink in
// it, never its target.
func TestGiveTree(t *testing.T) {
	rootOnly(t)
	dir := scratch(t)
	top, outside := filepath.Join(dir, "fresh"), filepath.Join(dir, "outside")
	mk(t, outside, "/", "", 0o700, 0)
	mk(t, filepath.Join(outside, "x"), "x", "", 0o600, 0)
	mk(t, top, "/", "", 0o755, 0)
	mk(t, filepath.Join(top, "d"), "/", "", 0o755, 0)
	mk(t, filepath.Join(top, "d", "e"), "/", "", 0o700, 0)
	mk(t, filepath.Join(top, "d", "e", "f"), "f", "", 0o644, 0)
	mk(t, filepath.Join(top, "d", "dirlink"), "", outside, 0, 0)
	mk(t, filepath.Join(top, "filelink"), "", filepath.Join(outside, "x"), 0, 0)
	if err := giveTree(top, appUID, appUID); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{".", "d", "d/e", "d/e/f", "d/dirlink", "filelink"} {
		if got := stat(t, filepath.Join(top, rel)); got.uid != appUID || got.gid != appUID {
			t.Errorf("%s: uid %d gid %d, want %d", rel, got.uid, got.gid, appUID)
		}
	}
	expect(t, outside, owned{fs.ModeDir | 0o700, 0, 0})
	expect(t, filepath.Join(outside, "x"), owned{0o600, 0, 0})
}

// SaveCache moves cache-only layers, copies launched ones without
// following a symlink or copying another owner's file, and gives the new
// cache to the owner of layers.
func TestSaveCache(t *testing.T) {
	rootOnly(t)
	dir := scratch(t)
	layers, cache, outside := filepath.Join(dir, "layers"), filepath.Join(dir, ".cache"), filepath.Join(dir, "outside")
	mk(t, outside, "/", "", 0o755, appUID)
	mk(t, filepath.Join(outside, "evil.toml"), "[types]\ncache = true\n", "", 0o644, appUID)
	mk(t, layers, "/", "", 0o755, appUID)
	mkTree(t, layers, []node{
		{"bp", "/", "", 0o755, appUID},
		{"bp/store.toml", "[metadata]\n", "", 0o644, appUID},
		{"bp/only.toml", "[types]\ncache = true\n", "", 0o644, appUID},
		{"bp/only", "/", "", 0o755, appUID},
		{"bp/only/f", "only", "", 0o644, appUID},
		{"bp/both.toml", "[types]\ncache = true\nlaunch = true\n", "", 0o644, appUID},
		{"bp/both", "/", "", 0o555, appUID},
		{"bp/both/f", "both", "", 0o755, appUID},
		{"bp/both/sub", "/", "", 0o700, appUID},
		{"bp/both/sub/g", "g", "", 0o600, appUID},
		{"bp/both/link", "", outside, 0, appUID},
		{"bp/both/theirs", "theirs", "", 0o644, otherUID},
		{"bp/launch.toml", "[types]\nlaunch = true\n", "", 0o644, appUID},
		{"bp/launch", "/", "", 0o755, appUID},
		{"bp/evil.toml", "", filepath.Join(outside, "evil.toml"), 0, appUID},
		{"bp/evil", "", outside, 0, appUID},
		{"config", "/", "", 0o755, appUID},
		{"config/metadata.toml", "", "", 0o644, appUID},
	})
	if err := SaveCache(layers, cache); err != nil {
		t.Fatal(err)
	}
	c := func(rel string) string { return filepath.Join(cache, rel) }
	expect(t, cache, owned{fs.ModeDir | 0o700, appUID, appUID})
	expect(t, c("bp"), owned{fs.ModeDir | 0o755, appUID, appUID})
	expect(t, c("bp/store.toml"), owned{0o644, appUID, appUID})
	expect(t, c("bp/only/f"), owned{0o644, appUID, appUID})
	if _, err := os.Lstat(filepath.Join(layers, "bp", "only")); !os.IsNotExist(err) {
		t.Errorf("the cache-only layer is still in the build (%v)", err)
	}
	expect(t, c("bp/both"), owned{fs.ModeDir | 0o755, appUID, appUID})
	expect(t, c("bp/both/f"), owned{0o755, appUID, appUID})
	expect(t, c("bp/both/sub/g"), owned{0o600, appUID, appUID})
	expect(t, c("bp/both/link"), owned{fs.ModeSymlink | 0o777, appUID, appUID})
	if target, _ := os.Readlink(c("bp/both/link")); target != outside {
		t.Errorf("link -> %q, want %q", target, outside)
	}
	if b, _ := os.ReadFile(c("bp/both/sub/g")); string(b) != "g" {
		t.Errorf("copied content %q", b)
	}
	expect(t, filepath.Join(layers, "bp/both/f"), owned{0o755, appUID, appUID}) // still launched
	for _, gone := range []string{"bp/both/theirs", "bp/launch", "bp/launch.toml", "bp/evil.toml", "bp/evil", "config"} {
		if _, err := os.Lstat(c(gone)); !os.IsNotExist(err) {
			t.Errorf("%s is in the cache (%v)", gone, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("outside now holds %v", entries)
	}
}

// RestoreCache renames a cache of the build's uid onto the layers dir,
// and removes one of another owner unread.
func TestRestoreCache(t *testing.T) {
	rootOnly(t)
	for _, owner := range []int{appUID, otherUID} {
		dir := scratch(t)
		layers, cache := filepath.Join(dir, "layers"), filepath.Join(dir, ".cache")
		mk(t, layers, "/", "", 0o755, appUID)
		mk(t, cache, "/", "", 0o700, owner)
		mk(t, filepath.Join(cache, "bp"), "/", "", 0o755, owner)
		if err := RestoreCache(cache, layers); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(cache); !os.IsNotExist(err) {
			t.Errorf("owner %d: the cache is still there (%v)", owner, err)
		}
		_, err := os.Lstat(filepath.Join(layers, "bp"))
		if owner == appUID {
			expect(t, layers, owned{fs.ModeDir | 0o755, appUID, appUID})
			if err != nil {
				t.Errorf("the cache was not restored: %v", err)
			}
		} else {
			expect(t, layers, owned{fs.ModeDir | 0o755, appUID, appUID})
			if !os.IsNotExist(err) {
				t.Errorf("a cache of uid %d reached a build of uid %d", owner, appUID)
			}
		}
	}
}
