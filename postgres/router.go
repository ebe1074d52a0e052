package postgres

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

const routerColumns = `maintenance, allow, body_limit_bytes, timeout_seconds`

func scanRouter(row pgx.Row, s *pier.RouterSettings) error {
	var allow []string
	if err := row.Scan(&s.Maintenance, &allow, &s.BodyLimitBytes, &s.TimeoutSeconds); err != nil {
		return err
	}
	if len(allow) > 0 {
		s.Allow = allow
	}
	return nil
}

// RouterSettings returns the app's router settings: the zero value if it
// never set any.
func (db *DB) RouterSettings(ctx context.Context, app string) (pier.RouterSettings, error) {
	var s pier.RouterSettings
	err := scanRouter(db.pool.QueryRow(ctx,
		`SELECT `+routerColumns+` FROM router_settings
		 WHERE app_id = (SELECT id FROM apps WHERE name = $1)`, app), &s)
	if isNoRows(err) {
		return pier.RouterSettings{}, appMissing(ctx, db.pool, app)
	}
	if err != nil {
		return pier.RouterSettings{}, wrap(err, "read router settings of %s", app)
	}
	return s, nil
}

// SetRouterSettings applies change to the app's router settings, records
// "router.set" in the same transaction, and returns them all. Settings back
// to the platform's behaviour leave no row. The table's trigger tells every
// router (WatchRouterSettings).
func (db *DB) SetRouterSettings(ctx context.Context, app string, change pier.RouterChange, actor string) (pier.RouterSettings, error) {
	if err := change.Validate(); err != nil {
		return pier.RouterSettings{}, err
	}
	var out pier.RouterSettings
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, noKeyUpdate)
		if err != nil {
			return err
		}
		var base pier.RouterSettings
		err = scanRouter(tx.QueryRow(ctx, `SELECT `+routerColumns+` FROM router_settings WHERE app_id = $1`, id), &base)
		if err != nil && !isNoRows(err) {
			return wrap(err, "read router settings of %s", app)
		}
		next, detail, err := change.Apply(base)
		if err != nil {
			return err
		}
		if next.IsZero() {
			_, err = tx.Exec(ctx, `DELETE FROM router_settings WHERE app_id = $1`, id)
		} else {
			allow := next.Allow
			if allow == nil {
				allow = []string{}
			}
			_, err = tx.Exec(ctx,
				`INSERT INTO router_settings (app_id, `+routerColumns+`) VALUES ($1, $2, $3, $4, $5)
				 ON CONFLICT (app_id) DO UPDATE SET maintenance = excluded.maintenance, allow = excluded.allow,
				   body_limit_bytes = excluded.body_limit_bytes, timeout_seconds = excluded.timeout_seconds, updated_at = now()`,
				id, next.Maintenance, allow, next.BodyLimitBytes, next.TimeoutSeconds)
		}
		if err != nil {
			return wrap(err, "set router settings of %s", app)
		}
		out = next
		return recordEvent(ctx, tx, id, app, actor, "router.set", detail)
	})
	if err != nil {
		return pier.RouterSettings{}, err
	}
	return out, nil
}

// AllRouterSettings returns the router settings of every app that has
// any: app → settings. The router's per-app behaviour is made from it.
func (db *DB) AllRouterSettings(ctx context.Context) (map[string]pier.RouterSettings, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT a.name, r.maintenance, r.allow, r.body_limit_bytes, r.timeout_seconds
		 FROM router_settings r JOIN apps a ON a.id = r.app_id`)
	if err != nil {
		return nil, wrap(err, "list router settings")
	}
	out := map[string]pier.RouterSettings{}
	var app string
	var s pier.RouterSettings
	var allow []string
	_, err = pgx.ForEachRow(rows, []any{&app, &s.Maintenance, &allow, &s.BodyLimitBytes, &s.TimeoutSeconds}, func() error {
		s.Allow = nil
		if len(allow) > 0 {
			s.Allow = append([]string(nil), allow...)
		}
		out[app] = s
		return nil
	})
	if err != nil {
		return nil, wrap(err, "list router settings")
	}
	return out, nil
}

// WatchRouterSettings calls fn with every app's router settings now and
// again after every change to them, made by any controller on this
// database (a trigger notifies the pier_router_settings channel), until ctx
// ends. As WatchDomains, it retries a lost connection and reloads, so no
// change is missed for good.
func (db *DB) WatchRouterSettings(ctx context.Context, log *slog.Logger, fn func(map[string]pier.RouterSettings)) {
	watchChannel(ctx, db, log, "pier_router_settings", "router settings", db.AllRouterSettings, fn)
}
