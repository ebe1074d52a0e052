// Package pack is the "pack" build strategy: pushed source becomes an OCI
// image, built with Cloud Native Buildpacks through the Go library of
// github.com/buildpacks/pack against a Docker daemon, or, for an app whose
// repository has a Dockerfile (and no project.toml opting into
// buildpacks), by the daemon from that Dockerfile. Either way the image is
// pushed to the platform's registry and the build names it by digest
// (<registry>/<repository>/<app>@sha256:...), so that a release always
// runs exactly the bytes that were built, on any host that can pull.
//
// # Builders and trust
//
// A CNB builder image bundles the buildpacks, the lifecycle and the stack.
// Each app may choose its own (BuildRequest.Builder, set with `pier
// buildpacks:set-builder`); Config.DefaultBuilder builds the rest. Pack runs
// a trusted builder's lifecycle as one container (the creator) that is
// handed the Docker socket; an untrusted one is run in separate phases,
// the socket only given to the lifecycle image's own phases. So only the
// builders the operator lists in Config.TrustedBuilders are trusted.
//
// # Caching
//
// Each app has its own cache volumes (pier-cache-<app>-build and -launch),
// kept between builds: a warm rebuild restores the layers the buildpacks
// cached (Go's build cache, npm's cache, a Python virtualenv).
package pack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/buildpacks/pack/pkg/cache"
	packclient "github.com/buildpacks/pack/pkg/client"
	"github.com/buildpacks/pack/pkg/image"
	"github.com/buildpacks/pack/pkg/logging"
	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	dockerimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/pierpaas/pier"
)

// DefaultTimeout bounds a build when Config.Timeout is zero.
const DefaultTimeout = 15 * time.Minute

// Config configures the pack strategy.
type Config struct {
	// Docker is the daemon that builds (and keeps the built images, so a
	// Docker scheduler on the same daemon starts them without a pull).
	Docker *client.Client
	// Registry receives every image built.
	Registry Registry
	// DefaultBuilder builds apps that chose no builder.
	DefaultBuilder string
	// TrustedBuilders are run with trust (see the package doc). Empty:
	// only DefaultBuilder.
	TrustedBuilders []string
	// BuildDockerHost is the daemon's address as build containers are to
	// reach it, seen from the daemon's side: the lifecycle of a trusted
	// builder exports the image there. Default: the Docker client's own
	// host. Set it when pierd runs in a container whose socket is mounted
	// from another path on the host (unix:///path/on/the/host.sock).
	BuildDockerHost string
	// LifecycleImage runs the lifecycle phases of untrusted builders
	// (pack's default, pulled from a registry, when empty).
	LifecycleImage string
	// BuildNetwork is the Docker network of every build container
	// (Dockerfile RUN steps, pack's lifecycle phases). Default "none": no
	// network at all, so build steps, which run the pusher's code, reach
	// none of the host's loopback services (the database, the registry,
	// pierd's internal listener) and capture none of its packets. Name a
	// bridge network of your own to give builds egress (package
	// downloads). Never "host", nor another container's namespace.
	BuildNetwork string
	// Timeout bounds one build (DefaultTimeout when zero).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Strategy is the pack build strategy.
type Strategy struct {
	cfg     Config
	trusted map[string]bool
}

// New checks cfg and makes the strategy.
func New(cfg Config) (*Strategy, error) {
	if cfg.Docker == nil {
		return nil, errors.New("pack strategy: no Docker client")
	}
	if err := cfg.Registry.validate(); err != nil {
		return nil, err
	}
	if cfg.DefaultBuilder == "" {
		return nil, errors.New("pack strategy: no default builder: name a CNB builder image, such as the one `make builder-image` makes")
	}
	if err := pier.ValidateImage(cfg.DefaultBuilder); err != nil {
		return nil, fmt.Errorf("pack strategy: default builder: %s", pier.ErrorMessage(err))
	}
	if cfg.BuildNetwork == "" {
		cfg.BuildNetwork = DefaultBuildNetwork
	}
	if err := checkBuildNetwork(cfg.BuildNetwork); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.BuildDockerHost == "" {
		// pack would mount /var/run/docker.sock whatever daemon the client
		// talks to: the image would land in another daemon.
		cfg.BuildDockerHost = cfg.Docker.DaemonHost()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Strategy{cfg: cfg, trusted: map[string]bool{}}
	trusted := cfg.TrustedBuilders
	if len(trusted) == 0 {
		trusted = []string{cfg.DefaultBuilder}
	}
	for _, b := range trusted {
		s.trusted[b] = true
	}
	return s, nil
}

// Name is "pack".
func (s *Strategy) Name() string { return pier.StrategyPack }

// Build builds req's source into an image in the registry and returns its
// reference by digest.
func (s *Strategy) Build(ctx context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	start := time.Now()
	ref := s.cfg.Registry.Repository(req.App) + ":" + tagOf(req.Commit)
	var (
		res *pier.BuildResult
		err error
	)
	if usesDockerfile(req.SourceDir) {
		res, err = s.buildDockerfile(ctx, req, ref, log)
	} else {
		res, err = s.buildpacks(ctx, req, ref, log)
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, pier.Errorf(pier.EINVALID, "the build did not finish within %s: make it faster, or ask the operator for a longer build timeout", s.cfg.Timeout)
		}
		return nil, err
	}
	fmt.Fprintf(log, "-----> Pushing %s\n", ref)
	digest, err := s.push(ctx, ref)
	if err != nil {
		return nil, err
	}
	res.Image = s.cfg.Registry.Repository(req.App) + "@" + digest
	fmt.Fprintf(log, "-----> Built %s in %.1fs\n", res.Image, time.Since(start).Seconds())
	s.pruneOlder(ctx, req.App, ref)
	return res, nil
}

// pruneOlder untags the app's earlier builds in the daemon, so that a
// single-host install does not keep one image per push forever. Each is
// in the registry, where a rollback pulls it from; an image a container
// still uses (the release running now, until it is replaced) is kept by
// the daemon, which refuses to untag it without force. Warm builds do not
// need the old images: their layers come from the cache volumes.
func (s *Strategy) pruneOlder(ctx context.Context, app, keep string) {
	repo := s.cfg.Registry.Repository(app)
	imgs, err := s.cfg.Docker.ImageList(ctx, dockerimage.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
	if err != nil {
		s.cfg.Logger.Warn("listing the app's images to prune", "app", app, "err", err)
		return
	}
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if tag == keep || !strings.HasPrefix(tag, repo+":") {
				continue
			}
			_, err := s.cfg.Docker.ImageRemove(ctx, tag, dockerimage.RemoveOptions{PruneChildren: true})
			switch {
			case err == nil:
				s.cfg.Logger.Debug("untagged an earlier build", "app", app, "image", tag)
			case errdefs.IsConflict(err):
				// A container uses it.
			default:
				s.cfg.Logger.Warn("untagging an earlier build", "app", app, "image", tag, "err", err)
			}
		}
	}
}

// usesDockerfile: a Dockerfile decides, unless project.toml says to use
// buildpacks (as Heroku's and pack's project descriptor do).
func usesDockerfile(dir string) bool {
	if _, err := os.Lstat(filepath.Join(dir, "project.toml")); err == nil {
		return false
	}
	fi, err := os.Lstat(filepath.Join(dir, "Dockerfile"))
	return err == nil && fi.Mode().IsRegular()
}

// tagOf names a build's image by its commit; two builds of one commit get
// one tag, and their digests tell them apart.
func tagOf(commit string) string {
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if commit == "" {
		return "latest"
	}
	return "git-" + commit
}

// CacheVolumes are the names of an app's build and launch cache volumes.
func CacheVolumes(app string) (build, launch string) {
	return "pier-cache-" + app + "-build", "pier-cache-" + app + "-launch"
}

func (s *Strategy) buildpacks(ctx context.Context, req pier.BuildRequest, ref string, log io.Writer) (*pier.BuildResult, error) {
	builder := req.Builder
	if builder == "" {
		builder = s.cfg.DefaultBuilder
	}
	trusted := s.trusted[builder]
	if trusted {
		fmt.Fprintf(log, "-----> Building with %s (trusted builder)\n", builder)
	} else {
		fmt.Fprintf(log, "-----> Building with %s (untrusted builder: separate lifecycle phases)\n", builder)
	}
	pc, err := packclient.NewClient(
		packclient.WithLogger(logging.NewLogWithWriters(log, log)),
		packclient.WithDockerClient(s.cfg.Docker),
	)
	if err != nil {
		return nil, fmt.Errorf("pack client: %w", err)
	}
	buildVol, launchVol := CacheVolumes(req.App)
	opts := packclient.BuildOptions{
		Image:   ref,
		Builder: builder,
		AppPath: req.SourceDir,
		// The app's config reaches the buildpacks as platform env vars,
		// as with the host strategy.
		Env: map[string]string(req.Config),
		Cache: cache.CacheOpts{
			Build:  cache.CacheInfo{Format: cache.CacheVolume, Source: buildVol},
			Launch: cache.CacheInfo{Format: cache.CacheVolume, Source: launchVol},
		},
		DockerHost:     s.cfg.BuildDockerHost,
		PullPolicy:     image.PullIfNotPresent,
		TrustBuilder:   func(string) bool { return trusted },
		LifecycleImage: s.cfg.LifecycleImage,
		// Never the host's network: see Config.BuildNetwork. The
		// lifecycle reaches the daemon through its socket, mounted in.
		ContainerConfig: packclient.ContainerConfig{Network: s.cfg.BuildNetwork},
	}
	if err := pc.Build(ctx, opts); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, pier.Errorf(pier.EINVALID, "the buildpacks build failed: %s", firstLine(err.Error()))
	}
	procs, err := s.processTypes(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &pier.BuildResult{ProcessTypes: procs}, nil
}

// processTypes returns the process types the buildpacks (or the
// Procfile) defined, from the built image's labels.
func (s *Strategy) processTypes(ctx context.Context, ref string) (map[string]string, error) {
	ins, err := s.cfg.Docker.ImageInspect(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("inspect the built image: %w", err)
	}
	var labels map[string]string
	if ins.Config != nil {
		labels = ins.Config.Labels
	}
	return pier.ImageProcessTypes(labels)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RemoveApp removes a destroyed app's cache volumes. Its images stay in
// the registry (and the daemon) until the operator prunes them: releases
// of other installations, or a restore, may still refer to them.
func (s *Strategy) RemoveApp(ctx context.Context, app string) error {
	if err := pier.ValidateAppName(app); err != nil {
		return err
	}
	build, launch := CacheVolumes(app)
	var errs []error
	for _, v := range []string{build, launch} {
		if err := s.cfg.Docker.VolumeRemove(ctx, v, true); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove the build cache %s: %w", v, err))
		}
	}
	return errors.Join(errs...)
}

// DefaultBuildNetwork keeps build containers off every network.
const DefaultBuildNetwork = "none"

// checkBuildNetwork refuses networks that would put the pusher's build
// steps in the host's network namespace, or in another container's.
func checkBuildNetwork(n string) error {
	if n == "host" || strings.HasPrefix(n, "container:") {
		return fmt.Errorf("pack strategy: build network %q refused: build steps run the pusher's code, and in %s they would reach the host's loopback services and capture its packets; use %q (no network, the default) or a bridge network of your own (docker network create pier-build)", n, n, DefaultBuildNetwork)
	}
	return nil
}
