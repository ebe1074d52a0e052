package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// AppBuilder returns the app's CNB builder image, "" for the default.
func (db *DB) AppBuilder(ctx context.Context, app string) (string, error) {
	var b string
	err := db.pool.QueryRow(ctx, `SELECT builder FROM apps WHERE name = $1`, app).Scan(&b)
	if isNoRows(err) {
		return "", appNotFound(app)
	}
	return b, wrap(err, "read the builder of %s", app)
}

// SetAppBuilder sets the app's CNB builder image ("" for the default) and
// records the event in the same transaction.
func (db *DB) SetAppBuilder(ctx context.Context, app, builder, actor string) error {
	if builder != "" {
		if err := pier.ValidateImage(builder); err != nil {
			return err
		}
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, noKeyUpdate)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE apps SET builder = $2, updated_at = now() WHERE id = $1`, id, builder); err != nil {
			return wrap(err, "set the builder of %s", app)
		}
		detail := "Set builder " + builder
		if builder == "" {
			detail = "Builder back to the platform's default"
		}
		return recordEvent(ctx, tx, id, app, actor, "builder.set", detail)
	})
}
