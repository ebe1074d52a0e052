package kube

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pierpaas/pier"
)

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
	return pier.ImageProcessTypes(cf.Config.Labels)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
