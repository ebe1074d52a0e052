package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/pierpaas/pier/builder/stack"
)

var (
	builderOnce sync.Once
	builderImgs stack.Images
	builderSkip string
	builderErr  error
)

// BuilderImage returns the name of Pier's offline CNB builder (package
// builder/stack, the image `make builder-image` makes) in the tests'
// Docker daemon, for pack's Build with PullPolicy never and TrustBuilder.
// It makes the builder if need be, once per test binary: the lifecycle from
// CNBTools's cache, the buildpacks built fresh (they are code under test, so
// a change to them gives a new builder tag), the stack images from the
// cached rootfs tarballs. The first run on a machine runs debootstrap (root,
// about two minutes in all); later ones take a second.
//
// It skips like Docker: no daemon, or no debootstrap or root to make the
// base images, skips the test with a loud message, except under CI=true,
// where that is a failure.
func BuilderImage(t testing.TB) string {
	t.Helper()
	return BuilderImages(t).Builder
}

// BuilderImages is BuilderImage, with the names of the stack's run and
// build images too.
func BuilderImages(t testing.TB) stack.Images {
	t.Helper()
	cli := Docker(t)
	builderOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		builderImgs, builderErr = makeBuilder(ctx, cli)
		if errors.Is(builderErr, stack.ErrNoDebootstrap) || errors.Is(builderErr, stack.ErrNeedsRoot) {
			builderSkip, builderErr = builderErr.Error(), nil
		}
	})
	if builderSkip != "" {
		if isCI() {
			t.Fatalf("no CNB builder image: %s (CI=true: not skipping)", builderSkip)
		}
		t.Skipf("\n\n*** SKIPPING the CNB builder tier: %s ***\n\n", builderSkip)
	}
	if builderErr != nil {
		t.Fatalf("making the CNB builder image: %v", builderErr)
	}
	return builderImgs
}

func makeBuilder(ctx context.Context, cli *client.Client) (stack.Images, error) {
	bps, err := os.MkdirTemp("", "pier-builder-buildpacks-")
	if err != nil {
		return stack.Images{}, err
	}
	defer os.RemoveAll(bps) // the builder holds its own copy
	lc, err := CNBTools(bps)
	if err != nil {
		return stack.Images{}, err
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/buildpacks/lifecycle").Output()
	if err != nil {
		return stack.Images{}, fmt.Errorf("go list lifecycle: %v", err)
	}
	images, err := stack.Ensure(ctx, stack.Config{
		Docker:           cli,
		LifecycleDir:     lc,
		LifecycleVersion: strings.TrimPrefix(strings.TrimSpace(string(out)), "v"),
		BuildpacksDir:    bps,
		Log:              os.Stderr, // progress: "stack: ..." lines
	})
	return images, err
}
