package postgres

import (
	"context"
	"time"

	"github.com/pierpaas/pier"
)

func sessionEnded() error {
	return pier.Errorf(pier.EUNAUTHORIZED, "your session has ended: log in again with `pier login`")
}

// UserForSession returns the session's user, in one round trip that also
// checks the token ID against the revoked ones.
func (db *DB) UserForSession(ctx context.Context, userID int64, jti string) (*pier.User, error) {
	var revoked bool
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+`, EXISTS (SELECT 1 FROM revoked_sessions WHERE jti = $2)
		 FROM users u WHERE u.id = $1`, userID, jti), &revoked)
	if isNoRows(err) {
		return nil, sessionEnded()
	}
	if err != nil {
		return nil, wrap(err, "find session user %d", userID)
	}
	if revoked {
		return nil, sessionEnded()
	}
	return u, nil
}

// RevokeSession lists jti as revoked until expiresAt, after which the token
// is refused for its age anyway. Rows past that are no longer needed and
// are deleted along the way, so the table stays as small as the number of
// live sessions that logged out.
func (db *DB) RevokeSession(ctx context.Context, jti string, expiresAt time.Time) error {
	_, err := db.pool.Exec(ctx,
		`WITH expired AS (
			DELETE FROM revoked_sessions WHERE expires_at < now() AND jti <> $1
		 )
		 INSERT INTO revoked_sessions (jti, expires_at) VALUES ($1, $2)
		 ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(revoked_sessions.expires_at, excluded.expires_at)`,
		jti, expiresAt)
	return wrap(err, "revoke session")
}
