package docker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// testPull deploys an image the host does not have: it is pulled from a
// registry on loopback with the credentials RegistryAuth gives, and not
// without them.
func testPull(t *testing.T, cli dockerClient, imgs testImages) {
	reg := testenv.StartRegistry(t)
	auth, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: reg.Username, Password: reg.Password, ServerAddress: reg.Host})
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/pier-test/pulled:" + randHex(4)
	ctx := ctxT(t, time.Minute)
	if err := cli.ImageTag(ctx, imgs.plain, ref); err != nil {
		t.Fatal(err)
	}
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: auth})
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonStreamError(rc); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	removeImage := func() {
		if _, err := cli.ImageRemove(ctxT(t, time.Minute), ref, image.RemoveOptions{Force: true}); err != nil && !strings.Contains(err.Error(), "No such image") {
			t.Fatal(err)
		}
	}
	removeImage()
	t.Cleanup(removeImage)

	var asked atomic.Value
	var withAuth atomic.Bool
	s, err := New(Config{
		Client:    cli,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		PortRange: [2]int{25000, 25099},
		RegistryAuth: func(img string) string {
			asked.Store(img)
			if withAuth.Load() {
				return auth
			}
			return ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	const app = "pullapp"
	cleanupApp(t, cli, app)
	d := deployment(app, 1, ref, pier.StrategyImage, plainTypes, pier.Formation{"web": 1}, nil)

	err = s.Apply(ctx, d)
	if !errors.Is(err, pier.ErrRolloutFailed) || !strings.Contains(err.Error(), "cannot pull image "+ref) {
		t.Errorf("Apply of an image the registry refuses without credentials: %v", err)
	}
	if asked.Load() != ref {
		t.Errorf("RegistryAuth was asked for %v, want %s", asked.Load(), ref)
	}
	withAuth.Store(true)
	apply(t, s, d)
	if r := s.Routes()[app]; len(r) != 1 {
		t.Errorf("routes of the pulled image: %v", r)
	} else if code, _, err := get(r[0], "/"); err != nil || code != 200 {
		t.Errorf("GET %s: %d %v", r[0], code, err)
	}
	// The image is there now: Apply pulls no more.
	asked.Store("")
	d.Formation = pier.Formation{"web": 2}
	apply(t, s, d)
	if asked.Load() != "" {
		t.Errorf("RegistryAuth asked for %v while the image is on the host", asked.Load())
	}
	if err := s.Destroy(ctx, app); err != nil {
		t.Fatal(err)
	}
}

// jsonStreamError reads a push or pull progress stream to its end and
// returns the error it reports, if any.
func jsonStreamError(rc io.ReadCloser) error {
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct{ Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}
