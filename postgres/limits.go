package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// Limits returns the limits of the app's process types that have any.
func (db *DB) Limits(ctx context.Context, app string) (map[string]pier.Limits, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT process_type, memory, cpu FROM limits WHERE app_id = (SELECT id FROM apps WHERE name = $1)`, app)
	l, err := collectLimits(rows, err)
	if err != nil {
		return nil, wrap(err, "read limits of %s", app)
	}
	if len(l) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func collectLimits(rows pgx.Rows, err error) (map[string]pier.Limits, error) {
	if err != nil {
		return nil, err
	}
	out := map[string]pier.Limits{}
	var t string
	var l pier.Limits
	_, err = pgx.ForEachRow(rows, []any{&t, &l.Memory, &l.CPU}, func() error {
		out[t] = l
		return nil
	})
	return out, err
}

// SetLimits applies change to the app's limits and returns all of them.
// Like Scale, it creates no release; once the app has a build, only the
// process types its current release defines can be given a limit (any may
// be unset).
func (db *DB) SetLimits(ctx context.Context, app string, change pier.LimitsChange, actor string) (map[string]pier.Limits, error) {
	if err := change.Validate(); err != nil {
		return nil, err
	}
	var out map[string]pier.Limits
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, noKeyUpdate)
		if err != nil {
			return err
		}
		if err := checkCurrentTypes(ctx, tx, id, app, change.Set()); err != nil {
			return err
		}
		base, err := collectLimits(tx.Query(ctx, `SELECT process_type, memory, cpu FROM limits WHERE app_id = $1`, id))
		if err != nil {
			return wrap(err, "read limits of %s", app)
		}
		next, detail, err := change.Apply(base)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		for t := range base {
			if _, ok := next[t]; !ok {
				b.Queue(`DELETE FROM limits WHERE app_id = $1 AND process_type = $2`, id, t)
			}
		}
		for t, l := range next {
			if base[t] != l {
				b.Queue(`INSERT INTO limits (app_id, process_type, memory, cpu) VALUES ($1, $2, $3, $4)
					ON CONFLICT (app_id, process_type) DO UPDATE
					SET memory = excluded.memory, cpu = excluded.cpu, updated_at = now()`, id, t, l.Memory, l.CPU)
			}
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return wrap(err, "set limits of %s", app)
		}
		out = next
		return recordEvent(ctx, tx, id, app, actor, "limits.set", detail)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
