package stack

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
	pubbldr "github.com/buildpacks/pack/builder"
	"github.com/buildpacks/pack/pkg/client"
	"github.com/buildpacks/pack/pkg/image"
	"github.com/buildpacks/pack/pkg/logging"
	docker "github.com/docker/docker/client"
)

// createBuilder writes builder.toml in a temporary directory, next to the
// lifecycle archive and a copy of the buildpacks, and has pack's library
// create the builder image from it in the daemon, pulling nothing.
func createBuilder(ctx context.Context, d *docker.Client, cfg Config, names Images, cacheDir string, log io.Writer) error {
	dir, err := os.MkdirTemp(cacheDir, "builder-tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := WriteLifecycleArchive(filepath.Join(dir, "lifecycle.tgz"), cfg.LifecycleDir, cfg.LifecycleVersion); err != nil {
		return err
	}
	bps, err := stageBuildpacks(cfg.BuildpacksDir, filepath.Join(dir, "buildpacks"))
	if err != nil {
		return err
	}
	order, err := os.ReadFile(filepath.Join(cfg.BuildpacksDir, "order.toml"))
	if err != nil {
		return fmt.Errorf("%v (run `make buildpacks`)", err)
	}
	var b strings.Builder
	b.WriteString("description = \"Pier: Pier's buildpacks (Go, Node.js, Python, static, Procfile) on Debian " + Suite + ", offline\"\n\n")
	for _, bp := range bps {
		fmt.Fprintf(&b, "[[buildpacks]]\n  id = %q\n  version = %q\n  uri = %q\n\n", bp.id, bp.version, bp.dir)
	}
	// order.toml's [[order]] tables are builder.toml's, word for word.
	b.Write(order)
	fmt.Fprintf(&b, "\n[build]\n  image = %q\n\n[[run.images]]\n  image = %q\n\n[lifecycle]\n  uri = %q\n",
		names.Build, names.Run, "lifecycle.tgz")
	path := filepath.Join(dir, "builder.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	bcfg, warnings, err := pubbldr.ReadConfig(path)
	if err != nil {
		return fmt.Errorf("the builder.toml made from %s: %w", cfg.BuildpacksDir, err)
	}
	for _, w := range warnings {
		fmt.Fprintf(log, "stack: builder.toml: %s\n", w)
	}
	pack, err := client.NewClient(
		client.WithLogger(logging.NewLogWithWriters(log, log)),
		client.WithDockerClient(d),
		client.WithCacheDir(filepath.Join(cacheDir, "pack-downloads")),
	)
	if err != nil {
		return err
	}
	return pack.CreateBuilder(ctx, client.CreateBuilderOptions{
		RelativeBaseDir: dir,
		BuilderName:     names.Builder,
		Config:          bcfg,
		PullPolicy:      image.PullNever,
	})
}

// stagedBuildpack is one buildpack copied for pack.
type stagedBuildpack struct{ id, version, dir string }

// stageBuildpacks copies every <id>/<version> buildpack of an installed
// buildpacks directory (`pier-buildpack install`) to dst, so that each is
// self-contained: there, bin/detect and bin/build are links to one program
// outside the buildpack, which a buildpack packed alone would lose. A link
// that leaves the buildpack becomes a copy of its target (the first) or a
// link to that copy (the others).
func stageBuildpacks(src, dst string) ([]stagedBuildpack, error) {
	matches, err := filepath.Glob(filepath.Join(src, "*", "*", "buildpack.toml"))
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("no buildpacks in %s (run `make buildpacks`)", src)
	}
	var out []stagedBuildpack
	for _, m := range matches {
		var desc struct {
			Buildpack struct{ ID, Version string }
		}
		if _, err := toml.DecodeFile(m, &desc); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		from := filepath.Dir(m)
		rel, _ := filepath.Rel(src, from)
		to := filepath.Join(dst, rel)
		if err := copyBuildpack(from, to); err != nil {
			return nil, err
		}
		out = append(out, stagedBuildpack{desc.Buildpack.ID, desc.Buildpack.Version, filepath.Join("buildpacks", rel)})
	}
	return out, nil
}

func copyBuildpack(from, to string) error {
	copied := map[string]string{} // outside target → its copy in to
	return filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case info.IsDir():
			return os.MkdirAll(dst, 0o755)
		case info.Mode()&os.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			if r, err := filepath.Rel(from, target); err == nil && !strings.HasPrefix(r, "..") {
				link, _ := os.Readlink(p)
				return os.Symlink(link, dst)
			}
			if prev, ok := copied[target]; ok {
				r, _ := filepath.Rel(filepath.Dir(dst), prev)
				return os.Symlink(r, dst)
			}
			copied[target] = dst
			return copyFile(target, dst)
		case info.Mode().IsRegular():
			return copyFile(p, dst)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
