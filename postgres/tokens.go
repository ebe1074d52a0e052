package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// CreateAPIToken stores a new token of t.Username by its hash and sets t's
// ID and creation time.
func (db *DB) CreateAPIToken(ctx context.Context, t *pier.APIToken, hash string) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO api_tokens (user_id, hash, description, prefix, expires_at)
			 SELECT id, $2, $3, $4, $5 FROM users WHERE username = $1
			 RETURNING id, created_at`,
			t.Username, hash, t.Description, t.Prefix, t.ExpiresAt).Scan(&t.ID, &t.CreatedAt)
		if isNoRows(err) {
			return userNotFound(t.Username)
		}
		if isUnique(err) {
			return pier.Errorf(pier.ECONFLICT, "this API token exists already: create another")
		}
		if err != nil {
			return wrap(err, "create API token of %s", t.Username)
		}
		return recordEvent(ctx, tx, 0, "", t.Username, "token.create", tokenDetail(t.ID, t.Description))
	})
}

func tokenDetail(id int64, description string) string {
	return fmt.Sprintf("token %d (%s)", id, description)
}

// ListAPITokens lists username's tokens, oldest first.
func (db *DB) ListAPITokens(ctx context.Context, username string) ([]pier.APIToken, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT t.id, u.username, t.description, t.prefix, t.created_at, t.expires_at, t.last_used_at
		 FROM api_tokens t JOIN users u ON u.id = t.user_id
		 WHERE u.username = $1 ORDER BY t.id`, username)
	if err != nil {
		return nil, wrap(err, "list API tokens of %s", username)
	}
	tokens, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.APIToken, error) {
		var t pier.APIToken
		err := row.Scan(&t.ID, &t.Username, &t.Description, &t.Prefix, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt)
		return t, err
	})
	return tokens, wrap(err, "list API tokens of %s", username)
}

// RevokeAPIToken deletes one of username's tokens; another user's token is
// not found, whether or not it exists.
func (db *DB) RevokeAPIToken(ctx context.Context, username string, id int64) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var description string
		err := tx.QueryRow(ctx,
			`DELETE FROM api_tokens
			 WHERE id = $2 AND user_id = (SELECT id FROM users WHERE username = $1)
			 RETURNING description`, username, id).Scan(&description)
		if isNoRows(err) {
			return pier.Errorf(pier.ENOTFOUND, "API token %d not found: see `pier tokens`", id)
		}
		if err != nil {
			return wrap(err, "revoke API token %d", id)
		}
		return recordEvent(ctx, tx, 0, "", username, "token.revoke", tokenDetail(id, description))
	})
}

// UserForAPIToken returns the owner of the live token with that hash and
// records its use. The use is written at most once a minute per token, so
// that a burst of CI requests does not queue on one row lock.
func (db *DB) UserForAPIToken(ctx context.Context, hash string) (*pier.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx,
		`WITH t AS (
			SELECT id, user_id, last_used_at FROM api_tokens
			WHERE hash = $1 AND (expires_at IS NULL OR expires_at > now())
		 ), used AS (
			UPDATE api_tokens SET last_used_at = now()
			WHERE id = (SELECT id FROM t WHERE last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
		 )
		 SELECT `+userColumns+` FROM t JOIN users u ON u.id = t.user_id`, hash))
	if isNoRows(err) {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the API token is unknown, revoked or expired: create one with `pier tokens:create`")
	}
	return u, wrap(err, "find API token user")
}
