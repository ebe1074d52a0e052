package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

const buildColumns = `b.id, b.commit_sha, b.strategy, b.image, b.process_types, b.status, b.created_by, b.created_at`

func scanBuild(row pgx.Row, app string, extra ...any) (*pier.Build, error) {
	b := pier.Build{App: app}
	err := row.Scan(append([]any{&b.ID, &b.Commit, &b.Strategy, &b.Image, &b.ProcessTypes, &b.Status, &b.CreatedBy, &b.CreatedAt}, extra...)...)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// CreateBuild records a build of b.App and sets its ID and creation time. An
// empty status is pending.
func (db *DB) CreateBuild(ctx context.Context, b *pier.Build) error {
	for t := range b.ProcessTypes {
		if err := pier.ValidateProcessType(t); err != nil {
			return err
		}
	}
	if b.Strategy == pier.StrategyImage {
		if err := pier.ValidateImage(b.Image); err != nil {
			return err
		}
	}
	switch b.Status {
	case "":
		b.Status = pier.BuildPending
	case pier.BuildPending, pier.BuildSucceeded, pier.BuildFailed:
	default:
		return pier.Errorf(pier.EINVALID, "build status %q is invalid: use %s, %s or %s", clip(b.Status), pier.BuildPending, pier.BuildSucceeded, pier.BuildFailed)
	}
	if len(b.Log) > pier.BuildLogMax {
		return pier.Errorf(pier.ETOOLARGE, "the log of the build is %d bytes: at most %d", len(b.Log), pier.BuildLogMax)
	}
	types := b.ProcessTypes
	if types == nil {
		types = map[string]string{} // JSON null is not a set of types
	}
	b.Log = textColumn(b.Log)
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var appID int64
		err := tx.QueryRow(ctx,
			`INSERT INTO builds (app_id, commit_sha, strategy, image, process_types, status, created_by, log)
			 SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM apps WHERE name = $1
			 RETURNING app_id, id, created_at`,
			b.App, b.Commit, b.Strategy, b.Image, types, b.Status, b.CreatedBy, b.Log).Scan(&appID, &b.ID, &b.CreatedAt)
		if isNoRows(err) {
			return appNotFound(b.App)
		}
		if err != nil {
			return wrap(err, "create build of %s", b.App)
		}
		return recordEvent(ctx, tx, appID, b.App, b.CreatedBy, "build.create", buildName(b))
	})
}

// buildName is how notes and events name a build: by its commit if known,
// by the end of its image reference for an image build.
func buildName(b *pier.Build) string {
	if b.Commit == "" && b.Strategy == pier.StrategyImage && b.Image != "" {
		return shortImage(b.Image)
	}
	if b.Commit == "" {
		return fmt.Sprintf("build %d", b.ID)
	}
	c := b.Commit
	if len(c) > 7 {
		c = c[:7]
	}
	return c
}

// shortImage names an image by the last component of its path, its tag,
// and the start of its digest: "nginx:1.27", "app@sha256:0123456789ab".
func shortImage(ref string) string {
	name, digest, hasDigest := strings.Cut(ref, "@")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if hasDigest {
		if len(digest) > len("sha256:")+12 {
			digest = digest[:len("sha256:")+12]
		}
		name += "@" + digest
	}
	return name
}

// textColumn makes s storable in a text column: build output may hold
// invalid UTF-8 and NUL bytes, which Postgres refuses.
func textColumn(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// FindBuild returns one build of the app, with its log.
func (db *DB) FindBuild(ctx context.Context, app string, id int64) (*pier.Build, error) {
	var log string
	b, err := scanBuild(db.pool.QueryRow(ctx,
		`SELECT `+buildColumns+`, b.log FROM builds b JOIN apps a ON a.id = b.app_id
		 WHERE a.name = $1 AND b.id = $2`, app, id), app, &log)
	if err == nil {
		b.Log = log
	}
	if isNoRows(err) {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
		return nil, buildNotFound(app, id)
	}
	return b, wrap(err, "find build %d of %s", id, app)
}

// ListBuilds lists the app's builds, newest first, without their logs; the
// cursor is the ID of the last build of the previous page.
func (db *DB) ListBuilds(ctx context.Context, app string, p pier.Page) ([]pier.Build, string, error) {
	p = p.Normalized()
	after, err := idCursor(p.After)
	if err != nil {
		return nil, "", err
	}
	rows, err := db.pool.Query(ctx,
		`SELECT `+buildColumns+` FROM builds b
		 WHERE b.app_id = (SELECT id FROM apps WHERE name = $1) AND ($2::bigint = 0 OR b.id < $2::bigint)
		 ORDER BY b.id DESC
		 LIMIT $3`, app, after, p.Limit+1)
	if err != nil {
		return nil, "", wrap(err, "list builds of %s", app)
	}
	builds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.Build, error) {
		b, err := scanBuild(row, app)
		if err != nil {
			return pier.Build{}, err
		}
		return *b, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list builds of %s", app)
	}
	if len(builds) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, "", err
		}
	}
	builds, next := cutPage(builds, p.Limit, func(b pier.Build) string { return strconv.FormatInt(b.ID, 10) })
	return builds, next, nil
}

func buildNotFound(app string, id int64) error {
	return pier.Errorf(pier.ENOTFOUND, "build %d of app %q not found", id, app)
}

// Deploy adds a release that runs the build with the current config. The
// reconciler calls it once the build's processes serve, so the release is
// succeeded from the start. The app's first deployed build that defines
// "web" scales web to 1 if it was 0, so that a first push serves something.
func (db *DB) Deploy(ctx context.Context, app string, buildID int64, actor string) (*pier.Release, error) {
	return db.deploy(ctx, app, buildID, actor, "")
}

// DeployFailed adds a failed release of a succeeded build whose processes
// did not come up, with the reason and the event "release.fail". The
// current release stays current; the formation is not touched.
func (db *DB) DeployFailed(ctx context.Context, app string, buildID int64, reason, actor string) (*pier.Release, error) {
	if reason == "" {
		reason = "its processes did not come up"
	}
	if len(reason) > pier.ReleaseFailureMax {
		reason = reason[:pier.ReleaseFailureMax] + "…"
	}
	return db.deploy(ctx, app, buildID, actor, reason)
}

// deploy adds a release of the build: succeeded, or failed with failure.
func (db *DB) deploy(ctx context.Context, app string, buildID int64, actor, failure string) (*pier.Release, error) {
	var rel *pier.Release
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		id, version, err := nextVersion(ctx, tx, app)
		if err != nil {
			return err
		}
		var b *pier.Build
		var deployedBefore bool
		b, err = scanBuild(tx.QueryRow(ctx,
			`SELECT `+buildColumns+`,
				EXISTS (SELECT 1 FROM releases WHERE app_id = $1 AND build_id IS NOT NULL)
			 FROM builds b WHERE b.app_id = $1 AND b.id = $2`, id, buildID), app, &deployedBefore)
		if isNoRows(err) {
			return buildNotFound(app, buildID)
		}
		if err != nil {
			return wrap(err, "find build %d of %s", buildID, app)
		}
		if b.Status != pier.BuildSucceeded {
			return pier.Errorf(pier.EINVALID, "build %d of app %q is %s: only a succeeded build can be deployed", buildID, app, b.Status)
		}
		cur, err := currentVersion(ctx, tx, id, app)
		if err != nil {
			return err
		}
		_, cfg, err := releaseBuildAndConfig(ctx, tx, id, app, cur)
		if err != nil {
			return err
		}
		n := newRelease{
			appID: id, app: app, version: version, buildID: &b.ID, config: cfg,
			note: "Deploy " + buildName(b), actor: actor, action: "release.deploy",
			status: pier.ReleaseSucceeded,
		}
		if failure != "" {
			n.status, n.failure, n.action = pier.ReleaseFailed, failure, "release.fail"
			n.detail = fmt.Sprintf("release v%d (%s) failed: %s; v%d stays current", version, n.note, firstLine(failure), cur)
		}
		rel, err = n.add(ctx, tx)
		if err != nil || deployedBefore || failure != "" {
			return err
		}
		if _, ok := b.ProcessTypes["web"]; !ok {
			return nil
		}
		tag, err := tx.Exec(ctx,
			`INSERT INTO formations (app_id, process_type, quantity) VALUES ($1, 'web', 1)
			 ON CONFLICT (app_id, process_type) DO UPDATE SET quantity = 1, updated_at = now()
			 WHERE formations.quantity = 0`, id)
		if err != nil {
			return wrap(err, "scale web of %s", app)
		}
		if tag.RowsAffected() == 0 {
			return nil // scaled before the first build: the owner's choice stands
		}
		return recordEvent(ctx, tx, id, app, actor, "formation.scale", pier.Formation{"web": 1}.String())
	})
	if err != nil {
		return nil, err
	}
	return rel, nil
}
