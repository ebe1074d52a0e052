package postgres

import (
	"context"
	"time"
)

// LoginFailures returns how many logins as username failed in a row, and
// when the last one did.
func (db *DB) LoginFailures(ctx context.Context, username string) (int, time.Time, error) {
	var n int
	var last time.Time
	err := db.pool.QueryRow(ctx,
		`SELECT failures, last_failed FROM login_failures WHERE username = $1`, username).Scan(&n, &last)
	if isNoRows(err) {
		return 0, time.Time{}, nil
	}
	return n, last, wrap(err, "read login failures")
}

// RecordLoginFailure counts one more failed login. Unknown usernames are
// counted too (not to reveal which exist); rows a day old are deleted along
// the way, so guessing names cannot grow the table without bound.
func (db *DB) RecordLoginFailure(ctx context.Context, username string) error {
	_, err := db.pool.Exec(ctx,
		`WITH old AS (
			DELETE FROM login_failures WHERE last_failed < now() - interval '1 day' AND username <> $1
		 )
		 INSERT INTO login_failures (username, failures, last_failed) VALUES ($1, 1, now())
		 ON CONFLICT (username) DO UPDATE
		 SET failures = login_failures.failures + 1, last_failed = now()`, username)
	return wrap(err, "record login failure")
}

// ClearLoginFailures forgets the failures after a successful login.
func (db *DB) ClearLoginFailures(ctx context.Context, username string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM login_failures WHERE username = $1`, username)
	return wrap(err, "clear login failures")
}
