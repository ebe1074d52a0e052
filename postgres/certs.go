package postgres

import (
	"context"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// AddCert stores an app's certificate with its chain and private key. The
// same certificate twice on one app is ECONFLICT. The event names the
// certificate and its domains; the key goes nowhere but its column.
func (db *DB) AddCert(ctx context.Context, app string, c *pier.Certificate, chainPEM, keyPEM, actor string) error {
	c.App = app
	return db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, keyShare)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx,
			`INSERT INTO certs (app_id, name, fingerprint, domains, issuer, not_before, expires_at, chain, private_key)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at`,
			id, c.Name, c.Fingerprint, c.Domains, c.Issuer, c.NotBefore, c.ExpiresAt, chainPEM, keyPEM).Scan(&c.CreatedAt)
		if isUnique(err) {
			return pier.Errorf(pier.ECONFLICT, "app %q has this certificate already (%s): see `pier certs -a %s`", app, c.Name, app)
		}
		if err != nil {
			return wrap(err, "add a certificate to %s", app)
		}
		return recordEvent(ctx, tx, id, app, actor, "cert.add", c.Name+" for "+strings.Join(c.Domains, ", "))
	})
}

const certColumns = `c.name, c.fingerprint, c.domains, c.issuer, c.not_before, c.expires_at, c.created_at, c.managed`

func scanCert(row pgx.Row, c *pier.Certificate, extra ...any) error {
	return row.Scan(append([]any{&c.Name, &c.Fingerprint, &c.Domains, &c.Issuer, &c.NotBefore, &c.ExpiresAt, &c.CreatedAt, &c.Managed}, extra...)...)
}

// ListCerts lists the app's certificates by expiry, without their keys.
func (db *DB) ListCerts(ctx context.Context, app string) ([]pier.Certificate, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT `+certColumns+` FROM certs c
		 WHERE c.app_id = (SELECT id FROM apps WHERE name = $1) ORDER BY c.expires_at, c.name`, app)
	if err != nil {
		return nil, wrap(err, "list certificates of %s", app)
	}
	certs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.Certificate, error) {
		c := pier.Certificate{App: app}
		err := scanCert(row, &c)
		return c, err
	})
	if err != nil {
		return nil, wrap(err, "list certificates of %s", app)
	}
	if len(certs) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
		certs = []pier.Certificate{}
	}
	return certs, nil
}

// RemoveCert removes the app's certificate with that name or fingerprint
// prefix, and returns it (without key).
func (db *DB) RemoveCert(ctx context.Context, app, name, actor string) (*pier.Certificate, error) {
	name, err := pier.NormalizeCertName(name)
	if err != nil {
		return nil, err
	}
	var c pier.Certificate
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, keyShare)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx,
			`DELETE FROM certs c WHERE c.app_id = $1 AND (c.name = $2 OR starts_with(c.fingerprint, $2))
			 RETURNING `+certColumns, id, name)
		if err != nil {
			return wrap(err, "remove a certificate of %s", app)
		}
		gone, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.Certificate, error) {
			c := pier.Certificate{App: app}
			err := scanCert(row, &c)
			return c, err
		})
		if err != nil {
			return wrap(err, "remove a certificate of %s", app)
		}
		switch len(gone) {
		case 0:
			return pier.Errorf(pier.ENOTFOUND, "certificate %q not found on app %q: see `pier certs -a %s`", name, app, app)
		case 1:
		default:
			// Rolled back: nothing is removed.
			return pier.Errorf(pier.EINVALID, "%q matches %d certificates of %s: give more digits of the fingerprint", name, len(gone), app)
		}
		c = gone[0]
		return recordEvent(ctx, tx, id, app, actor, "cert.remove", c.Name+" for "+strings.Join(c.Domains, ", "))
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// AppHTTPS returns the app's HTTPS settings.
func (db *DB) AppHTTPS(ctx context.Context, app string) (pier.HTTPSSettings, error) {
	var s pier.HTTPSSettings
	err := db.pool.QueryRow(ctx, `SELECT https_redirect, hsts FROM apps WHERE name = $1`, app).Scan(&s.HTTPSRedirect, &s.HSTS)
	if isNoRows(err) {
		return s, appNotFound(app)
	}
	return s, wrap(err, "read the HTTPS settings of %s", app)
}

// SetAppHTTPS applies change to the app's HTTPS settings and returns them.
func (db *DB) SetAppHTTPS(ctx context.Context, app string, change pier.HTTPSChange, actor string) (pier.HTTPSSettings, error) {
	var s pier.HTTPSSettings
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, noKeyUpdate)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx,
			`UPDATE apps SET https_redirect = coalesce($2, https_redirect), hsts = coalesce($3, hsts), updated_at = now()
			 WHERE id = $1 RETURNING https_redirect, hsts`, id, change.HTTPSRedirect, change.HSTS).Scan(&s.HTTPSRedirect, &s.HSTS)
		if err != nil {
			return wrap(err, "set the HTTPS settings of %s", app)
		}
		onOff := func(b bool) string {
			if b {
				return "on"
			}
			return "off"
		}
		var parts []string
		if change.HTTPSRedirect != nil {
			parts = append(parts, "https_redirect="+onOff(*change.HTTPSRedirect))
		}
		if change.HSTS != nil {
			parts = append(parts, "hsts="+onOff(*change.HSTS))
		}
		return recordEvent(ctx, tx, id, app, actor, "https.set", strings.Join(parts, " "))
	})
	return s, err
}

// AllTLS returns every certificate with its key, and the HTTPS settings of
// the apps that turned any on: what routers serve.
func (db *DB) AllTLS(ctx context.Context) (pier.TLSState, error) {
	st := pier.TLSState{Certs: []pier.TLSCert{}, HTTPS: map[string]pier.HTTPSSettings{}}
	rows, err := db.pool.Query(ctx,
		`SELECT `+certColumns+`, a.name, c.chain, c.private_key FROM certs c JOIN apps a ON a.id = c.app_id ORDER BY c.id`)
	if err != nil {
		return st, wrap(err, "list all certificates")
	}
	st.Certs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.TLSCert, error) {
		var c pier.TLSCert
		err := scanCert(row, &c.Certificate, &c.App, &c.Chain, &c.Key)
		return c, err
	})
	if err != nil {
		return st, wrap(err, "list all certificates")
	}
	rows, err = db.pool.Query(ctx, `SELECT name, https_redirect, hsts FROM apps WHERE https_redirect OR hsts`)
	if err != nil {
		return st, wrap(err, "list HTTPS settings")
	}
	var app string
	var s pier.HTTPSSettings
	_, err = pgx.ForEachRow(rows, []any{&app, &s.HTTPSRedirect, &s.HSTS}, func() error {
		st.HTTPS[app] = s
		return nil
	})
	return st, wrap(err, "list HTTPS settings")
}

// WatchCerts calls fn with every certificate and HTTPS setting now, and
// again after every change to them made by any controller on this database
// (triggers notify the pier_certs channel), until ctx ends. A lost
// connection is retried and everything reloaded, so no change is missed
// for good. Errors are logged without the keys.
func (db *DB) WatchCerts(ctx context.Context, log *slog.Logger, fn func(pier.TLSState)) {
	watchChannel(ctx, db, log, "pier_certs", "certificates", db.AllTLS, fn)
}
