package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// AddKey adds k to k.Username's keys and sets its ID and creation time.
// ECONFLICT if its fingerprint is anyone's key, or its name one of the
// user's.
func (db *DB) AddKey(ctx context.Context, k *pier.Key) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO keys (user_id, name, fingerprint, public_key)
			 SELECT id, $2, $3, $4 FROM users WHERE username = $1
			 RETURNING id, created_at`,
			k.Username, k.Name, k.Fingerprint, k.PublicKey).Scan(&k.ID, &k.CreatedAt)
		if isNoRows(err) {
			return userNotFound(k.Username)
		}
		if isUnique(err) {
			return pier.Errorf(pier.ECONFLICT, "key %s (or a key named %q) is already registered", k.Fingerprint, k.Name)
		}
		if err != nil {
			return wrap(err, "add key of %s", k.Username)
		}
		return recordEvent(ctx, tx, 0, "", k.Username, "key.add", k.Name+" "+k.Fingerprint)
	})
}

const keyColumns = `k.id, u.username, k.name, k.fingerprint, k.public_key, k.created_at`

func scanKey(row pgx.Row) (pier.Key, error) {
	var k pier.Key
	err := row.Scan(&k.ID, &k.Username, &k.Name, &k.Fingerprint, &k.PublicKey, &k.CreatedAt)
	return k, err
}

// ListKeys lists username's keys, oldest first.
func (db *DB) ListKeys(ctx context.Context, username string) ([]pier.Key, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT `+keyColumns+` FROM keys k JOIN users u ON u.id = k.user_id
		 WHERE u.username = $1 ORDER BY k.id`, username)
	if err != nil {
		return nil, wrap(err, "list keys of %s", username)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.Key, error) { return scanKey(row) })
	return keys, wrap(err, "list keys of %s", username)
}

// RemoveKey removes one of username's keys, named by name or fingerprint.
// Another user's key is not found, whether or not it exists.
func (db *DB) RemoveKey(ctx context.Context, username, nameOrFingerprint string) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var name, fingerprint string
		// A name could equal another key's fingerprint: remove one key only,
		// preferring the fingerprint, which is what identifies a key.
		err := tx.QueryRow(ctx,
			`DELETE FROM keys WHERE id = (
				SELECT k.id FROM keys k JOIN users u ON u.id = k.user_id
				WHERE u.username = $1 AND (k.fingerprint = $2 OR k.name = $2)
				ORDER BY k.fingerprint = $2 DESC LIMIT 1
			 ) RETURNING name, fingerprint`, username, nameOrFingerprint).Scan(&name, &fingerprint)
		if isNoRows(err) {
			return pier.Errorf(pier.ENOTFOUND, "key %q not found: see `pier keys`", clip(nameOrFingerprint))
		}
		if err != nil {
			return wrap(err, "remove key of %s", username)
		}
		return recordEvent(ctx, tx, 0, "", username, "key.remove", name+" "+fingerprint)
	})
}

// UserForKey returns the user whose key has this fingerprint.
func (db *DB) UserForKey(ctx context.Context, fingerprint string) (*pier.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+` FROM keys k JOIN users u ON u.id = k.user_id WHERE k.fingerprint = $1`,
		fingerprint))
	if isNoRows(err) {
		return nil, pier.Errorf(pier.ENOTFOUND, "no user has the key %s: add it with `pier keys:add`", clip(fingerprint))
	}
	return u, wrap(err, "find user of key")
}

// clip shortens untrusted input before it is echoed in a message.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
