package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// AllDomains returns every custom domain: hostname (or "*.example.com") →
// app. The router's table of custom hosts is made from it.
func (db *DB) AllDomains(ctx context.Context) (map[string]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT d.hostname, a.name FROM domains d JOIN apps a ON a.id = d.app_id`)
	if err != nil {
		return nil, wrap(err, "list all domains")
	}
	out := map[string]string{}
	var host, app string
	_, err = pgx.ForEachRow(rows, []any{&host, &app}, func() error {
		out[host] = app
		return nil
	})
	if err != nil {
		return nil, wrap(err, "list all domains")
	}
	return out, nil
}

// WatchDomains calls fn with every custom domain now and again after every
// change to them, made by any controller on this database (a trigger
// notifies the pier_domains channel), until ctx ends. A lost connection is
// retried, and the domains reloaded, so no change is missed for good.
func (db *DB) WatchDomains(ctx context.Context, log *slog.Logger, fn func(map[string]string)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := db.watchDomains(ctx, fn, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		log.Warn("watching domains; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (db *DB) watchDomains(ctx context.Context, fn func(map[string]string), listening func()) error {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection LISTENs: it must not go back to the pool.
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN pier_domains"); err != nil {
		return err
	}
	listening()
	for {
		// Load after LISTEN: a change made in between is seen either way.
		all, err := db.AllDomains(ctx)
		if err != nil {
			return err
		}
		fn(all)
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
