package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

const appColumns = `a.id, a.name, o.username, a.uid, a.created_at, a.updated_at`

func scanApp(row pgx.Row, extra ...any) (*pier.App, error) {
	var a pier.App
	if err := row.Scan(append([]any{&a.ID, &a.Name, &a.Owner, &a.UID, &a.CreatedAt, &a.UpdatedAt}, extra...)...); err != nil {
		return nil, err
	}
	return &a, nil
}

// CreateApp creates app, owned by actor, with actor as its owner member and
// its release v1 "Initial release", all in one transaction. It sets app's
// ID, owner, uid (the next free one of the range, see SetAppUIDs) and times.
func (db *DB) CreateApp(ctx context.Context, app *pier.App, actor string) (*pier.Release, error) {
	if err := pier.ValidateAppName(app.Name); err != nil {
		return nil, err
	}
	var rel *pier.Release
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		uid, err := db.allocUID(ctx, tx) // appuids.go
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx,
			`INSERT INTO apps (name, owner_id, last_version, uid)
			 SELECT $1, id, 1, $3 FROM users WHERE username = $2
			 RETURNING id, created_at, updated_at`, app.Name, actor, uid).Scan(&app.ID, &app.CreatedAt, &app.UpdatedAt)
		if isNoRows(err) {
			return userNotFound(actor)
		}
		if isUnique(err) {
			return pier.Errorf(pier.ECONFLICT, "app %q already exists: choose another name", app.Name)
		}
		if err != nil {
			return wrap(err, "create app %s", app.Name)
		}
		app.Owner, app.UID = actor, uid
		_, err = tx.Exec(ctx,
			`INSERT INTO members (app_id, user_id, role) SELECT id, owner_id, 'owner' FROM apps WHERE id = $1`, app.ID)
		if err != nil {
			return wrap(err, "add owner of %s", app.Name)
		}
		rel, err = newRelease{
			appID: app.ID, app: app.Name, version: 1, note: "Initial release", actor: actor,
			action: "app.create", status: pier.ReleaseSucceeded, // nothing to run: never fails
		}.add(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rel, nil
}

// AppAccess returns the app and username's role in it ("" if none), in one
// query: it runs before almost every request.
func (db *DB) AppAccess(ctx context.Context, name, username string) (*pier.App, string, error) {
	var role string
	a, err := scanApp(db.pool.QueryRow(ctx,
		`SELECT `+appColumns+`, coalesce(m.role, '')
		 FROM apps a
		 JOIN users o ON o.id = a.owner_id
		 LEFT JOIN members m ON m.app_id = a.id AND m.user_id = (SELECT id FROM users WHERE username = $2)
		 WHERE a.name = $1`, name, username), &role)
	if isNoRows(err) {
		return nil, "", appNotFound(name)
	}
	if err != nil {
		return nil, "", wrap(err, "find app %s", name)
	}
	return a, role, nil
}

// ListApps lists the apps viewer may see (all of them for an admin, else
// those viewer is a member of) by name; the cursor is the last name.
func (db *DB) ListApps(ctx context.Context, viewer *pier.User, p pier.Page) ([]pier.App, string, error) {
	if viewer == nil {
		return nil, "", pier.Errorf(pier.EUNAUTHORIZED, "log in to list apps")
	}
	p = p.Normalized()
	after, err := nameCursor(p.After)
	if err != nil {
		return nil, "", err
	}
	rows, err := db.pool.Query(ctx,
		`SELECT `+appColumns+`
		 FROM apps a JOIN users o ON o.id = a.owner_id
		 WHERE a.name > $1 AND ($2 OR EXISTS (
			SELECT 1 FROM members m JOIN users u ON u.id = m.user_id
			WHERE m.app_id = a.id AND u.username = $3))
		 ORDER BY a.name
		 LIMIT $4`, after, viewer.Admin, viewer.Username, p.Limit+1)
	if err != nil {
		return nil, "", wrap(err, "list apps")
	}
	apps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.App, error) {
		a, err := scanApp(row)
		if err != nil {
			return pier.App{}, err
		}
		return *a, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list apps")
	}
	apps, next := cutPage(apps, p.Limit, func(a pier.App) string { return a.Name })
	return apps, next, nil
}

// DestroyApp deletes the app and, by cascade, everything that is its own.
// Its events stay, still naming it.
func (db *DB) DestroyApp(ctx context.Context, name, actor string) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM apps WHERE name = $1`, name)
		if err != nil {
			return wrap(err, "destroy app %s", name)
		}
		if tag.RowsAffected() == 0 {
			return appNotFound(name)
		}
		return recordEvent(ctx, tx, 0, name, actor, "app.destroy", "")
	})
}
