package postgres

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// releaseColumns read a release r and its build b (NULLs when it has none).
const (
	releaseColumns = `r.version, r.config, r.note, r.created_by, r.created_at, r.status, r.failure, r.failed_at,
		b.id, b.commit_sha, b.strategy, b.image, b.process_types, b.status, b.created_by, b.created_at`
	releaseJoin = ` LEFT JOIN builds b ON b.id = r.build_id`
)

func scanRelease(row pgx.Row, app string) (*pier.Release, error) {
	r := pier.Release{App: app}
	var (
		buildID                                    *int64
		commit, strategy, image, status, createdBy *string
		processTypes                               map[string]string
		createdAt                                  *time.Time
	)
	err := row.Scan(&r.Version, &r.Config, &r.Note, &r.CreatedBy, &r.CreatedAt, &r.Status, &r.Failure, &r.FailedAt,
		&buildID, &commit, &strategy, &image, &processTypes, &status, &createdBy, &createdAt)
	if err != nil {
		return nil, err
	}
	if buildID != nil {
		r.Build = &pier.Build{
			ID: *buildID, App: app, Commit: *commit, Strategy: *strategy, Image: *image,
			ProcessTypes: processTypes, Status: *status, CreatedBy: *createdBy, CreatedAt: *createdAt,
		}
	}
	return &r, nil
}

// newRelease is a release about to be added, with the audit event that says
// why. The caller holds the app's row lock (nextVersion).
type newRelease struct {
	appID   int64
	app     string
	version int
	buildID *int64
	config  pier.Config
	note    string
	actor   string
	action  string // of the audit event, whose detail is the note
	// status is pier.ReleasePending unless the release is known to run
	// (or to have nothing to run) when it is written, or known to have
	// failed (with failure, the reason).
	status  string
	failure string
	// detail, if set, is the audit event's detail instead of the note.
	detail string

	// rewriteConfig makes config_vars equal to config, for changes that
	// change the config.
	rewriteConfig bool
}

// add inserts the release, rewrites the current config if asked to and
// records the event, in one round trip.
func (n newRelease) add(ctx context.Context, tx pgx.Tx) (*pier.Release, error) {
	if n.config == nil {
		n.config = pier.Config{} // JSON null is not a config
	}
	if n.status == "" {
		n.status = pier.ReleasePending
	}
	var rel *pier.Release
	b := &pgx.Batch{}
	b.Queue(`WITH r AS (
			INSERT INTO releases (app_id, version, build_id, config, note, created_by, status, failure, failed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $7 = 'failed' THEN now() END)
			RETURNING version, build_id, config, note, created_by, created_at, status, failure, failed_at
		 )
		 SELECT `+releaseColumns+` FROM r`+releaseJoin,
		n.appID, n.version, n.buildID, n.config, n.note, n.actor, n.status, textColumn(n.failure)).QueryRow(func(row pgx.Row) error {
		var err error
		rel, err = scanRelease(row, n.app)
		return err
	})
	if n.rewriteConfig {
		queueConfigRewrite(b, n.appID, n.config)
	}
	detail := n.note
	if n.detail != "" {
		detail = n.detail
	}
	b.Queue(`INSERT INTO events (app_id, app_name, actor, action, detail) VALUES ($1, $2, $3, $4, $5)`,
		n.appID, n.app, n.actor, n.action, detail)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		if isUnique(err) {
			// Cannot happen while callers hold the app lock; say so if it does.
			return nil, pier.Errorf(pier.ECONFLICT, "release v%d of app %q was added concurrently: try again", n.version, n.app)
		}
		return nil, wrap(err, "add release v%d of %s", n.version, n.app)
	}
	return rel, nil
}

// queueConfigRewrite makes config_vars equal to cfg, writing only the rows
// that change.
func queueConfigRewrite(b *pgx.Batch, appID int64, cfg pier.Config) {
	b.Queue(`DELETE FROM config_vars WHERE app_id = $1 AND NOT ($2::jsonb ? key)`, appID, cfg)
	b.Queue(`INSERT INTO config_vars (app_id, key, value)
		SELECT $1, key, value FROM jsonb_each_text($2::jsonb)
		ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value
		WHERE config_vars.value IS DISTINCT FROM excluded.value`, appID, cfg)
}

// currentVersionSQL selects the version of the current release of the app
// whose ID is $1: its newest release that has not failed.
const currentVersionSQL = `SELECT version FROM releases WHERE app_id = $1 AND status <> 'failed' ORDER BY version DESC LIMIT 1`

// currentVersion returns the version of the app's current release. There
// always is one: v1 never fails.
func currentVersion(ctx context.Context, q querier, appID int64, app string) (int, error) {
	var v int
	err := q.QueryRow(ctx, currentVersionSQL, appID).Scan(&v)
	if isNoRows(err) {
		return 0, appNotFound(app)
	}
	return v, wrap(err, "find current release of %s", app)
}

// nextVersion takes the app's next release number. The UPDATE locks the app
// row until the transaction ends, so changes that add releases to one app
// run one after the other, on any number of controllers, and a failed one
// rolls its number back: versions have no gaps and no duplicates.
func nextVersion(ctx context.Context, tx pgx.Tx, app string) (id int64, version int, err error) {
	err = tx.QueryRow(ctx,
		`UPDATE apps SET last_version = last_version + 1, updated_at = now()
		 WHERE name = $1 RETURNING id, last_version`, app).Scan(&id, &version)
	if isNoRows(err) {
		return 0, 0, appNotFound(app)
	}
	return id, version, wrap(err, "lock app %s", app)
}

// releaseBuildAndConfig reads what a release runs. Called after nextVersion,
// it sees the latest committed state: each statement of a READ COMMITTED
// transaction takes a fresh snapshot.
func releaseBuildAndConfig(ctx context.Context, tx pgx.Tx, appID int64, app string, version int) (*int64, pier.Config, error) {
	var buildID *int64
	var cfg pier.Config
	err := tx.QueryRow(ctx, `SELECT build_id, config FROM releases WHERE app_id = $1 AND version = $2`,
		appID, version).Scan(&buildID, &cfg)
	if isNoRows(err) {
		return nil, nil, releaseNotFound(app, version)
	}
	return buildID, cfg, wrap(err, "read release v%d of %s", version, app)
}

func releaseNotFound(app string, version int) error {
	return pier.Errorf(pier.ENOTFOUND, "release v%d of app %q not found: see `pier releases -a %s`", version, app, app)
}

// Config returns the app's current config.
func (db *DB) Config(ctx context.Context, app string) (pier.Config, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT key, value FROM config_vars WHERE app_id = (SELECT id FROM apps WHERE name = $1)`, app)
	if err != nil {
		return nil, wrap(err, "read config of %s", app)
	}
	cfg := pier.Config{}
	var k, v string
	_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		cfg[k] = v
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read config of %s", app)
	}
	if len(cfg) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// SetConfig applies change to the current config and adds the release that
// runs the current build with the result.
func (db *DB) SetConfig(ctx context.Context, app string, change pier.ConfigChange, actor string) (*pier.Release, error) {
	if err := change.Validate(); err != nil {
		return nil, err
	}
	var rel *pier.Release
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		id, version, err := nextVersion(ctx, tx, app)
		if err != nil {
			return err
		}
		cur, err := currentVersion(ctx, tx, id, app)
		if err != nil {
			return err
		}
		buildID, current, err := releaseBuildAndConfig(ctx, tx, id, app, cur)
		if err != nil {
			return err
		}
		next, note, err := change.Apply(current)
		if err != nil {
			return err
		}
		action := "config.set"
		if len(change.Set) == 0 {
			action = "config.unset"
		}
		rel, err = newRelease{
			appID: id, app: app, version: version, buildID: buildID, config: next,
			note: note, actor: actor, action: action, rewriteConfig: true,
		}.add(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rel, nil
}

// Rollback adds a release that runs the build and config of version (0: the
// newest release before the current one that did not fail). Rolling back
// to a failed release is allowed: it is a new try of the same build and
// config.
func (db *DB) Rollback(ctx context.Context, app string, version int, actor string) (*pier.Release, error) {
	if version < 0 {
		return nil, pier.Errorf(pier.EINVALID, "release version %d is invalid: use a number such as 3", version)
	}
	var rel *pier.Release
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		id, next, err := nextVersion(ctx, tx, app)
		if err != nil {
			return err
		}
		current, err := currentVersion(ctx, tx, id, app)
		if err != nil {
			return err
		}
		target := version
		if target == 0 && current > 1 {
			err := tx.QueryRow(ctx,
				`SELECT version FROM releases WHERE app_id = $1 AND status <> 'failed' AND version < $2
				 ORDER BY version DESC LIMIT 1`, id, current).Scan(&target)
			if err != nil {
				return wrap(err, "find the release before v%d of %s", current, app)
			}
		}
		switch {
		case target < 1:
			return pier.Errorf(pier.EINVALID, "app %q has only its initial release v1: there is nothing to roll back to", app)
		case target == current:
			return pier.Errorf(pier.EINVALID, "v%d is the current release of app %q: roll back to an earlier one", target, app)
		case target >= next:
			return releaseNotFound(app, target)
		}
		buildID, cfg, err := releaseBuildAndConfig(ctx, tx, id, app, target)
		if err != nil {
			return err
		}
		rel, err = newRelease{
			appID: id, app: app, version: next, buildID: buildID, config: cfg,
			note: "Rollback to v" + strconv.Itoa(target), actor: actor, action: "release.rollback", rewriteConfig: true,
		}.add(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rel, nil
}

// ListReleases lists the app's releases, newest first; the cursor is the
// version of the last release of the previous page.
func (db *DB) ListReleases(ctx context.Context, app string, p pier.Page) ([]pier.Release, string, error) {
	p = p.Normalized()
	after, err := idCursor(p.After)
	if err != nil {
		return nil, "", err
	}
	rows, err := db.pool.Query(ctx,
		`SELECT `+releaseColumns+` FROM releases r`+releaseJoin+`
		 WHERE r.app_id = (SELECT id FROM apps WHERE name = $1) AND ($2::bigint = 0 OR r.version < $2::bigint)
		 ORDER BY r.version DESC
		 LIMIT $3`, app, after, p.Limit+1)
	if err != nil {
		return nil, "", wrap(err, "list releases of %s", app)
	}
	rels, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.Release, error) {
		r, err := scanRelease(row, app)
		if err != nil {
			return pier.Release{}, err
		}
		return *r, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list releases of %s", app)
	}
	if len(rels) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, "", err
		}
	}
	rels, next := cutPage(rels, p.Limit, func(r pier.Release) string { return strconv.Itoa(r.Version) })
	return rels, next, nil
}

func (db *DB) FindRelease(ctx context.Context, app string, version int) (*pier.Release, error) {
	if version < 1 || version > math.MaxInt32 {
		// Out of the column's range: no such release, rather than an
		// encoding error.
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
		return nil, releaseNotFound(app, version)
	}
	r, err := scanRelease(db.pool.QueryRow(ctx,
		`SELECT `+releaseColumns+` FROM releases r`+releaseJoin+`
		 WHERE r.app_id = (SELECT id FROM apps WHERE name = $1) AND r.version = $2`, app, version), app)
	if isNoRows(err) {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
		return nil, releaseNotFound(app, version)
	}
	return r, wrap(err, "find release v%d of %s", version, app)
}

// CurrentRelease returns the app's current release, the one that should
// run: its newest release that has not failed.
func (db *DB) CurrentRelease(ctx context.Context, app string) (*pier.Release, error) {
	return currentRelease(ctx, db.pool, app)
}

func currentRelease(ctx context.Context, q querier, app string) (*pier.Release, error) {
	r, err := scanRelease(q.QueryRow(ctx,
		`SELECT `+releaseColumns+`
		 FROM apps a
		 JOIN LATERAL (
			SELECT * FROM releases WHERE app_id = a.id AND status <> 'failed' ORDER BY version DESC LIMIT 1
		 ) r ON true`+releaseJoin+`
		 WHERE a.name = $1`, app), app)
	if isNoRows(err) {
		return nil, appNotFound(app)
	}
	return r, wrap(err, "find current release of %s", app)
}

// MarkReleaseSucceeded records that the processes of a pending release
// became available; for a release in any other state it does nothing.
// It records no event: it is the platform observing a change someone
// else's event already tells of, and it happens on every deploy.
func (db *DB) MarkReleaseSucceeded(ctx context.Context, app string, version int) error {
	_, err := db.pool.Exec(ctx,
		`UPDATE releases SET status = 'succeeded'
		 WHERE app_id = (SELECT id FROM apps WHERE name = $1) AND version = $2 AND status = 'pending'`, app, version)
	return wrap(err, "mark release v%d of %s succeeded", version, app)
}

// MarkReleaseFailed marks a pending release failed, which makes the newest
// release before it that did not fail current again (unless a newer one
// is), and restores that release's config as the app's config, with the
// audit event, in one transaction. It returns the current release.
func (db *DB) MarkReleaseFailed(ctx context.Context, app string, version int, reason, actor string) (*pier.Release, error) {
	if len(reason) > pier.ReleaseFailureMax {
		reason = reason[:pier.ReleaseFailureMax] + "…"
	}
	reason = textColumn(reason)
	var rel *pier.Release
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// The lock that adding a release takes: no config change, rollback
		// or deploy builds on the release while it is being failed.
		id, err := appID(ctx, tx, app, noKeyUpdate)
		if err != nil {
			return err
		}
		var status string
		err = tx.QueryRow(ctx, `SELECT status FROM releases WHERE app_id = $1 AND version = $2`, id, version).Scan(&status)
		if isNoRows(err) {
			return releaseNotFound(app, version)
		}
		if err != nil {
			return wrap(err, "find release v%d of %s", version, app)
		}
		if status != pier.ReleasePending {
			return pier.Errorf(pier.ECONFLICT, "release v%d of app %q is %s: only a pending release can fail", version, app, status)
		}
		_, err = tx.Exec(ctx,
			`UPDATE releases SET status = 'failed', failure = $3, failed_at = now() WHERE app_id = $1 AND version = $2`,
			id, version, reason)
		if err != nil {
			return wrap(err, "mark release v%d of %s failed", version, app)
		}
		if rel, err = currentRelease(ctx, tx, app); err != nil {
			return err
		}
		b := &pgx.Batch{}
		queueConfigRewrite(b, id, rel.Config)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return wrap(err, "restore the config of v%d of %s", rel.Version, app)
		}
		detail := fmt.Sprintf("release v%d failed: %s; v%d restored", version, firstLine(reason), rel.Version)
		if rel.Version > version {
			detail = fmt.Sprintf("release v%d failed: %s; v%d stays current", version, firstLine(reason), rel.Version)
		}
		return recordEvent(ctx, tx, id, app, actor, "release.fail", detail)
	})
	if err != nil {
		return nil, err
	}
	return rel, nil
}

// firstLine is the first line of s, at most 300 bytes: what an event says
// of a longer reason.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}
