package postgres

import (
	"context"
	"log/slog"

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
	watchChannel(ctx, db, log, "pier_domains", "domains", db.AllDomains, fn)
}
