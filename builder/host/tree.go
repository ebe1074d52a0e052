package host

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Walking trees a build could write
//
// When pierd is root, a build's layers, its cache and its scratch dir are
// written by the app's uid, and that uid's processes (the running release)
// keep running while root works on them: any of them may swap a directory
// for a symlink to /etc between two steps of a walk. So root never walks
// such a tree by path. Every operation here is relative to a directory fd
// opened with O_NOFOLLOW|O_DIRECTORY, on one name of that directory's own
// listing (never "..", never a "/"), and never follows a symlink: the worst
// a swap can do is make root see another entry of the same tree. Entries
// are only changed when the build's uid owns them, so a hard link to
// someone else's file, placed in the tree, is left alone.
//
// Only the tree's top is opened by path, and its parents must be
// directories only root can write (WorkDir and the app's directory).

const (
	dirFlags  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fileFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	// maxDepth bounds the recursion (each level holds an fd or two).
	maxDepth = 256
)

// openDir opens the top of a tree: path's last element must be a
// directory, not a symlink to one.
func openDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, dirFlags, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openDirAt opens the directory name of dir; a symlink fails (ELOOP or
// ENOTDIR), whatever it points to.
func openDirAt(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, dirFlags, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: dir.Name() + "/" + name, Err: err}
	}
	return os.NewFile(uintptr(fd), dir.Name()+"/"+name), nil
}

// openFileAt opens the regular file name of dir for reading; a symlink
// fails, and a FIFO does not block (then fstat says it is no file).
func openFileAt(dir *os.File, name string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(int(dir.Fd()), name, fileFlags, 0)
	if err != nil {
		return nil, st, &os.PathError{Op: "openat", Path: dir.Name() + "/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir.Name()+"/"+name)
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, st, &os.PathError{Op: "openat", Path: f.Name(), Err: errors.New("not a regular file")}
	}
	return f, st, nil
}

func fstat(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(int(f.Fd()), &st)
	return st, err
}

func lstatAt(dir *os.File, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

func isDir(st unix.Stat_t) bool     { return st.Mode&unix.S_IFMT == unix.S_IFDIR }
func isReg(st unix.Stat_t) bool     { return st.Mode&unix.S_IFMT == unix.S_IFREG }
func isSymlink(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFLNK }

// readFileAt reads the regular file name of dir, owned by uid (any owner
// when uid < 0), of at most limit bytes.
func readFileAt(dir *os.File, name string, uid, limit int) ([]byte, unix.Stat_t, error) {
	f, st, err := openFileAt(dir, name)
	if err != nil {
		return nil, st, err
	}
	defer f.Close()
	if uid >= 0 && int(st.Uid) != uid {
		return nil, st, fmt.Errorf("%s: owned by uid %d, not the build's (%d)", f.Name(), st.Uid, uid)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, st, err
	}
	if len(b) > limit {
		return nil, st, fmt.Errorf("%s: larger than %d bytes", f.Name(), limit)
	}
	return b, st, nil
}

// readFileBeneath reads dir/rel (names separated by "/"), following no
// symlink on the way.
func readFileBeneath(dir string, limit int, rel ...string) ([]byte, error) {
	d, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() { d.Close() }()
	for _, name := range rel[:len(rel)-1] {
		sub, err := openDirAt(d, name)
		if err != nil {
			return nil, err
		}
		d.Close()
		d = sub
	}
	b, _, err := readFileAt(d, rel[len(rel)-1], -1, limit)
	return b, err
}

// giveTree hands a tree that only root has written (a fresh copy of the
// source, the build's scratch dir) to uid:gid. Post-order: a directory
// stays root's until everything in it is handed over, so the build's uid
// cannot add to it an entry root would then chown.
func giveTree(path string, uid, gid int) error {
	d, err := openDir(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return giveDir(d, uid, gid, 0)
}

func giveDir(d *os.File, uid, gid, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: more than %d directories deep", d.Name(), maxDepth)
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, name := range names {
		st, err := lstatAt(d, name)
		if err != nil {
			return err
		}
		if isDir(st) {
			sub, err := openDirAt(d, name)
			if err != nil {
				return err
			}
			err = giveDir(sub, uid, gid, depth+1)
			sub.Close()
			if err != nil {
				return err
			}
			continue
		}
		// Files and symlinks: the link itself, never its target.
		if err := unix.Fchownat(int(d.Fd()), name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: d.Name() + "/" + name, Err: err}
		}
	}
	if err := unix.Fchown(int(d.Fd()), uid, gid); err != nil {
		return &os.PathError{Op: "chown", Path: d.Name(), Err: err}
	}
	return nil
}

// lockedMode is the mode of an entry lockTree takes back from the build:
// what the build's uid could do as owner it can still do through the
// group, bar writing; nobody but root writes; no setuid, setgid or sticky
// bit (root would own the file).
func lockedMode(mode uint32) uint32 {
	owner := mode & 0o700
	return (owner|owner>>3|mode&0o007)&^0o222 | owner&0o200
}

// lockTree makes a finished build immutable for the build's uid: every
// entry uid owns becomes root's (group gid), with no write bit for group
// and others. Pre-order: a directory is root's before its entries are
// listed, so they cannot change behind the walk. Entries of other owners
// are left as they are (a hard link to someone else's file is not the
// build's to change), and the walk does not enter a directory that anyone
// but root may still write.
func lockTree(path string, uid, gid int) error {
	d, err := openDir(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return lockDir(d, uid, gid, 0)
}

func lockDir(d *os.File, uid, gid, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: more than %d directories deep", d.Name(), maxDepth)
	}
	st, err := fstat(d)
	if err != nil {
		return err
	}
	if int(st.Uid) == uid {
		if err := lockFd(d, st, gid); err != nil {
			return err
		}
	} else if st.Uid != 0 || st.Mode&0o022 != 0 {
		return nil // not the build's, and others may write it
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, name := range names {
		st, err := lstatAt(d, name)
		if err != nil {
			return err
		}
		switch {
		case isDir(st):
			sub, err := openDirAt(d, name)
			if err != nil {
				return err
			}
			err = lockDir(sub, uid, gid, depth+1)
			sub.Close()
			if err != nil {
				return err
			}
		case int(st.Uid) != uid:
		case isReg(st):
			f, st, err := openFileAt(d, name)
			if err != nil {
				return err
			}
			if int(st.Uid) == uid {
				err = lockFd(f, st, gid)
			}
			f.Close()
			if err != nil {
				return err
			}
		default:
			// Symlinks, FIFOs, sockets: only their owner changes; the
			// directory is root's now, so name is still what was listed.
			if err := unix.Fchownat(int(d.Fd()), name, 0, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return &os.PathError{Op: "chown", Path: d.Name() + "/" + name, Err: err}
			}
		}
	}
	return nil
}

func lockFd(f *os.File, st unix.Stat_t, gid int) error {
	if err := unix.Fchown(int(f.Fd()), 0, gid); err != nil {
		return &os.PathError{Op: "chown", Path: f.Name(), Err: err}
	}
	if err := unix.Fchmod(int(f.Fd()), lockedMode(uint32(st.Mode))); err != nil {
		return &os.PathError{Op: "chmod", Path: f.Name(), Err: err}
	}
	return nil
}

// RemoveAll removes a build directory or a cache. os.RemoveAll already
// works by file descriptor and follows no symlink; as root it also removes
// entries of read-only directories (Go's module cache, which a build's
// layers hold, is read-only on disk). Without root those directories are
// first made writable, by the same kind of fd walk. bench/ removes its
// bare lifecycle builds with it.
func RemoveAll(dir string) error {
	if os.Geteuid() != 0 {
		if d, err := openDir(dir); err == nil {
			makeWritable(d, 0)
			d.Close()
		}
	}
	return os.RemoveAll(dir)
}

// makeWritable gives the owner rwx on d and the directories below it,
// best effort: os.RemoveAll reports what is left.
func makeWritable(d *os.File, depth int) {
	if depth > maxDepth {
		return
	}
	if st, err := fstat(d); err == nil && st.Mode&0o700 != 0o700 {
		unix.Fchmod(int(d.Fd()), uint32(st.Mode)&0o7777|0o700)
	}
	names, _ := d.Readdirnames(-1)
	for _, name := range names {
		st, err := lstatAt(d, name)
		if err != nil || !isDir(st) {
			continue
		}
		sub, err := openDirAt(d, name)
		if errors.Is(err, unix.EACCES) {
			// Unreadable: chmod by name. Not root, so this cannot reach
			// anything pierd's user could not change anyway.
			unix.Fchmodat(int(d.Fd()), name, 0o700, 0)
			sub, err = openDirAt(d, name)
		}
		if err != nil {
			continue
		}
		makeWritable(sub, depth+1)
		sub.Close()
	}
}
