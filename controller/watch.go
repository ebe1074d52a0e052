package controller

import (
	"context"
	"errors"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/pierpaas/pier"
)

// Watch converges again every app the scheduler reports as drifted (see
// pier.DriftNotifier), until ctx ends; with a scheduler that reports
// nothing it returns at once. Reports go through a rate-limited work queue,
// so a burst of them (a namespace's objects going one by one) converges
// the app once, and an app that cannot converge yet (its namespace still
// terminating) is tried again with backoff.
func (r *Reconciler) Watch(ctx context.Context) {
	dn, ok := r.sched.(pier.DriftNotifier)
	if !ok {
		return
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](driftRetryMin, driftRetryMax),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "pier_drift"})
	dn.NotifyDrift(func(app string) { q.Add(app) })
	defer dn.NotifyDrift(nil)
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	done := make(chan struct{})
	for range driftWorkers {
		go func() {
			defer func() { done <- struct{}{} }()
			for r.converged(ctx, q) {
			}
		}()
	}
	for range driftWorkers {
		<-done
	}
}

const (
	driftWorkers  = 4
	driftRetryMin = time.Second
	driftRetryMax = time.Minute
)

// converged converges the next app of q; false once q is shut down.
func (r *Reconciler) converged(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) bool {
	app, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(app)
	err := r.Converge(ctx, app)
	switch {
	case err == nil:
		r.log.DebugContext(ctx, "converged an app after a change behind Pier's back (or a delete of its own)", "app", app)
		q.Forget(app)
	case pier.ErrorCode(err) == pier.ENOTFOUND:
		q.Forget(app) // destroyed: what went was meant to go
	case errors.Is(err, pier.ErrRolloutFailed):
		// Not transient: trying again would hold the app for another
		// rollout timeout. The log and the audit log say why.
		r.log.ErrorContext(ctx, "converge after a change behind Pier's back", "app", app, "err", err)
		q.Forget(app)
	case ctx.Err() != nil:
		q.Forget(app)
	default:
		r.log.WarnContext(ctx, "converge after a change behind Pier's back; trying again", "app", app, "err", err, "retries", q.NumRequeues(app))
		q.AddRateLimited(app)
	}
	return true
}
