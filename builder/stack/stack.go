// Package stack makes Pier's offline Cloud Native Buildpacks builder: the
// image `pack build --builder` (and Pier's "pack" build strategy) runs
// Pier's own buildpacks in, with no registry anywhere. Online users can name
// any CNB builder instead (heroku/builder:24, paketobuildpacks/builder-jammy-base);
// this one exists so that the platform and its tests work with nothing to
// pull.
//
// Three images are made, all in the local Docker daemon:
//
//	pier/stack-run:<stack tag>      the run image apps are exported onto
//	pier/stack-build:<stack tag>    the build image the builder is made from
//	pier/builder:<builder tag>      the builder (pier-stack also tags pier/builder:latest)
//
// The tags are short hashes of everything the images are made from, so an
// image with the right tag is up to date and Ensure skips it (that is what
// makes `make builder-image` idempotent and a warm call instant): the stack
// tag covers the Debian suite and package lists, the Go and Node.js
// versions and the CNB user; the builder tag covers the stack images'
// names, the lifecycle version and binaries, and the buildpacks' files.
// Code should use
// the hashed name Ensure returns; :latest, which `make builder-image` moves
// (Config.Latest), is the stable name for people: `pack build --builder
// pier/builder`. Tests leave it alone: their buildpacks are built
// differently (no -trimpath), so their builder has its own tag.
//
// # How the stack images are made
//
// The root filesystem is Debian bookworm made by `debootstrap
// --variant=minbase --include=<packages>` (root only, ~25–60 s), kept as a
// tarball in the cache directory under a hash of suite, variant and
// packages. Each image is that tarball streamed into the Engine API's
// ImageImport (`docker import`; nothing is pulled), adjusted on the way:
//
//   - a CNB user, cnb (uid and gid 1000, home /home/cnb), appended to
//     /etc/passwd and /etc/group; USER 1000:1000 and CNB_USER_ID,
//     CNB_GROUP_ID set to match, as the platform spec asks of stack images;
//   - the label io.buildpacks.stack.id = io.pier.stacks.bookworm, and the
//     io.buildpacks.base.distro.* labels;
//   - Node.js in both images: an app's `npm start` and `node server.js` run
//     on the run image. It is this machine's Node.js (the nodesource Debian
//     package: /usr/bin/node, /usr/lib/node_modules/{npm,corepack}), copied
//     to the same places, since offline there is no other; checkLibraries
//     makes sure the rootfs has every library node links;
//   - in the build image only, this machine's Go toolchain (/usr/local/go,
//     the only Go there is offline) at /usr/local/go, on PATH.
//
// The run image's packages are ca-certificates and python3 (a Python app's
// virtualenv links /usr/bin/python3, so the run image needs the same
// Python); the build image adds python3-venv, for the Python buildpack's
// `python3 -m venv`. libstdc++6 is listed for node, though minbase has it.
//
// # The builder
//
// The builder is made by pack's Go library (pkg/client CreateBuilder, pull
// policy never) from a builder.toml written next to a lifecycle archive
// (WriteLifecycleArchive) and a self-contained copy of the buildpacks
// installed by `pier-buildpack install`, whose order.toml becomes the
// builder's order.
//
// # Cache
//
// Cache files live in $HOME/.cache/pier/stack/ (Config.CacheDir): the
// rootfs tarballs (rootfs-bookworm-minbase-<hash>.tar, ~200 MB each),
// debootstrap-debs/ (the downloaded .debs, shared by both rootfs), and
// stack.lock, which serialises callers: a `make builder-image` and test
// binaries may all call Ensure at once.
package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

// What the stack is made of.
const (
	Suite    = "bookworm"
	Variant  = "minbase"
	StackID  = "io.pier.stacks.bookworm"
	UserName = "cnb"
	UID      = 1000
	GID      = 1000

	// stackFormat changes when the way the stack images are assembled
	// changes, so that images of the old kind get new tags.
	stackFormat = "1"
	// builderFormat does the same for the builder.
	builderFormat = "1"

	runPath   = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	buildPath = "/usr/local/go/bin:" + runPath
)

// The Debian packages of each image, beyond minbase.
var (
	RunPackages   = []string{"ca-certificates", "python3", "libstdc++6"}
	BuildPackages = append(append([]string{}, RunPackages...), "python3-venv")
)

// Default image repositories.
const (
	DefaultRunRepo     = "pier/stack-run"
	DefaultBuildRepo   = "pier/stack-build"
	DefaultBuilderRepo = "pier/builder"
)

// Config says where the builder's parts come from.
type Config struct {
	// Docker is the daemon the images are made in (required).
	Docker *client.Client
	// LifecycleDir holds the lifecycle and launcher binaries: bin/lifecycle
	// (`make lifecycle`) or testenv.CNBTools's cache (required).
	LifecycleDir string
	// LifecycleVersion is the version those binaries were built from
	// (default LifecycleVersion(), the one go.mod pins).
	LifecycleVersion string
	// BuildpacksDir holds the buildpacks and order.toml as written by
	// `pier-buildpack install`: bin/buildpacks (required).
	BuildpacksDir string
	// GoRoot is the Go toolchain copied into the build image
	// (default /usr/local/go).
	GoRoot string
	// Node is the node binary copied into the images, with the npm next to
	// it (default: node on PATH).
	Node string
	// CacheDir keeps the rootfs tarballs and the lock
	// (default $HOME/.cache/pier/stack).
	CacheDir string
	// Image repositories (defaults DefaultRunRepo, DefaultBuildRepo,
	// DefaultBuilderRepo); the tags are always the content hashes.
	RunRepo, BuildRepo, BuilderRepo string
	// Latest also tags the builder <BuilderRepo>:latest.
	Latest bool
	// Log gets progress lines (default os.Stderr).
	Log io.Writer
}

// Images names the images Ensure made or found.
type Images struct {
	Run     string // pier/stack-run:<tag>
	Build   string // pier/stack-build:<tag>
	Builder string // pier/builder:<tag>
}

// Ensure makes whichever of the stack images and the builder are not in
// the daemon yet, and returns their names. Only a missing rootfs tarball
// needs root (debootstrap); a warm call takes well under a second.
func Ensure(ctx context.Context, cfg Config) (Images, error) {
	if err := cfg.defaults(); err != nil {
		return Images{}, err
	}
	gotc, err := findGo(cfg.GoRoot)
	if err != nil {
		return Images{}, err
	}
	node, err := findNode(cfg.Node)
	if err != nil {
		return Images{}, err
	}
	names, err := cfg.names(gotc, node)
	if err != nil {
		return Images{}, err
	}
	if ok, err := exists(ctx, cfg.Docker, names.Builder); err != nil {
		return Images{}, err
	} else if ok {
		return names, finish(ctx, cfg, names)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return Images{}, err
	}
	unlock, err := LockFile(ctx, filepath.Join(cfg.CacheDir, "stack.lock"), func() {
		fmt.Fprintf(cfg.Log, "stack: waiting for another process making the stack (%s)\n", filepath.Join(cfg.CacheDir, "stack.lock"))
	})
	if err != nil {
		return Images{}, err
	}
	defer unlock()

	if err := ensureStackImages(ctx, cfg, names, gotc, node); err != nil {
		return Images{}, err
	}
	if ok, err := exists(ctx, cfg.Docker, names.Builder); err != nil {
		return Images{}, err
	} else if ok {
		return names, finish(ctx, cfg, names) // made by whoever held the lock before us
	}
	fmt.Fprintf(cfg.Log, "stack: creating builder %s with pack\n", names.Builder)
	start := time.Now()
	if err := createBuilder(ctx, cfg.Docker, cfg, names, cfg.CacheDir, cfg.Log); err != nil {
		return Images{}, fmt.Errorf("creating builder %s: %w", names.Builder, err)
	}
	fmt.Fprintf(cfg.Log, "stack: builder %s created in %s\n", names.Builder, time.Since(start).Round(100*time.Millisecond))
	return names, finish(ctx, cfg, names)
}

// finish points the builder's :latest at the builder just ensured, if
// asked to.
func finish(ctx context.Context, cfg Config, names Images) error {
	if !cfg.Latest {
		return nil
	}
	return cfg.Docker.ImageTag(ctx, names.Builder, cfg.BuilderRepo+":latest")
}

func (c *Config) defaults() error {
	if c.Docker == nil {
		return errors.New("stack: no Docker client")
	}
	if c.LifecycleDir == "" || c.BuildpacksDir == "" {
		return errors.New("stack: the lifecycle and buildpacks directories are required (make lifecycle buildpacks)")
	}
	if c.LifecycleVersion == "" {
		if c.LifecycleVersion = LifecycleVersion(); c.LifecycleVersion == "" {
			return errors.New("stack: the lifecycle version is unknown (no build info): set Config.LifecycleVersion")
		}
	}
	if c.GoRoot == "" {
		c.GoRoot = "/usr/local/go"
	}
	if c.CacheDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("stack: no home for the cache (%v): set Config.CacheDir", err)
		}
		c.CacheDir = filepath.Join(home, ".cache", "pier", "stack")
	}
	if c.RunRepo == "" {
		c.RunRepo = DefaultRunRepo
	}
	if c.BuildRepo == "" {
		c.BuildRepo = DefaultBuildRepo
	}
	if c.BuilderRepo == "" {
		c.BuilderRepo = DefaultBuilderRepo
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	return nil
}

// names computes the content-hashed tags.
func (c *Config) names(gotc goToolchain, node nodeToolchain) (Images, error) {
	stack := hashOf(stackFormat, Rootfs{Suite, Variant, RunPackages}.Key(), Rootfs{Suite, Variant, BuildPackages}.Key(),
		gotc.version, node.version, node.npm, StackID, UserName, fmt.Sprint(UID, GID))
	h := sha256.New()
	// The builder names its build and run images: other repositories,
	// other builder.
	fmt.Fprintln(h, builderFormat, c.RunRepo, c.BuildRepo, stack, c.LifecycleVersion)
	for _, f := range []string{"lifecycle", "launcher"} {
		if err := hashFile(h, filepath.Join(c.LifecycleDir, f)); err != nil {
			return Images{}, fmt.Errorf("%v (run `make lifecycle`)", err)
		}
	}
	if err := hashTree(h, c.BuildpacksDir); err != nil {
		return Images{}, fmt.Errorf("%v (run `make buildpacks`)", err)
	}
	builder := hex.EncodeToString(h.Sum(nil))[:12]
	return Images{
		Run:     c.RunRepo + ":" + stack,
		Build:   c.BuildRepo + ":" + stack,
		Builder: c.BuilderRepo + ":" + builder,
	}, nil
}

func hashOf(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:])[:12]
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// hashTree hashes the names, modes, link targets and contents under dir.
func hashTree(w io.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s %v\n", rel, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			fmt.Fprintln(w, link)
			return err
		case info.Mode().IsRegular():
			return hashFile(w, p)
		}
		return nil
	})
}

func exists(ctx context.Context, d *client.Client, name string) (bool, error) {
	_, err := d.ImageInspect(ctx, name)
	if err == nil {
		return true, nil
	}
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("inspecting %s: %w", name, err)
}
