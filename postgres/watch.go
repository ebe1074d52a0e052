package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// watchChannel is the loop of a Watch method: LISTEN on channel, load,
// call fn, and again on each burst of notifications; a lost connection is
// retried with backoff.
func watchChannel[T any](ctx context.Context, db *DB, log *slog.Logger, channel, what string, load func(context.Context) (T, error), fn func(T)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listenLoad(ctx, db, channel, load, fn, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		log.Warn("watching "+what+"; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func listenLoad[T any](ctx context.Context, db *DB, channel string, load func(context.Context) (T, error), fn func(T), listening func()) error {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection LISTENs: it must not go back to the pool.
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		// Load after LISTEN: a change made in between is seen either way.
		v, err := load(ctx)
		if err != nil {
			return err
		}
		fn(v)
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		// Drain a burst of notifications into one reload.
		for {
			wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := conn.WaitForNotification(wctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				break
			}
		}
	}
}
