package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder"
	"github.com/pierpaas/pier/controller"
)

// rebuildMissing brings back the host builds that Postgres names but the
// build store lacks: after `pierd restore` on a new machine the releases,
// config and repositories are back, but the build outputs lived in the
// runtime dir, which a backup does not hold. Each app's current build is
// rebuilt from its restored repository at the recorded commit, into the
// path recorded for it, before the apps are converged (which then starts
// them). Builds of older releases are not: a rollback to one fails until
// the app is pushed again. It returns how many builds it rebuilt.
func (p *platform) rebuildMissing(ctx context.Context, db pier.Store, dataDir string, log *slog.Logger) int {
	if p.host == nil {
		return 0
	}
	apps, err := controller.AllApps(ctx, db)
	if err != nil {
		log.Error("listing the apps to rebuild their missing builds", "err", err)
		return 0
	}
	n := 0
	for _, a := range apps {
		rel, err := db.CurrentRelease(ctx, a.Name)
		if err != nil {
			log.Error("reading the current release to rebuild its build", "app", a.Name, "err", err)
			continue
		}
		b := rel.Build
		if b == nil || b.Strategy != pier.StrategyHost {
			continue
		}
		if _, err := os.Lstat(b.Image); !errors.Is(err, fs.ErrNotExist) {
			continue // there (or unreadable: the converge says so)
		}
		if err := p.rebuild(ctx, a, rel, dataDir, log); err != nil {
			log.Error("rebuilding a missing build: the app stays down until it is pushed again", "app", a.Name, "release", rel.Version, "commit", b.Commit, "err", err)
			continue
		}
		n++
	}
	return n
}

func (p *platform) rebuild(ctx context.Context, a pier.App, rel *pier.Release, dataDir string, log *slog.Logger) error {
	b := rel.Build
	if b.Commit == "" {
		return errors.New("the build records no commit")
	}
	start := time.Now()
	log.Info("rebuilding a missing build from the repository", "app", a.Name, "release", rel.Version, "commit", b.Commit, "into", b.Image)
	// The tree goes where pushed trees go, emptied at start: a pierd killed
	// mid-rebuild leaves none behind.
	req := builder.DeployRequest{App: a.Name, Repo: builder.RepoDir(dataDir, a.Name), Commit: b.Commit, TreeDir: p.trees}
	src, remove, err := req.Checkout(ctx)
	if err != nil {
		return fmt.Errorf("checking out the commit from %s: %w", req.Repo, err)
	}
	defer remove()
	res, err := p.host.Rebuild(ctx, pier.BuildRequest{
		App: a.Name, UID: a.UID, Commit: b.Commit, SourceDir: src, Config: rel.Config,
		// No log: the app's own build steps may print its config, which must
		// not reach pierd's log; a failure's reason is in the error.
		Log: io.Discard,
	}, b.Image)
	if err != nil {
		return err
	}
	for t := range b.ProcessTypes {
		if _, ok := res.ProcessTypes[t]; !ok {
			log.Warn("the rebuilt build lacks a process type the release records", "app", a.Name, "type", t)
		}
	}
	log.Info("missing build rebuilt", "app", a.Name, "release", rel.Version, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
