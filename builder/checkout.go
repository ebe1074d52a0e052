package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"

	"github.com/pierpaas/pier/builder/tarball"
)

// maxCheckoutBytes bounds the unpacked size of a source tree. A push is
// limited in size, but git compresses blobs, so a small push can unpack to
// a very large tree.
const maxCheckoutBytes = 4 << 30

// commitRE matches a full object name (SHA-1, or SHA-256 repositories).
var commitRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// CheckoutTree writes the tree of commit in the bare repository repo into
// dir (created if missing), for a build to use. It runs `git archive` and
// unpacks the tar in Go rather than piping it to tar(1), so that no entry
// can land outside dir: absolute paths, ".." and symlinks that point out of
// dir are refused, and every write goes through an os.Root.
func CheckoutTree(ctx context.Context, repo, commit, dir string) error {
	// commit is passed to git as an argument: a full hex object name cannot
	// be mistaken for an option or a ref expression.
	if !commitRE.MatchString(commit) {
		return fmt.Errorf("checkout: %q is not a full commit id", clip(commit))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "git", "--git-dir="+repo, "archive", "--format=tar", commit)
	cmd.Env = gitEnv(nil)
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	xerr := extractTar(out, dir, maxCheckoutBytes)
	if xerr != nil {
		cancel() // stop git; it may be blocked writing to us
	}
	werr := cmd.Wait()
	switch {
	case xerr != nil:
		return fmt.Errorf("checkout of %s: %w", commit[:12], xerr)
	case werr != nil:
		return fmt.Errorf("checkout of %s: git archive: %v: %s", commit[:12], werr, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// extractTar unpacks a tar stream into dir, refusing anything that would
// escape it and more than max bytes of file content.
func extractTar(r io.Reader, dir string, max int64) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var total int64
	var links []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			// Each link on its own looked contained; together they may
			// not ("a/b" -> ".." makes "a/b/a/b/../.." climb out): now
			// that the tree is whole, follow every one as the kernel will.
			// A refused link is removed too: the tree is not left with
			// a way out, whatever the caller does with it.
			var refused error
			for _, l := range links {
				if err := resolveInside(root, l); err != nil {
					root.Remove(l)
					if refused == nil {
						refused = err
					}
				}
			}
			return refused
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // git's pax header carrying the commit id: no file
		}
		name, err := cleanEntryName(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the archive root itself
		}
		if err := tarball.BelowLink(root, name); err != nil {
			return fmt.Errorf("the pushed tree: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			total += h.Size
			if total > max {
				return fmt.Errorf("source tree is larger than %s unpacked", formatBytes(max))
			}
			if err := writeEntry(root, name, h, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := checkSymlink(name, h.Linkname); err != nil {
				return err
			}
			if err := mkParent(root, name); err != nil {
				return err
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
			links = append(links, name)
		default:
			// git archive emits only directories, files and symlinks;
			// anything else (hard links, devices) is not from git.
			return fmt.Errorf("archive entry %q has unsupported type %q", clip(h.Name), h.Typeflag)
		}
	}
}

// cleanEntryName returns the slash-separated relative path of an archive
// entry, or an error if it is absolute or climbs out with "..".
func cleanEntryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("archive entry %q refused: absolute or odd path", clip(name))
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("archive entry %q refused: it climbs out of the tree", clip(name))
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// checkSymlink refuses a symlink whose target, read relative to the link's
// own directory, leaves the tree, or is absolute. os.Root already stops us
// from writing through such a link; this stops the build from reading
// through it.
func checkSymlink(name, target string) error {
	if target == "" || path.IsAbs(target) {
		return fmt.Errorf("symlink %q -> %q refused: it points outside the source tree", clip(name), clip(target))
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("symlink %q -> %q refused: it points outside the source tree", clip(name), clip(target))
	}
	return nil
}

// maxLinkHops bounds the links followed resolving one path, as the
// kernel's own limit (40) does.
const maxLinkHops = 40

// resolveInside follows the symlink name (relative to root) component by
// component, through every link on the way, as the kernel would, and
// refuses it when a step climbs above root or names an absolute path. A
// component that does not exist is taken as a directory: a later ".."
// then counts against the tree, which refuses more than the kernel would,
// never less.
func resolveInside(root *os.Root, name string) error {
	refuse := func(why string) error {
		return fmt.Errorf("symlink %q refused: %s; a pushed link must resolve inside the source tree", clip(name), why)
	}
	var at []string // the resolved directory, from root
	pending := strings.Split(name, "/")
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return refuse("following its links climbs out of the tree")
			}
			at = at[:len(at)-1]
			continue
		}
		cur := path.Join(append(append([]string{}, at...), c)...)
		fi, err := root.Lstat(cur)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			at = append(at, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return refuse("too many levels of links")
		}
		target, err := root.Readlink(cur)
		if err != nil {
			return err
		}
		if target == "" || path.IsAbs(target) {
			return refuse(fmt.Sprintf("%q points to an absolute path", clip(cur)))
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return nil
}

func mkParent(root *os.Root, name string) error {
	if dir := path.Dir(name); dir != "." {
		return root.MkdirAll(dir, 0o755)
	}
	return nil
}

func writeEntry(root *os.Root, name string, h *tar.Header, r io.Reader) error {
	if err := mkParent(root, name); err != nil {
		return err
	}
	// git records only 644 and 755; keep the executable bit, nothing else
	// (no setuid from a crafted archive).
	mode := os.FileMode(0o644)
	if h.Mode&0o111 != 0 {
		mode = 0o755
	}
	// O_EXCL: an entry never replaces another, nor a symlink placed
	// earlier in the stream.
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("archive entry %q: %w", clip(name), err)
	}
	if _, err := io.CopyN(f, r, h.Size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// limitedBuffer keeps the first max bytes written to it and discards the
// rest, so a chatty child cannot grow our memory.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
