package host

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

// The cache is the build's uid's own tree, written by its builds and
// reachable by its running processes at any time. Root moves it whole and
// builds the next one by file descriptor (see tree.go); it never walks it
// by path nor chowns what is in it.

// maxToml bounds the layer metadata files read as root.
const maxToml = 1 << 20

type layerTypes struct {
	Types struct {
		Cache  bool `toml:"cache"`
		Launch bool `toml:"launch"`
	} `toml:"types"`
}

// RestoreCache gives a build the app's cache: layers must be an empty
// directory of the build's uid (that is how the build's uid is known); it
// is replaced by cache, renamed, if that uid owns it. A cache of another
// owner (an app whose uid changed, a cache of an older Pier that root
// wrote) is removed instead: the build runs cold. Both paths' parents must
// be directories only root can write. (bench/ uses it around its bare
// lifecycle runs.)
func RestoreCache(cache, layers string) error {
	l, err := openDir(layers)
	if err != nil {
		return err
	}
	st, err := fstat(l)
	l.Close()
	if err != nil {
		return err
	}
	if err := os.Remove(layers); err != nil {
		return err
	}
	return restoreCache(cache, layers, int(st.Uid), int(st.Gid))
}

// restoreCache makes the build's layers dir, which must not exist: the
// app's cache, renamed, when uid owns it, else a new empty directory of
// uid:gid. The cache's content is never looked at.
func restoreCache(cache, layers string, uid, gid int) error {
	c, err := openDir(cache)
	switch {
	case err == nil:
		st, err := fstat(c)
		c.Close()
		if err != nil {
			return err
		}
		if int(st.Uid) == uid {
			// One rename, by root, between directories only root can
			// write.
			if err := os.Rename(cache, layers); err != nil {
				return err
			}
			// The cache is kept 0700; the build's layers are readable
			// by the app (lockTree keeps them so).
			return os.Chmod(layers, 0o755)
		}
		if err := os.RemoveAll(cache); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		// Not a directory: nothing Pier wrote. os.RemoveAll removes a
		// symlink, not what it points to.
		if err := os.RemoveAll(cache); err != nil {
			return err
		}
	}
	if err := os.Mkdir(layers, 0o755); err != nil {
		return err
	}
	l, err := openDir(layers)
	if err != nil {
		return err
	}
	defer l.Close()
	return give(l, uid, gid)
}

// SaveCache puts the layers marked cache = true (and each buildpack's
// store.toml) into a new cache for the app: moved when only cached, copied
// when the build also launches them. It works by file descriptor: the
// layers are the build's, and its uid (the owner of layers) may change
// them while this runs. Only directories, regular files and symlinks
// (copied as links) owned by that uid are copied; what root creates is
// given to that uid. The new cache replaces cache whole.
func SaveCache(layers, cache string) error {
	l, err := openDir(layers)
	if err != nil {
		return err
	}
	defer l.Close()
	lst, err := fstat(l)
	if err != nil {
		return err
	}
	uid, gid := int(lst.Uid), int(lst.Gid)
	var suffix [4]byte
	rand.Read(suffix[:])
	// Built beside cache, root's and 0700 until complete: the build's uid
	// cannot reach into it while root fills it.
	tmp := cache + ".new-" + hex.EncodeToString(suffix[:])
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	n, err := openDir(tmp)
	if err != nil {
		return err
	}
	defer n.Close()
	bps, err := l.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, bp := range bps {
		if bp == "config" || bp == "sbom" {
			continue
		}
		src, err := openDirAt(l, bp)
		if err != nil {
			if skippable(err) {
				continue // not a directory: no buildpack's
			}
			return err
		}
		err = saveBuildpack(src, n, bp, uid, gid)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := give(n, uid, gid); err != nil {
		return err
	}
	if err := os.RemoveAll(cache); err != nil {
		return err
	}
	if err := os.Rename(tmp, cache); err != nil {
		return err
	}
	done = true
	return nil
}

// skippable errors mean an entry is not what it was listed as (a symlink,
// or swapped since): the build's doing, and no reason to fail.
func skippable(err error) bool {
	return errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOENT)
}

// saveBuildpack saves one buildpack's cached layers from src into
// cache/bp.
func saveBuildpack(src, cache *os.File, bp string, uid, gid int) error {
	st, err := fstat(src)
	if err != nil {
		return err
	}
	if int(st.Uid) != uid {
		return nil
	}
	names, err := src.Readdirnames(-1)
	if err != nil {
		return err
	}
	var dst *os.File
	defer func() {
		if dst != nil {
			dst.Close()
		}
	}()
	dir := func() (*os.File, error) {
		if dst != nil {
			return dst, nil
		}
		if err := unix.Mkdirat(int(cache.Fd()), bp, 0o700); err != nil {
			return nil, &os.PathError{Op: "mkdirat", Path: cache.Name() + "/" + bp, Err: err}
		}
		dst, err = openDirAt(cache, bp)
		return dst, err
	}
	for _, name := range names {
		layer, ok := strings.CutSuffix(name, ".toml")
		if !ok {
			continue
		}
		data, fst, err := readFileAt(src, name, uid, maxToml)
		if err != nil {
			continue // not a file of the build's: no layer
		}
		if layer == "store" {
			d, err := dir()
			if err != nil {
				return err
			}
			if err := writeFileAt(d, name, data, uint32(fst.Mode), uid, gid); err != nil {
				return err
			}
			continue
		}
		var lt layerTypes
		if _, err := toml.Decode(string(data), &lt); err != nil || !lt.Types.Cache {
			continue
		}
		d, err := dir()
		if err != nil {
			return err
		}
		if !lt.Types.Launch {
			// Only cached: moved, entries and all, as they are.
			for _, e := range []string{name, layer} {
				if err := unix.Renameat(int(src.Fd()), e, int(d.Fd()), e); err != nil && !errors.Is(err, unix.ENOENT) {
					return &os.PathError{Op: "rename", Path: src.Name() + "/" + e, Err: err}
				}
			}
			continue
		}
		// Also launched: the build keeps it, the cache gets a copy.
		if err := writeFileAt(d, name, data, uint32(fst.Mode), uid, gid); err != nil {
			return err
		}
		ls, err := openDirAt(src, layer)
		if skippable(err) {
			continue
		}
		if err != nil {
			return err
		}
		err = copyLayer(ls, d, layer, uid, gid)
		ls.Close()
		if err != nil {
			return err
		}
	}
	if dst != nil {
		// Last: root's until filled.
		if err := unix.Fchmod(int(dst.Fd()), 0o755); err != nil {
			return err
		}
		return give(dst, uid, gid)
	}
	return nil
}

// copyLayer copies the directory src to dst/name.
func copyLayer(src, dst *os.File, name string, uid, gid int) error {
	st, err := fstat(src)
	if err != nil {
		return err
	}
	if int(st.Uid) != uid {
		return nil
	}
	return copyDirAt(src, st, dst, name, uid, gid, 0)
}

// copyDirAt copies src (whose stat is st) to a new directory dst/name,
// given to uid:gid once filled.
func copyDirAt(src *os.File, st unix.Stat_t, dst *os.File, name string, uid, gid, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: more than %d directories deep", src.Name(), maxDepth)
	}
	if err := unix.Mkdirat(int(dst.Fd()), name, 0o700); err != nil {
		return &os.PathError{Op: "mkdirat", Path: dst.Name() + "/" + name, Err: err}
	}
	d, err := openDirAt(dst, name)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := src.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, e := range names {
		est, err := lstatAt(src, e)
		if err != nil || int(est.Uid) != uid {
			continue
		}
		switch {
		case isDir(est):
			sub, err := openDirAt(src, e)
			if skippable(err) {
				continue
			}
			if err != nil {
				return err
			}
			sst, err := fstat(sub)
			if err == nil && int(sst.Uid) == uid {
				err = copyDirAt(sub, sst, d, e, uid, gid, depth+1)
			}
			sub.Close()
			if err != nil {
				return err
			}
		case isSymlink(est):
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlinkat(int(src.Fd()), e, buf)
			if err != nil {
				continue // swapped since
			}
			if err := unix.Symlinkat(string(buf[:n]), int(d.Fd()), e); err != nil {
				return &os.PathError{Op: "symlink", Path: d.Name() + "/" + e, Err: err}
			}
			if err := giveAt(d, e, uid, gid); err != nil {
				return &os.PathError{Op: "chown", Path: d.Name() + "/" + e, Err: err}
			}
		case isReg(est):
			if err := copyFileAt(src, d, e, uid, gid); err != nil {
				return err
			}
		}
		// Anything else (FIFOs, sockets) is no part of a layer.
	}
	if err := unix.Fchmod(int(d.Fd()), uint32(st.Mode)&0o777|0o700); err != nil {
		return err
	}
	return give(d, uid, gid)
}

// copyFileAt copies the regular file name of src, if uid owns it, to a new
// file of dst given to uid:gid.
func copyFileAt(src, dst *os.File, name string, uid, gid int) error {
	in, st, err := openFileAt(src, name)
	if err != nil {
		return nil // swapped since for something else: not copied
	}
	defer in.Close()
	if int(st.Uid) != uid {
		return nil
	}
	return writeAt(dst, name, in, uint32(st.Mode), uid, gid)
}

func writeFileAt(dst *os.File, name string, data []byte, mode uint32, uid, gid int) error {
	return writeAt(dst, name, strings.NewReader(string(data)), mode, uid, gid)
}

// writeAt creates the file name of dst (it must not exist: no symlink is
// followed) with r's content, mode's permission bits and owner uid:gid.
func writeAt(dst *os.File, name string, r io.Reader, mode uint32, uid, gid int) error {
	fd, err := unix.Openat(int(dst.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: dst.Name() + "/" + name, Err: err}
	}
	out := os.NewFile(uintptr(fd), dst.Name()+"/"+name)
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	if err := unix.Fchmod(fd, mode&0o777); err != nil {
		out.Close()
		return err
	}
	if err := give(out, uid, gid); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// give makes f uid:gid's. Without root everything is pierd's user's
// already, and chown could only fail.
func give(f *os.File, uid, gid int) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := unix.Fchown(int(f.Fd()), uid, gid); err != nil {
		return &os.PathError{Op: "chown", Path: f.Name(), Err: err}
	}
	return nil
}

// giveAt makes the entry name of dir uid:gid's; a symlink itself, not its
// target.
func giveAt(dir *os.File, name string, uid, gid int) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := unix.Fchownat(int(dir.Fd()), name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "chown", Path: dir.Name() + "/" + name, Err: err}
	}
	return nil
}
