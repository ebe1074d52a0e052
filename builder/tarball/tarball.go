// Package tarball moves a checked-out source tree between Pier's
// components (the builder, the controller, build Pods) as a gzipped
// tarball, and unpacks it without trusting it: the tree is a pusher's.
package tarball

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// Write writes the tree at dir, as a gzipped tarball, to w:
// directories, regular files (with their permission bits) and symbolic
// links, the links last so that unpacking never writes through one.
// Other files (sockets, devices) are left out.
func Write(w io.Writer, dir string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	var links []*tar.Header
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() && name == ".git" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode().IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime()})
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			links = append(links, &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: fi.ModTime()})
			return nil
		case fi.Mode().IsRegular():
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyN(tw, f, fi.Size())
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range links {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// Limits bound what Extract writes. A gzipped tarball shrinks zeros
// a thousandfold, so the size of the request says nothing of the size of
// the tree.
type Limits struct {
	MaxBytes   int64 // file content, in total
	MaxEntries int   // files, directories and links
}

// DefaultLimits are a checkout's bounds: a tarball carries a tree that
// the builder checked out (builder.CheckoutTree), which refuses a tree
// larger than this, so no tarball made from a push is larger.
var DefaultLimits = Limits{MaxBytes: 4 << 30, MaxEntries: 1 << 20}

// Extract unpacks a gzipped tarball made by Write into dir, which must
// exist, within DefaultLimits.
func Extract(r io.Reader, dir string) error {
	return ExtractLimited(r, dir, DefaultLimits)
}

// ExtractLimited unpacks a gzipped tarball made by Write into dir, which
// must exist. Names that would land outside dir, entries below a
// symbolic link, links that resolve outside dir, and more than lim are
// refused. Every write goes through an os.Root, so that not even a bug
// here writes outside dir.
func ExtractLimited(r io.Reader, dir string, lim Limits) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("the source is not a gzipped tarball: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(gz)
	var (
		links        []string
		total        int64
		entries      int
		linksStarted bool
	)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return CheckLinks(root, links)
		}
		if err != nil {
			return fmt.Errorf("reading the source tarball: %w", err)
		}
		name := path.Clean(strings.TrimSuffix(h.Name, "/"))
		if name == "." || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("the source tarball has an entry outside its root: %q", h.Name)
		}
		if entries++; entries > lim.MaxEntries {
			return fmt.Errorf("the source tarball has more than %d entries", lim.MaxEntries)
		}
		if linksStarted && h.Typeflag != tar.TypeSymlink {
			return fmt.Errorf("the source tarball has %q after its symbolic links", h.Name)
		}
		if err := BelowLink(root, name); err != nil {
			return fmt.Errorf("the source tarball: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			if err := root.Chmod(name, fs.FileMode(h.Mode).Perm()|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			// Checked before a byte is written: the header says how
			// much follows, and tar.Reader holds the entry to it.
			if total += h.Size; h.Size < 0 || total > lim.MaxBytes {
				return fmt.Errorf("the source tarball unpacks to more than %d bytes (at %q); a checkout is never larger", lim.MaxBytes, h.Name)
			}
			if err := mkParent(root, name); err != nil {
				return err
			}
			// O_EXCL: an entry never replaces another.
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(h.Mode).Perm()|0o600)
			if err != nil {
				return err
			}
			_, err = io.CopyN(f, tr, h.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			linksStarted = true
			if h.Linkname == "" || path.IsAbs(h.Linkname) || escapes(path.Join(path.Dir(name), h.Linkname)) {
				return fmt.Errorf("the source tarball has the symbolic link %q -> %q, which points outside the tree", h.Name, h.Linkname)
			}
			if err := mkParent(root, name); err != nil {
				return err
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
			links = append(links, name)
		default:
			return fmt.Errorf("the source tarball has %q of an unsupported type", h.Name)
		}
	}
}

func escapes(p string) bool { return p == ".." || strings.HasPrefix(p, "../") }

func mkParent(root *os.Root, name string) error {
	if d := path.Dir(name); d != "." {
		return root.MkdirAll(d, 0o755)
	}
	return nil
}

// BelowLink refuses a slash-separated name that has a symbolic link
// among its parents in root. A tree never needs one (a path is either a
// link or a directory), and following one would let entries land where
// the link points, or let a link that looks contained when read on its
// own ("l" -> "." and then "l/l/x" -> "../x") point outside.
func BelowLink(root *os.Root, name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		fi, err := root.Lstat(name[:i])
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nothing deeper exists either
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("entry %q refused: it is below the symbolic link %q", name, name[:i])
		}
	}
	return nil
}

// CheckLinks refuses any of the symbolic links (slash-separated names in
// root) that, followed as the kernel would, through every other link of
// the tree, leads outside root: each link's text can look contained on
// its own ("a/b" -> ".." and "e" -> "a/b/a/b/../../etc/hostname") while
// the chain climbs out. It runs once the whole tree is in place, since a
// link may go through links made after it. A link that leads nowhere
// (a missing file) is left alone: the kernel cannot follow it either.
func CheckLinks(root *os.Root, links []string) error {
	for _, name := range links {
		_, err := root.Stat(name)
		if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		target, _ := root.Readlink(name)
		return fmt.Errorf("symbolic link %q -> %q refused: followed through the tree's other links it leads outside the tree or nowhere (%v); make it point to a path inside the repository", name, target, errors.Unwrap(err))
	}
	return nil
}
