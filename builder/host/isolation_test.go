package host_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/host"
)

// needRoot skips a test that needs root (other uids, chown) when not root,
// except in CI, which runs as root and must run it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root, and CI runs as root")
	}
	t.Skip("needs root: builds as other uids")
}

// layersLifecycle is a lifecycle whose detector passes and whose builder
// writes what a buildpack would: a cache-only layer and a cache + launch
// layer, each a few levels of directories with files, a store.toml and
// the launch metadata. It keeps going when a directory is not what it
// expects (the swapper below is at work).
const layersLifecycle = `#!/bin/sh
layers= builder=
while [ $# -gt 0 ]; do
	case "$1" in -layers) layers=$2; shift ;; -analyzed) builder=1 ;; esac
	shift
done
[ -n "$builder" ] || exit 0 # the detector
[ -n "$layers" ] || exit 1
bp="$layers/pier_fake"
mkdir -p "$bp"
printf '[metadata]\nn = 1\n' > "$bp/store.toml"
for l in only both; do
	launch=false
	[ $l = both ] && launch=true
	printf '[types]\ncache = true\nlaunch = %s\n' $launch > "$bp/$l.toml"
	for i in 1 2 3 4 5 6; do
		mkdir -p "$bp/$l/d$i/e/f" 2>/dev/null && echo data > "$bp/$l/d$i/e/f/file" 2>/dev/null
		echo x > "$bp/$l/d$i/file" 2>/dev/null
	done
done
mkdir -p "$layers/config"
printf '[[processes]]\ntype = "web"\ncommand = ["true"]\n' > "$layers/config/metadata.toml"
exit 0
`

const swapUID = 100123

// swapMain plays an app's running process, as the app's uid, during its
// next builds: it keeps swapping the directories it can write under the
// app's build dir (the cache, the build's layers) for symlinks to
// SWAP_CANARY, and its files for symlinks to a canary file, and plants analyzed.toml in scratch dirs as a symlink to a
// canary file, until killed.
func swapMain() {
	root, canary := os.Getenv("SWAP_ROOT"), os.Getenv("SWAP_CANARY")
	secret := filepath.Join(canary, "secret")
	for {
		var dirs, files []string
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && filepath.Dir(p) != root {
				files = append(files, p)
			}
			if err != nil || !d.IsDir() || p == root {
				return nil
			}
			if filepath.Dir(p) == root {
				if strings.HasPrefix(d.Name(), ".tmp-") {
					os.Symlink(secret, filepath.Join(p, "analyzed.toml"))
					os.Symlink(secret, filepath.Join(p, "group.toml"))
				}
				return nil // root's directory: not renamable
			}
			if d.Name() == "config" || strings.HasSuffix(d.Name(), ".swp") {
				return filepath.SkipDir
			}
			dirs = append(dirs, p)
			return nil
		})
		for i, d := range append(dirs, files...) {
			moved := d + ".swp"
			if os.Rename(d, moved) != nil {
				continue
			}
			if i < len(dirs) {
				os.Symlink(canary, d)
			} else {
				os.Symlink(secret, d)
			}
			for i := 0; i < 3; i++ {
				os.Lstat(d)
			}
			os.Remove(d)
			os.Rename(moved, d)
		}
	}
}

// canaryFile is what a canary entry must still be after the test.
type canaryFile struct {
	mode     fs.FileMode
	uid, gid uint32
	content  string
}

func snapshot(t *testing.T, dir string) map[string]canaryFile {
	t.Helper()
	files := map[string]canaryFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		f := canaryFile{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.content = string(b)
		}
		files[p] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestSymlinkSwapDuringBuild (issue 14, finding 1): the app's own
// processes run, as its uid, while root builds it again; they can write
// its cache and the build's layers. A process swapping directories there
// for symlinks to a directory outside the tree, over many builds, must
// never get root to chown, chmod, move, overwrite or copy anything there.
func TestSymlinkSwapDuringBuild(t *testing.T) {
	heavy(t)
	needRoot(t)
	lc, bps := fakeToolsWith(t, layersLifecycle)
	work := workDir(t)
	s, err := host.New(host.Config{LifecycleDir: lc, BuildpacksDir: bps, WorkDir: work,
		BuildUser: func(string) (int, int) { return swapUID, swapUID }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// The canary: root's, private, outside the build store.
	var rnd [8]byte
	rand.Read(rnd[:])
	secret := "pier-canary-" + hex.EncodeToString(rnd[:])
	canary := filepath.Join(workDir(t), "canary")
	for _, d := range []string{canary, filepath.Join(canary, "sub")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]fs.FileMode{"secret": 0o600, "sub/file": 0o640} {
		if err := os.WriteFile(filepath.Join(canary, name), []byte(secret+"\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, canary)

	const app = "swapped"
	appRoot := filepath.Join(s.WorkDir(), app)
	build := func() (*pier.BuildResult, error) {
		return s.Build(context.Background(), pier.BuildRequest{App: app, UID: swapUID,
			SourceDir: filepath.Join("testdata", "nothing"), Log: io.Discard})
	}
	// A first build makes the app's dir and cache, for the swapper to find.
	res, err := build()
	if err != nil {
		t.Fatalf("first build: %v", err)
	}
	host.RemoveAll(res.Image)

	// The swapper is the test binary, run as the app's uid: copied where
	// that uid can execute it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(workDir(t), "swapper")
	if err := copyExecutable(self, exe); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	swapper := exec.Command(exe)
	swapper.Env = []string{"PIER_TEST_HELPER=swap", "SWAP_ROOT=" + appRoot, "SWAP_CANARY=" + canary}
	swapper.Stdout, swapper.Stderr = &out, &out
	swapper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: swapUID, Gid: swapUID}}
	if err := swapper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-swapper.Process.Pid, syscall.SIGKILL)
		swapper.Wait()
	}()

	const builds = 200
	ok := 0
	var lastErr error
	for i := 0; i < builds; i++ {
		res, err := build()
		if err != nil {
			lastErr = err // the swapper may break its own build; never root
			continue
		}
		ok++
		host.RemoveAll(res.Image)
	}
	t.Logf("%d builds, %d succeeded (last error: %v)", builds, ok, lastErr)
	if swapper.ProcessState != nil {
		t.Fatalf("the swapper exited: %s", out.String())
	}

	after := snapshot(t, canary)
	for p, want := range before {
		got, found := after[p]
		switch {
		case !found:
			t.Errorf("%s: gone (moved by root?)", p)
		case got != want:
			t.Errorf("%s: now %v uid %d gid %d %q, was %v uid %d gid %d %q", p,
				got.mode, got.uid, got.gid, got.content, want.mode, want.uid, want.gid, want.content)
		}
	}
	for p := range after {
		if _, found := before[p]; !found {
			t.Errorf("%s: new in the canary dir", p)
		}
	}
	// Nor did root copy the canary into the app's reach.
	filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the canary's content", p)
		}
		return nil
	})
	if ok == 0 {
		t.Errorf("no build succeeded: the test proves nothing about saving and locking (last error: %v)", lastErr)
	}
}

func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// TestBuildDirsPrivateToTheApp (issue 14, finding 3, build dirs): an app's
// build dir is its own: its uid reaches its builds, another app's uid
// cannot list or read them, nor list the build store.
func TestBuildDirsPrivateToTheApp(t *testing.T) {
	needRoot(t)
	lc, bps := fakeToolsWith(t, layersLifecycle)
	s, err := host.New(host.Config{LifecycleDir: lc, BuildpacksDir: bps, WorkDir: workDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const uid, other = 100131, 100132
	res, err := s.Build(context.Background(), pier.BuildRequest{App: "private", UID: uid,
		SourceDir: filepath.Join("testdata", "nothing"), Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	appRoot := filepath.Dir(res.Image)
	for path, want := range map[string]fs.FileMode{s.WorkDir(): 0o711, appRoot: 0o750} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != want || st.Uid != 0 {
			t.Errorf("%s: %v uid %d, want %v and root's", path, fi.Mode().Perm(), st.Uid, want)
		}
		if path == appRoot && st.Gid != uid {
			t.Errorf("%s: group %d, want the app's (%d)", path, st.Gid, uid)
		}
	}
	// The cache is the build's uid's (req.UID), the build output root's.
	for path, want := range map[string]uint32{filepath.Join(appRoot, ".cache"): uid, filepath.Join(res.Image, "layers"): 0} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Sys().(*syscall.Stat_t).Uid; got != want {
			t.Errorf("%s: owner %d, want %d", path, got, want)
		}
	}
	as := func(id uint32, args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	meta := filepath.Join(res.Image, "layers", "config", "metadata.toml")
	if err := as(uid, "cat", meta); err != nil {
		t.Errorf("the app cannot read its build: %v", err)
	}
	if err := as(uid, "ls", appRoot); err != nil {
		t.Errorf("the app cannot list its build dir: %v", err)
	}
	for _, args := range [][]string{{"ls", appRoot}, {"cat", meta}, {"ls", s.WorkDir()}, {"ls", filepath.Join(res.Image, "app")}} {
		if err := as(other, args...); err == nil {
			t.Errorf("another app's uid could %v", args)
		}
	}
	if err := as(uid, "ls", s.WorkDir()); err == nil {
		t.Errorf("the app can list the build store (all apps' names)")
	}

	// What a killed pierd left (a scratch dir holds config values) goes
	// with the next build.
	left := []string{filepath.Join(appRoot, ".tmp-20261205T000000Z-abcdef"), filepath.Join(appRoot, ".cache.new-01234567")}
	for _, l := range left {
		if err := os.MkdirAll(filepath.Join(l, "platform", "env"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Build(context.Background(), pier.BuildRequest{App: "private", UID: uid,
		SourceDir: filepath.Join("testdata", "nothing"), Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if _, err := os.Lstat(l); !os.IsNotExist(err) {
			t.Errorf("%s left after the next build (%v)", l, err)
		}
	}
}

// RemoveAll removes a tree with read-only and unreadable directories (Go's
// module cache is read-only) without root, and follows no symlink in it.
// As root, it runs the remover as another uid.
func TestRemoveAllWithoutRoot(t *testing.T) {
	const uid = 100133
	parent := filepath.Join(workDir(t), "p")
	dir := filepath.Join(parent, "tree")
	for _, d := range []string{"a/b/c", "u/v"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	outside := workDir(t)
	if err := os.WriteFile(filepath.Join(dir, "a/b/c/f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "a/link")); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = []string{"PIER_TEST_HELPER=remove", "REMOVE_DIR=" + dir}
	if os.Geteuid() == 0 {
		exe := filepath.Join(workDir(t), "remover")
		if err := copyExecutable(self, exe); err != nil {
			t.Fatal(err)
		}
		cmd.Path = exe
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		if err := filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, uid)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		// The remover could change it, were the link followed.
		if err := os.Chown(outside, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	for d, mode := range map[string]fs.FileMode{filepath.Join(dir, "a/b/c"): 0o555, filepath.Join(dir, "a/b"): 0o555,
		filepath.Join(dir, "a"): 0o555, filepath.Join(dir, "u"): 0, outside: 0o555} {
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("RemoveAll: %v: %s", err, out)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there (%v)", dir, err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("the symlink's target changed: %v %v", fi.Mode(), err)
	}
}
