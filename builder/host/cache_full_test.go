package host

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pierpaas/pier"
)

// SaveCache on a full disk fails with ENOSPC and leaves no half-saved
// cache: the copy of a launched layer does not fit on a 4 MiB tmpfs.
// The tmpfs is mounted on the test's own temp dir, which nothing else
// uses, and unmounted when the test ends.
func TestSaveCacheOnFullDisk(t *testing.T) {
	rootOnly(t)
	dir := scratch(t)
	if err := syscall.Mount("pier-cache-test", dir, "tmpfs", 0, "size=4m,mode=0755"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	layers, cache := filepath.Join(dir, "layers"), filepath.Join(dir, ".cache")
	mk(t, layers, "/", "", 0o755, appUID)
	mkTree(t, layers, []node{
		{"bp", "/", "", 0o755, appUID},
		{"bp/both.toml", "[types]\ncache = true\nlaunch = true\n", "", 0o644, appUID},
		{"bp/both", "/", "", 0o755, appUID},
		{"bp/both/big", string(bytes.Repeat([]byte("x"), 3<<20)), "", 0o644, appUID},
	})
	err := SaveCache(layers, cache)
	if !pier.IsNoSpace(err) {
		t.Fatalf("SaveCache on a full disk: %v, want ENOSPC", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".cache*"))
	if len(left) != 0 {
		t.Fatalf("a half-saved cache is left: %v", left)
	}
	// The build keeps its layer whole.
	if st, err := os.Stat(filepath.Join(layers, "bp/both/big")); err != nil || st.Size() != 3<<20 {
		t.Fatalf("the launched layer: %v %v", st, err)
	}
}
