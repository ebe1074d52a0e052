package postgres

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// SetAutoCerts turns the app's automatic certificates on or off, and
// records "certs.auto.enable" or "certs.auto.disable". Turning them off
// forgets the failures and drops the challenges under way; the
// certificates already issued stay, and are not renewed.
func (db *DB) SetAutoCerts(ctx context.Context, app string, on bool, actor string) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, noKeyUpdate)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE apps SET auto_certs = $2, updated_at = now() WHERE id = $1`, id, on); err != nil {
			return wrap(err, "set automatic certificates of %s", app)
		}
		action := "certs.auto.enable"
		if !on {
			action = "certs.auto.disable"
			for _, q := range []string{
				`DELETE FROM autocert_failures WHERE domain_id IN (SELECT id FROM domains WHERE app_id = $1)`,
				`DELETE FROM acme_challenges WHERE domain_id IN (SELECT id FROM domains WHERE app_id = $1)`,
			} {
				if _, err := tx.Exec(ctx, q, id); err != nil {
					return wrap(err, "turn automatic certificates of %s off", app)
				}
			}
		}
		return recordEvent(ctx, tx, id, app, actor, action, "")
	})
}

// AutoCertApp returns what pier.PlanAutoCerts needs of the app.
func (db *DB) AutoCertApp(ctx context.Context, app string) (*pier.AutoCertApp, error) {
	apps, err := db.autoCertApps(ctx, `a.name = $1`, app)
	if err != nil {
		return nil, err
	}
	if len(apps) == 0 {
		return nil, appNotFound(app)
	}
	return &apps[0], nil
}

// AutoCertApps returns the apps with automatic certificates on.
func (db *DB) AutoCertApps(ctx context.Context) ([]pier.AutoCertApp, error) {
	return db.autoCertApps(ctx, `a.auto_certs`)
}

func (db *DB) autoCertApps(ctx context.Context, where string, args ...any) ([]pier.AutoCertApp, error) {
	// One snapshot for the three queries.
	var out []pier.AutoCertApp
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		byID := map[int64]*pier.AutoCertApp{}
		var ids []int64
		rows, err := tx.Query(ctx, `SELECT a.id, a.name, a.auto_certs FROM apps a WHERE `+where+` ORDER BY a.name`, args...)
		if err != nil {
			return err
		}
		var id int64
		var a pier.AutoCertApp
		if _, err := pgx.ForEachRow(rows, []any{&id, &a.App, &a.Enabled}, func() error {
			ids = append(ids, id)
			out = append(out, pier.AutoCertApp{App: a.App, Enabled: a.Enabled, Domains: []string{}, States: map[string]pier.AutoCertState{}})
			return nil
		}); err != nil {
			return err
		}
		for i := range out {
			byID[ids[i]] = &out[i]
		}
		if len(ids) == 0 {
			return nil
		}
		var host string
		var st pier.AutoCertState
		var failErr *string
		var attempts *int
		var next *time.Time
		rows, err = tx.Query(ctx,
			`SELECT d.app_id, d.hostname, f.error, f.attempts, f.next_attempt
			 FROM domains d LEFT JOIN autocert_failures f ON f.domain_id = d.id
			 WHERE d.app_id = ANY($1) ORDER BY d.hostname`, ids)
		if err != nil {
			return err
		}
		if _, err := pgx.ForEachRow(rows, []any{&id, &host, &failErr, &attempts, &next}, func() error {
			a := byID[id]
			a.Domains = append(a.Domains, host)
			if failErr != nil {
				st = pier.AutoCertState{Hostname: host, Error: *failErr, Attempts: *attempts, NextAttempt: *next}
				a.States[host] = st
			}
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+certColumns+`, c.app_id FROM certs c WHERE c.app_id = ANY($1) ORDER BY c.expires_at`, ids)
		if err != nil {
			return err
		}
		for rows.Next() {
			var c pier.Certificate
			if err := scanCert(rows, &c, &id); err != nil {
				rows.Close()
				return err
			}
			c.App = byID[id].App
			byID[id].Certs = append(byID[id].Certs, c)
		}
		return rows.Err()
	})
	return out, wrap(err, "read automatic certificates")
}

// RecordAutoCertFailure records a failed order for host (a domain of app)
// at now: its error, one more attempt, and when to try again
// (pier.AutoCertBackoff). The error is the CA's or the network's, never a
// key.
func (db *DB) RecordAutoCertFailure(ctx context.Context, app, host, msg string, now time.Time) (pier.AutoCertState, error) {
	st := pier.AutoCertState{Hostname: host, Error: clipError(msg)}
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var domainID int64
		err := tx.QueryRow(ctx, `SELECT d.id FROM domains d JOIN apps a ON a.id = d.app_id WHERE a.name = $1 AND d.hostname = $2 FOR KEY SHARE OF d`, app, host).Scan(&domainID)
		if isNoRows(err) {
			return pier.Errorf(pier.ENOTFOUND, "domain %q is no longer on app %q", host, app)
		}
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT attempts FROM autocert_failures WHERE domain_id = $1 FOR UPDATE`, domainID).Scan(&st.Attempts)
		if err != nil && !isNoRows(err) {
			return err
		}
		st.Attempts++
		st.NextAttempt = now.Add(pier.AutoCertBackoff(st.Attempts))
		_, err = tx.Exec(ctx,
			`INSERT INTO autocert_failures (domain_id, error, attempts, next_attempt) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (domain_id) DO UPDATE SET error = $2, attempts = $3, next_attempt = $4, updated_at = now()`,
			domainID, st.Error, st.Attempts, st.NextAttempt)
		return err
	})
	return st, wrap(err, "record a failed certificate order for %s", host)
}

// clipError keeps a CA's error short enough for a status line.
func clipError(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 1000 {
		s = s[:1000] + "..."
	}
	return s
}

// PutManagedCert stores the certificate Pier ordered for host, a domain of
// app, replacing the managed certificates it had for host alone, and
// forgets the domain's failures, in one transaction, recording
// "cert.auto". ECONFLICT if the app turned automatic certificates off or
// lost the domain meanwhile: then nothing is stored.
func (db *DB) PutManagedCert(ctx context.Context, app, host string, c *pier.Certificate, chainPEM, keyPEM string) (replaced []string, err error) {
	c.App, c.Managed = app, true
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var appID, domainID int64
		var on bool
		err := tx.QueryRow(ctx,
			`SELECT a.id, a.auto_certs, d.id FROM apps a JOIN domains d ON d.app_id = a.id
			 WHERE a.name = $1 AND d.hostname = $2 FOR KEY SHARE`, app, host).Scan(&appID, &on, &domainID)
		if isNoRows(err) || err == nil && !on {
			return pier.Errorf(pier.ECONFLICT, "app %q no longer has automatic certificates for %s", app, host)
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM certs WHERE app_id = $1 AND managed AND domains = $2 RETURNING name`, appID, []string{host})
		if err != nil {
			return err
		}
		if replaced, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		err = tx.QueryRow(ctx,
			`INSERT INTO certs (app_id, name, fingerprint, domains, issuer, not_before, expires_at, chain, private_key, managed)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true) RETURNING created_at`,
			appID, c.Name, c.Fingerprint, c.Domains, c.Issuer, c.NotBefore, c.ExpiresAt, chainPEM, keyPEM).Scan(&c.CreatedAt)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM autocert_failures WHERE domain_id = $1`, domainID); err != nil {
			return err
		}
		detail := c.Name + " for " + host
		if len(replaced) > 0 {
			detail += " (replaces " + strings.Join(replaced, ", ") + ")"
		}
		return recordEvent(ctx, tx, appID, app, "pier", "cert.auto", detail)
	})
	return replaced, wrap(err, "store the certificate ordered for %s", host)
}

// AddACMEChallenge stores the key authorization of an HTTP-01 challenge
// for host, a domain of app, for routers to answer.
func (db *DB) AddACMEChallenge(ctx context.Context, app, host, token, keyAuth string) error {
	tag, err := db.pool.Exec(ctx,
		`INSERT INTO acme_challenges (token, key_auth, domain_id)
		 SELECT $3, $4, d.id FROM domains d JOIN apps a ON a.id = d.app_id WHERE a.name = $1 AND d.hostname = $2
		 ON CONFLICT (token) DO UPDATE SET key_auth = $4`, app, host, token, keyAuth)
	if err == nil && tag.RowsAffected() == 0 {
		return pier.Errorf(pier.ENOTFOUND, "domain %q is no longer on app %q", host, app)
	}
	return wrap(err, "store an ACME challenge for %s", host)
}

// RemoveACMEChallenge drops a challenge once validated (or abandoned).
func (db *DB) RemoveACMEChallenge(ctx context.Context, token string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM acme_challenges WHERE token = $1`, token)
	return wrap(err, "remove an ACME challenge")
}

// ACMEChallenges returns the challenges under way: token → key
// authorization.
func (db *DB) ACMEChallenges(ctx context.Context) (map[string]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT token, key_auth FROM acme_challenges`)
	if err != nil {
		return nil, wrap(err, "list ACME challenges")
	}
	m := map[string]string{}
	var token, keyAuth string
	_, err = pgx.ForEachRow(rows, []any{&token, &keyAuth}, func() error {
		m[token] = keyAuth
		return nil
	})
	return m, wrap(err, "list ACME challenges")
}

// WatchACMEChallenges calls fn with the challenges under way now, and again
// after every change made by any controller, until ctx ends.
func (db *DB) WatchACMEChallenges(ctx context.Context, log *slog.Logger, fn func(map[string]string)) {
	watchChannel(ctx, db, log, "pier_acme_challenges", "ACME challenges", db.ACMEChallenges, fn)
}

// WatchAutoCerts calls fn now, and again after every change to an app's
// automatic certificates flag, its domains or its certificates, until ctx
// ends: the issuer's nudge.
func (db *DB) WatchAutoCerts(ctx context.Context, log *slog.Logger, fn func()) {
	watchChannel(ctx, db, log, "pier_autocerts", "automatic certificates",
		func(context.Context) (struct{}, error) { return struct{}{}, nil }, func(struct{}) { fn() })
}

// issuerLockKey is the advisory lock that only one certificate issuer
// holds at a time, whichever controller it runs in.
const issuerLockKey = 0x70696572_61636d65 // "pieracme"

// IssuerLock takes the issuer's advisory lock if it is free, on a
// connection held until unlock is called; ok is false if another
// controller holds it.
func (db *DB) IssuerLock(ctx context.Context) (unlock func(), ok bool, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, false, wrap(err, "take the issuer lock")
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(issuerLockKey)).Scan(&ok); err != nil || !ok {
		conn.Release()
		return nil, false, wrap(err, "take the issuer lock")
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(issuerLockKey)); err != nil {
			// The lock goes with the session: do not return it to the pool.
			conn.Hijack().Close(uctx)
			return
		}
		conn.Release()
	}, true, nil
}
