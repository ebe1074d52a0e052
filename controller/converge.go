package controller

// Converging every app: at start (Sync, retried until the apps are listed),
// after a database outage (OnReconnect), and the retries of the writes
// that record what the scheduler did while the database is not answering.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pierpaas/pier"
)

// ConvergeAll converges every app; it is what pierd runs at start (after
// a crash, or onto an empty cluster, it brings back what Postgres says).
// Apps converge convergeWorkers at a time: on Kubernetes each waits for its
// rollout. Then, if the scheduler can list the apps it runs (pier.AppLister),
// what runs of an app that no longer exists is destroyed. One app failing
// does not stop the others; the errors are joined.
func (r *Reconciler) ConvergeAll(ctx context.Context) error {
	_, err := r.convergeAll(ctx)
	return err
}

// Sync is the converge at start: ConvergeAll, tried again with backoff
// until it has listed the apps (the database may not answer yet, or stop
// answering in between). Once it has converged them all (each app's own
// failure is its state to report, and is logged), Synced reports true.
func (r *Reconciler) Sync(ctx context.Context) error {
	backoff := time.Second
	for {
		listed, err := r.convergeAll(ctx)
		if listed {
			r.synced.Store(true)
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		r.log.WarnContext(ctx, "converge at start: cannot list the apps; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// Synced reports whether Sync has converged every app since start: what
// /readyz calls the scheduler check.
func (r *Reconciler) Synced() bool { return r.synced.Load() }

// markRetryMax bounds how long whileOutage tries again.
const markRetryMax = 5 * time.Minute

// whileOutage runs fn, and again with backoff for as long as it fails
// because the database is not answering (pier.StoreHealth), for at most
// markRetryMax. It is for the writes that record what the scheduler did,
// such as marking a release succeeded: lost to an outage, the release
// would stay pending for good. fn must be safe to run twice.
func (r *Reconciler) whileOutage(ctx context.Context, fn func() error) error {
	h, ok := r.store.(pier.StoreHealth)
	deadline := time.Now().Add(markRetryMax)
	backoff := 200 * time.Millisecond
	for {
		err := fn()
		if err == nil || !ok || !h.Outage(err) || time.Now().After(deadline) {
			return err
		}
		r.log.DebugContext(ctx, "the database is not answering; trying again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// AllApps lists every app of store, page after page, as the platform
// (an admin) sees them.
func AllApps(ctx context.Context, store pier.Store) ([]pier.App, error) {
	all := &pier.User{Username: "pier", Admin: true}
	var apps []pier.App
	p := pier.Page{Limit: pier.PageMax}
	for {
		page, next, err := store.ListApps(ctx, all, p)
		if err != nil {
			return nil, err
		}
		apps = append(apps, page...)
		if next == "" {
			return apps, nil
		}
		p.After = next
	}
}

// convergeAll is ConvergeAll; listed says whether it got as far as
// listing every app.
func (r *Reconciler) convergeAll(ctx context.Context) (listed bool, _ error) {
	// Listed before the apps: an app that shows up here and not in
	// Postgres below was destroyed, not created in between (its rows come
	// before anything runs of it).
	var running []string
	if l, ok := r.sched.(pier.AppLister); ok {
		var err error
		if running, err = l.Apps(ctx); err != nil {
			r.log.ErrorContext(ctx, "list the apps the scheduler runs; nothing of destroyed apps is cleaned up", "err", err)
			running = nil
		}
	}
	apps, err := AllApps(ctx, r.store)
	if err != nil {
		return false, err
	}
	known := map[string]bool{}
	var names []string
	for _, a := range apps {
		known[a.Name] = true
		names = append(names, a.Name)
	}
	var gone []string
	for _, app := range running {
		if !known[app] {
			gone = append(gone, app)
		}
	}
	var mu sync.Mutex
	var errs []error
	work := func(app string, fn func(context.Context, string) error, what string) {
		if err := fn(ctx, app); err != nil {
			r.log.ErrorContext(ctx, what, "app", app, "err", err)
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %s: %w", app, what, err))
			mu.Unlock()
		}
	}
	each(names, convergeWorkers, func(app string) { work(app, r.Converge, "converge") })
	each(gone, convergeWorkers, func(app string) {
		r.log.InfoContext(ctx, "destroying what runs of an app that no longer exists", "app", app)
		work(app, r.Destroy, "destroy what runs of a destroyed app")
	})
	if len(errs) > 0 {
		return true, fmt.Errorf("%d app(s) did not converge: %w", len(errs), errors.Join(errs...))
	}
	return true, nil
}

// convergeWorkers is how many apps ConvergeAll converges at once.
const convergeWorkers = 16

// each calls fn for every item, n at a time, and returns when all are done.
func each(items []string, n int, fn func(string)) {
	ch := make(chan string)
	var wg sync.WaitGroup
	for range min(n, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				fn(it)
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
}
