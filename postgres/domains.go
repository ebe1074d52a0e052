package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// AddDomain routes hostname to app. A hostname belongs to one app: if any
// app has it, ECONFLICT, without saying which (that is not the caller's
// business).
func (db *DB) AddDomain(ctx context.Context, app, hostname, actor string) (*pier.Domain, error) {
	host, err := pier.NormalizeHostname(hostname)
	if err != nil {
		return nil, err
	}
	d := &pier.Domain{Hostname: host, App: app}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, keyShare)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx,
			`INSERT INTO domains (app_id, hostname) VALUES ($1, $2) RETURNING created_at`, id, host).Scan(&d.CreatedAt)
		if isUnique(err) {
			return pier.Errorf(pier.ECONFLICT, "domain %q is already in use", host)
		}
		if err != nil {
			return wrap(err, "add domain to %s", app)
		}
		return recordEvent(ctx, tx, id, app, actor, "domain.add", host)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// ListDomains lists the app's domains by hostname.
func (db *DB) ListDomains(ctx context.Context, app string) ([]pier.Domain, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT hostname, created_at FROM domains
		 WHERE app_id = (SELECT id FROM apps WHERE name = $1) ORDER BY hostname`, app)
	if err != nil {
		return nil, wrap(err, "list domains of %s", app)
	}
	domains, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.Domain, error) {
		d := pier.Domain{App: app}
		err := row.Scan(&d.Hostname, &d.CreatedAt)
		return d, err
	})
	if err != nil {
		return nil, wrap(err, "list domains of %s", app)
	}
	if len(domains) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
	}
	return domains, nil
}

func (db *DB) RemoveDomain(ctx context.Context, app, hostname, actor string) error {
	host, err := pier.NormalizeHostname(hostname)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, keyShare)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM domains WHERE app_id = $1 AND hostname = $2`, id, host)
		if err != nil {
			return wrap(err, "remove domain of %s", app)
		}
		if tag.RowsAffected() == 0 {
			return pier.Errorf(pier.ENOTFOUND, "domain %q not found on app %q: see `pier domains -a %s`", host, app, app)
		}
		return recordEvent(ctx, tx, id, app, actor, "domain.remove", host)
	})
}
