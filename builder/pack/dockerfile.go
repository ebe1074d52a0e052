package pack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/moby/go-archive"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/pierpaas/pier"
)

// buildDockerfile builds the app's own Dockerfile with the daemon. Its
// process types come from a Procfile if there is one; otherwise web runs
// the image's own entrypoint.
func (s *Strategy) buildDockerfile(ctx context.Context, req pier.BuildRequest, ref string, log io.Writer) (*pier.BuildResult, error) {
	fmt.Fprintf(log, "-----> Dockerfile app detected: building it with the Docker daemon\n")
	procs := map[string]string{"web": ""}
	if text, err := os.ReadFile(filepath.Join(req.SourceDir, "Procfile")); err == nil {
		if procs, err = pier.ParseProcfile(string(text)); err != nil {
			return nil, err
		}
	}
	excludes := []string{".git"}
	if f, err := os.Open(filepath.Join(req.SourceDir, ".dockerignore")); err == nil {
		patterns, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, pier.Errorf(pier.EINVALID, ".dockerignore: %v", err)
		}
		excludes = append(excludes, patterns...)
	}
	tarball, err := archive.TarWithOptions(req.SourceDir, &archive.TarOptions{ExcludePatterns: excludes})
	if err != nil {
		return nil, fmt.Errorf("pack the build context: %w", err)
	}
	defer tarball.Close()
	resp, err := s.cfg.Docker.ImageBuild(ctx, tarball, build.ImageBuildOptions{
		Tags:        []string{ref},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		// RUN steps run the pusher's code as root: never in the host's
		// network (Config.BuildNetwork).
		NetworkMode: s.cfg.BuildNetwork,
		Labels:      map[string]string{"io.pier.app": req.App},
	})
	if err != nil {
		return nil, fmt.Errorf("docker build: %w", err)
	}
	defer resp.Body.Close()
	if err := streamBuild(resp.Body, log); err != nil {
		return nil, err
	}
	return &pier.BuildResult{ProcessTypes: procs, Strategy: pier.StrategyDockerfile}, nil
}

// streamBuild copies the daemon's build output to the pusher and returns
// the daemon's error, in its own words, if the build failed.
func streamBuild(r io.Reader, log io.Writer) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker build: reading the daemon's answer: %w", err)
		}
		if m.Error != nil {
			return pier.Errorf(pier.EINVALID, "the Dockerfile build failed: %s", strings.TrimSpace(m.Error.Message))
		}
		if m.Stream != "" {
			io.WriteString(log, m.Stream)
		}
	}
}
