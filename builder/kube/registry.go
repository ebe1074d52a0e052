package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pierpaas/pier"
)

// buildMetadata is the part of the image label io.buildpacks.build.metadata
// Pier reads: the process types the buildpacks (or the Procfile) defined.
type buildMetadata struct {
	Processes []struct {
		Type    string   `json:"type"`
		Command []string `json:"command"`
		Args    []string `json:"args"`
	} `json:"processes"`
}

// processTypes reads the built image's config from the registry (which
// also proves that the digest the Pod reported is there) and returns its
// process types.
func (s *Strategy) processTypes(ctx context.Context, ref string) (map[string]string, error) {
	r := s.cfg.Registry
	var opts []name.Option
	if r.Insecure {
		opts = append(opts, name.Insecure)
	}
	d, err := name.NewDigest(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("the built image %s: %w", ref, err)
	}
	auth := authn.Anonymous
	if r.Username != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: r.Username, Password: r.Password})
	}
	img, err := remote.Image(d, remote.WithAuth(auth), remote.WithContext(ctx))
	if err != nil {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "reading the built image %s from the registry failed: %s", ref, firstLine(err.Error()))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "reading the built image's config from the registry failed: %s", firstLine(err.Error()))
	}
	var md buildMetadata
	if raw := cf.Config.Labels["io.buildpacks.build.metadata"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &md); err != nil {
			return nil, fmt.Errorf("the built image's build metadata: %w", err)
		}
	}
	procs := map[string]string{}
	for _, p := range md.Processes {
		if err := pier.ValidateProcessType(p.Type); err != nil {
			return nil, pier.Errorf(pier.EINVALID, "the buildpacks defined a process type Pier cannot run: %s", pier.ErrorMessage(err))
		}
		procs[p.Type] = strings.Join(append(append([]string(nil), p.Command...), p.Args...), " ")
	}
	if len(procs) == 0 {
		return nil, pier.Errorf(pier.EINVALID, "the build defined no process types: add a Procfile, such as \"web: ./server\"")
	}
	return procs, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
