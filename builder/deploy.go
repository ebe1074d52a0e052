package builder

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pierpaas/pier"
)

// Deployer turns a pushed commit into a running release: build, Build row,
// release, rollout. The SSH server calls it after a push updated main (or
// master), while it still holds the app's push lock, so deploys of one app
// never overlap and their releases are consecutive.
type Deployer interface {
	// Deploy returns once the new release serves, or with an error whose
	// pier.ErrorMessage is shown to the pusher as the reason (other errors
	// are logged and shown as an internal error). ctx ends if the pusher
	// disconnects or the server shuts down.
	Deploy(ctx context.Context, req DeployRequest) error
}

// DeployRequest describes one push to deploy.
type DeployRequest struct {
	App    string
	User   string // username of the pusher
	Repo   string // the app's bare repository (see CheckoutTree)
	Commit string // full object name of the pushed commit
	Ref    string // "refs/heads/main" or "refs/heads/master"
	// Log streams to the pusher's terminal (the SSH session's stderr). It
	// is safe for concurrent writes (a build's stdout and stderr).
	Log io.Writer
	// TreeDir is where Checkout makes the tree's directory (Config.TreeDir);
	// "" is the system's temporary directory.
	TreeDir string
}

// DeployerFunc adapts a function to Deployer.
type DeployerFunc func(ctx context.Context, req DeployRequest) error

// Deploy calls f.
func (f DeployerFunc) Deploy(ctx context.Context, req DeployRequest) error { return f(ctx, req) }

// Checkout writes the pushed commit's tree into a new directory of
// r.TreeDir (CheckoutTree) for a build, and returns it and what removes it.
// A full disk is pier.NoSpace, naming that directory, and leaves nothing
// behind.
func (r DeployRequest) Checkout(ctx context.Context) (dir string, remove func(), err error) {
	dir, err = os.MkdirTemp(r.TreeDir, "pier-src-")
	if err != nil {
		return "", nil, r.checkoutError(err)
	}
	remove = func() { os.RemoveAll(dir) }
	if err := CheckoutTree(ctx, r.Repo, r.Commit, dir); err != nil {
		remove()
		return "", nil, r.checkoutError(err)
	}
	return dir, remove, nil
}

// ResetTreeDir empties dir, or makes it (0700), for the pushed trees of a
// server starting: a server killed during a build leaves its tree behind,
// and no one else would ever remove it. Only the server writes there (as
// root, builds copy the tree; they never get it), so it is removed by path.
func ResetTreeDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("emptying the pushed trees' directory: %w", err)
	}
	return os.MkdirAll(dir, 0o700)
}

func (r DeployRequest) checkoutError(err error) error {
	if !pier.IsNoSpace(err) {
		return err
	}
	dir := r.TreeDir
	if dir == "" {
		dir = os.TempDir()
	}
	return fmt.Errorf("checking out the pushed tree: %w", pier.NoSpaceAt(dir, err))
}
