package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

var _ pier.ServiceTokenStore = (*DB)(nil)

const serviceTokenColumns = `id, scope, description, prefix, created_by, created_at, last_used_at`

func scanServiceToken(row pgx.Row) (*pier.ServiceToken, error) {
	var t pier.ServiceToken
	err := row.Scan(&t.ID, &t.Scope, &t.Description, &t.Prefix, &t.CreatedBy, &t.CreatedAt, &t.LastUsedAt)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateServiceToken stores a component's token by its hash, and records
// who made it. The token itself goes nowhere.
func (db *DB) CreateServiceToken(ctx context.Context, t *pier.ServiceToken, hash string) error {
	if err := pier.ValidateScope(t.Scope); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO service_tokens (scope, description, prefix, hash, created_by)
			 VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`,
			t.Scope, t.Description, t.Prefix, hash, t.CreatedBy).Scan(&t.ID, &t.CreatedAt)
		if isUnique(err) {
			return pier.Errorf(pier.ECONFLICT, "this service token exists already: create another")
		}
		if err != nil {
			return wrap(err, "create a service token")
		}
		return recordEvent(ctx, tx, 0, "", t.CreatedBy, "service-token.create", serviceTokenDetail(t.ID, t.Scope, t.Description))
	})
}

func serviceTokenDetail(id int64, scope, description string) string {
	return fmt.Sprintf("service token %d, scope %s (%s)", id, scope, description)
}

// ListServiceTokens lists every service token, oldest first.
func (db *DB) ListServiceTokens(ctx context.Context) ([]pier.ServiceToken, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+serviceTokenColumns+` FROM service_tokens ORDER BY id`)
	if err != nil {
		return nil, wrap(err, "list service tokens")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.ServiceToken, error) {
		t, err := scanServiceToken(row)
		if err != nil {
			return pier.ServiceToken{}, err
		}
		return *t, nil
	})
	if err != nil {
		return nil, wrap(err, "list service tokens")
	}
	if out == nil {
		out = []pier.ServiceToken{}
	}
	return out, nil
}

// RevokeServiceToken deletes a service token: the component using it is
// refused from its next request on (a router's open feed is cut within a
// heartbeat; see controller.RouterFeed).
func (db *DB) RevokeServiceToken(ctx context.Context, id int64, actor string) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var scope, description string
		err := tx.QueryRow(ctx, `DELETE FROM service_tokens WHERE id = $1 RETURNING scope, description`, id).Scan(&scope, &description)
		if isNoRows(err) {
			return pier.Errorf(pier.ENOTFOUND, "service token %d not found: see `pier service-tokens`", id)
		}
		if err != nil {
			return wrap(err, "revoke service token %d", id)
		}
		return recordEvent(ctx, tx, 0, "", actor, "service-token.revoke", serviceTokenDetail(id, scope, description))
	})
}

// ServiceTokenByHash returns the live token with that hash and records its
// use, at most once a minute per token.
func (db *DB) ServiceTokenByHash(ctx context.Context, hash string) (*pier.ServiceToken, error) {
	t, err := scanServiceToken(db.pool.QueryRow(ctx,
		`WITH t AS (SELECT `+serviceTokenColumns+` FROM service_tokens WHERE hash = $1),
		 used AS (
			UPDATE service_tokens SET last_used_at = now()
			WHERE id = (SELECT id FROM t WHERE last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
		 )
		 SELECT `+serviceTokenColumns+` FROM t`, hash))
	if isNoRows(err) {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the service token is unknown or revoked: create one with `pier service-tokens:create --scope SCOPE`")
	}
	if err != nil {
		return nil, wrap(err, "find service token")
	}
	return t, nil
}
