package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// ListMembers lists the app's members, its owner first.
func (db *DB) ListMembers(ctx context.Context, app string) ([]pier.Member, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT u.username, m.role FROM members m JOIN users u ON u.id = m.user_id
		 WHERE m.app_id = (SELECT id FROM apps WHERE name = $1)
		 ORDER BY m.role = 'owner' DESC, u.username`, app)
	if err != nil {
		return nil, wrap(err, "list members of %s", app)
	}
	members, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pier.Member])
	if err != nil {
		return nil, wrap(err, "list members of %s", app)
	}
	if len(members) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
	}
	return members, nil
}

// AddMember makes username a collaborator on app.
func (db *DB) AddMember(ctx context.Context, app, username, actor string) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, keyShare)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx,
			`INSERT INTO members (app_id, user_id, role)
			 SELECT $1, id, 'collaborator' FROM users WHERE username = $2`, id, username)
		if isUnique(err) {
			return pier.Errorf(pier.ECONFLICT, "%q is already a member of app %q", username, app)
		}
		if err != nil {
			return wrap(err, "add member to %s", app)
		}
		if tag.RowsAffected() == 0 {
			return userNotFound(username)
		}
		return recordEvent(ctx, tx, id, app, actor, "member.add", username)
	})
}

// RemoveMember takes username's access to app away; the owner's cannot be.
func (db *DB) RemoveMember(ctx context.Context, app, username, actor string) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		id, err := appID(ctx, tx, app, keyShare)
		if err != nil {
			return err
		}
		var role string
		err = tx.QueryRow(ctx,
			`DELETE FROM members m USING users u
			 WHERE m.app_id = $1 AND m.user_id = u.id AND u.username = $2
			 RETURNING m.role`, id, username).Scan(&role)
		if isNoRows(err) {
			return pier.Errorf(pier.ENOTFOUND, "%q is not a member of app %q", username, app)
		}
		if err != nil {
			return wrap(err, "remove member of %s", app)
		}
		if role == pier.RoleOwner {
			// Returning an error rolls the deletion back.
			return pier.Errorf(pier.EINVALID, "%q owns app %q: the owner cannot be removed", username, app)
		}
		return recordEvent(ctx, tx, id, app, actor, "member.remove", username)
	})
}
