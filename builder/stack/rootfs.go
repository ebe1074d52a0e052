package stack

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// rootfsFormat changes whenever the way a rootfs tarball is made changes,
// so that old tarballs in the cache are not reused.
const rootfsFormat = "1"

// MirrorEnv, when set, names the Debian mirror debootstrap downloads from
// (its MIRROR argument); otherwise debootstrap uses its own default.
const MirrorEnv = "PIER_DEBIAN_MIRROR"

// Errors that mean "this machine cannot make a rootfs", which callers such
// as the tests may turn into a skip.
var (
	ErrNoDebootstrap = errors.New("debootstrap not found: apt-get install debootstrap")
	ErrNeedsRoot     = errors.New("making a base rootfs with debootstrap needs root (it chroots and sets file owners): run as root once; later runs reuse the cached tarball")
)

// Rootfs is a Debian root filesystem made by debootstrap.
type Rootfs struct {
	Suite    string   // "bookworm"
	Variant  string   // "minbase"
	Packages []string // added with --include
}

// Key is a short hash of everything the rootfs is made from: its cache key.
func (r Rootfs) Key() string {
	pkgs := slices.Clone(r.Packages)
	sort.Strings(pkgs)
	sum := sha256.Sum256([]byte(strings.Join([]string{
		rootfsFormat, r.Suite, r.Variant, runtime.GOARCH, strings.Join(pkgs, ","),
	}, "\n")))
	return hex.EncodeToString(sum[:6])
}

// Tarball returns the path of the rootfs as a tarball under cacheDir,
// running debootstrap first if it is not there yet. The caller holds the
// stack lock.
func (r Rootfs) Tarball(ctx context.Context, cacheDir string, log io.Writer) (string, error) {
	path := filepath.Join(cacheDir, fmt.Sprintf("rootfs-%s-%s-%s.tar", r.Suite, r.Variant, r.Key()))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	debootstrap, err := exec.LookPath("debootstrap")
	if err != nil {
		return "", ErrNoDebootstrap
	}
	if os.Geteuid() != 0 {
		return "", ErrNeedsRoot
	}
	dir, err := os.MkdirTemp(cacheDir, "rootfs-tmp-")
	if err != nil {
		return "", err
	}
	defer removeRootfs(dir)
	debs := filepath.Join(cacheDir, "debootstrap-debs") // shared by the rootfs variants: one download per package
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	args := []string{"--variant=" + r.Variant, "--cache-dir=" + debs}
	if len(r.Packages) > 0 {
		args = append(args, "--include="+strings.Join(r.Packages, ","))
	}
	args = append(args, r.Suite, dir)
	if m := os.Getenv(MirrorEnv); m != "" {
		args = append(args, m)
	}
	fmt.Fprintf(log, "stack: debootstrap %s (%s + %s): about a minute the first time, cached after\n",
		r.Suite, r.Variant, strings.Join(r.Packages, " "))
	start := time.Now()
	cmd := exec.CommandContext(ctx, debootstrap, args...)
	out := &phaseLog{w: log}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debootstrap %s failed (%v); its last lines:\n%s\n(set %s to use another Debian mirror)",
			r.Suite, err, out.tail(), MirrorEnv)
	}
	fmt.Fprintf(log, "stack: debootstrap done in %s; saving %s\n", time.Since(start).Round(time.Second), path)
	// Device nodes, the apt lists and downloaded packages are left out:
	// Docker provides /dev, and images need no package index.
	tmp := path + ".tmp"
	tar := exec.CommandContext(ctx, "tar", "-C", dir, "--numeric-owner",
		"--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./tmp/*",
		"--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*",
		"-cf", tmp, ".")
	if b, err := tar.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("saving the rootfs: tar: %v\n%s", err, b)
	}
	return path, os.Rename(tmp, path)
}

// removeRootfs deletes a debootstrap target, first unmounting anything a
// killed debootstrap left mounted in it (proc, sys): deleting through a
// mount would reach outside the directory.
func removeRootfs(dir string) {
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		var mounts []string
		s := bufio.NewScanner(f)
		for s.Scan() {
			if fields := strings.Fields(s.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
				mounts = append(mounts, fields[4])
			}
		}
		f.Close()
		sort.Sort(sort.Reverse(sort.StringSlice(mounts))) // innermost first
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				fmt.Fprintf(os.Stderr, "stack: leaving %s in place: cannot unmount %s: %v\n", dir, m, err)
				return
			}
		}
	}
	os.RemoveAll(dir)
}

// phaseLog passes on debootstrap's output one phase at a time ("I:
// Retrieving", "I: Extracting", ...) rather than one line per package,
// and keeps the last lines for an error message.
type phaseLog struct {
	w     io.Writer
	part  []byte
	last  []string
	phase string
}

func (p *phaseLog) Write(b []byte) (int, error) {
	p.part = append(p.part, b...)
	for {
		i := strings.IndexByte(string(p.part), '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(p.part[:i])
		p.part = p.part[i+1:]
		p.last = append(p.last, line)
		if len(p.last) > 20 {
			p.last = p.last[1:]
		}
		f := strings.Fields(line)
		switch {
		case len(f) < 2 || f[0] == "I:" && f[1] == "Validating":
			// one per package, right after its Retrieving
		case f[0] != "I:" || f[1] != p.phase:
			fmt.Fprintf(p.w, "stack:   %s\n", line)
			p.phase = f[1]
		}
	}
}

func (p *phaseLog) tail() string { return strings.Join(append(p.last, string(p.part)), "\n") }
