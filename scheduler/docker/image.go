package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/pierpaas/pier"
)

// imageUser makes sure ref is on the host, pulling it only when it is not
// (with the credentials Pier holds for its registry), and returns its USER.
func (s *Scheduler) imageUser(ctx context.Context, ref string, version int) (string, error) {
	info, err := s.cli.ImageInspect(ctx, ref)
	if client.IsErrNotFound(err) {
		if err := s.pull(ctx, ref, version); err != nil {
			return "", err
		}
		info, err = s.cli.ImageInspect(ctx, ref)
	}
	if err != nil {
		return "", daemonError(err, "inspecting image %s", ref)
	}
	if info.Config == nil {
		return "", nil
	}
	return info.Config.User, nil
}

func (s *Scheduler) pull(ctx context.Context, ref string, version int) error {
	var opts image.PullOptions
	if s.cfg.RegistryAuth != nil {
		opts.RegistryAuth = s.cfg.RegistryAuth(ref)
	}
	s.log.Info("pulling image", "image", ref)
	body, err := s.cli.ImagePull(ctx, ref, opts)
	if err != nil {
		return pullError(ref, version, err)
	}
	defer body.Close()
	// The pull goes on as long as its progress stream is read, and a
	// failure midway arrives as a message in it.
	dec := json.NewDecoder(body)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return daemonError(err, "pulling image %s", ref)
		}
		if m.Error != "" {
			return pullError(ref, version, errors.New(m.Error))
		}
	}
}

// pullError tells the user that the image could not be had: they can fix
// a wrong reference or missing access; the controller marks the release
// failed.
func pullError(ref string, version int, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return pier.Errorf(pier.EROLLOUT, "v%d did not come up: cannot pull image %s: %s; check the reference, and that Pier may read it from its registry", version, ref, clipN(fmt.Sprint(err), 500))
}
