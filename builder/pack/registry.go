package pack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/pierpaas/pier"
)

// Registry is where built images go. Pier holds its credentials: they reach
// the Docker daemon with each push or pull, and never a build or an app.
type Registry struct {
	// Host is host[:port], such as 127.0.0.1:5000 (Docker talks plain
	// HTTP to loopback registries) or registry.example.com.
	Host string
	// Prefix is the path under which each app gets a repository
	// (<Host>/<Prefix>/<app>); "pier" when empty.
	Prefix             string
	Username, Password string
}

func (r Registry) validate() error {
	if r.Host == "" {
		return errors.New("no registry: name one, such as 127.0.0.1:5000")
	}
	if err := pier.ValidateImage(r.Repository("app")); err != nil {
		return fmt.Errorf("registry %q: %s", r.Host, pier.ErrorMessage(err))
	}
	return nil
}

// Repository is the app's image repository, such as 127.0.0.1:5000/pier/myapp.
func (r Registry) Repository(app string) string {
	prefix := r.Prefix
	if prefix == "" {
		prefix = "pier"
	}
	return r.Host + "/" + prefix + "/" + app
}

// Auth is the X-Registry-Auth value for image references in this registry
// ("" for others, or without credentials).
func (r Registry) Auth(ref string) string {
	if r.Username == "" || !strings.HasPrefix(ref, r.Host+"/") {
		return ""
	}
	b, _ := json.Marshal(registry.AuthConfig{Username: r.Username, Password: r.Password, ServerAddress: r.Host})
	return base64.URLEncoding.EncodeToString(b)
}

// push sends ref to the registry and returns the digest the registry
// gave the manifest.
func (s *Strategy) push(ctx context.Context, ref string) (string, error) {
	rc, err := s.cfg.Docker.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: s.cfg.Registry.Auth(ref)})
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	digest := ""
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("push %s: reading the daemon's answer: %w", ref, err)
		}
		if m.Error != nil {
			// The daemon's words ("unauthorized: ...", "connection
			// refused") say what to fix; they hold no credentials.
			return "", pier.Errorf(pier.EUNAVAILABLE, "pushing the image to the registry %s failed: %s", s.cfg.Registry.Host, m.Error.Message)
		}
		if m.Aux != nil {
			var aux struct{ Digest string }
			if json.Unmarshal(*m.Aux, &aux) == nil && aux.Digest != "" {
				digest = aux.Digest
			}
		}
	}
	if err := pier.ValidateImage("x@" + digest); digest == "" || err != nil {
		return "", fmt.Errorf("push %s: the daemon reported no sha256 digest (got %q)", ref, digest)
	}
	return digest, nil
}
