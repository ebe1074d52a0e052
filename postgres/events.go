package postgres

import (
	"context"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// recordEvent writes one audit event with q, the transaction of the change it
// describes, so that there is never a change without its event or an event
// without its change. appID 0 is an event about no app. detail must never
// hold a config value or a secret.
func recordEvent(ctx context.Context, q querier, appID int64, app, actor, action, detail string) error {
	_, err := q.Exec(ctx,
		`INSERT INTO events (app_id, app_name, actor, action, detail) VALUES ($1, $2, $3, $4, $5)`,
		nullID(appID), app, actor, action, detail)
	return wrap(err, "record event %s", action)
}

// nullID maps the zero ID to SQL NULL.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// RecordEvent records an event that goes with no other change, such as a
// login. An event naming an app is attached to it if it exists.
func (db *DB) RecordEvent(ctx context.Context, e pier.Event) error {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO events (app_id, app_name, actor, action, detail)
		 VALUES ((SELECT id FROM apps WHERE name = $1), $1, $2, $3, $4)`,
		e.App, e.Actor, e.Action, e.Detail)
	return wrap(err, "record event %s", e.Action)
}

// ListEvents lists the events of app, newest first. The cursor is the ID of
// the last event of the previous page.
func (db *DB) ListEvents(ctx context.Context, app string, p pier.Page) ([]pier.Event, string, error) {
	p = p.Normalized()
	after, err := idCursor(p.After)
	if err != nil {
		return nil, "", err
	}
	rows, err := db.pool.Query(ctx,
		`SELECT e.id, e.app_name, e.actor, e.action, e.detail, e.created_at
		 FROM events e
		 WHERE e.app_id = (SELECT id FROM apps WHERE name = $1) AND ($2::bigint = 0 OR e.id < $2)
		 ORDER BY e.id DESC
		 LIMIT $3`, app, after, p.Limit+1)
	if err != nil {
		return nil, "", wrap(err, "list events of %s", app)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.Event, error) {
		var e pier.Event
		err := row.Scan(&e.ID, &e.App, &e.Actor, &e.Action, &e.Detail, &e.CreatedAt)
		return e, err
	})
	if err != nil {
		return nil, "", wrap(err, "list events of %s", app)
	}
	if len(events) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, "", err
		}
	}
	events, next := cutPage(events, p.Limit, func(e pier.Event) string { return strconv.FormatInt(e.ID, 10) })
	return events, next, nil
}
