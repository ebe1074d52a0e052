package postgres

import (
	"context"
	"crypto/subtle"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// settingBootstrapHash is the setting that holds the hash of the one-time
// token that registering the first user needs (the controller writes it).
const settingBootstrapHash = "bootstrap_token_hash"

const userColumns = `u.id, u.username, u.email, u.admin, u.created_at`

func scanUser(row pgx.Row, extra ...any) (*pier.User, error) {
	var u pier.User
	err := row.Scan(append([]any{&u.ID, &u.Username, &u.Email, &u.Admin, &u.CreatedAt}, extra...)...)
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// RegisterFirstUser creates u as the first user, an admin, if bootstrapHash
// is the stored bootstrap token hash, and deletes that hash: the token works
// once. The setting row is locked for the transaction, so of two concurrent
// registrations the second finds the row gone.
func (db *DB) RegisterFirstUser(ctx context.Context, u *pier.User, passwordHash, bootstrapHash string) error {
	forbidden := pier.Errorf(pier.EFORBIDDEN, "the bootstrap token is wrong or already used")
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var stored string
		var hasUsers bool
		err := tx.QueryRow(ctx,
			`SELECT value, EXISTS (SELECT 1 FROM users) FROM settings WHERE key = $1 FOR UPDATE`,
			settingBootstrapHash).Scan(&stored, &hasUsers)
		if isNoRows(err) {
			return forbidden
		}
		if err != nil {
			return wrap(err, "read bootstrap token hash")
		}
		if hasUsers || bootstrapHash == "" || subtle.ConstantTimeCompare([]byte(stored), []byte(bootstrapHash)) != 1 {
			return forbidden
		}
		err = tx.QueryRow(ctx,
			`INSERT INTO users (username, email, password_hash, admin) VALUES ($1, $2, $3, true)
			 RETURNING id, created_at`, u.Username, u.Email, passwordHash).Scan(&u.ID, &u.CreatedAt)
		if isUnique(err) {
			return forbidden
		}
		if err != nil {
			return wrap(err, "create first user")
		}
		u.Admin = true
		_, err = tx.Exec(ctx, `DELETE FROM settings WHERE key = $1`, settingBootstrapHash)
		return wrap(err, "delete bootstrap token hash")
	})
}

// CreateUser creates u (an admin if u.Admin). ECONFLICT if the name is taken.
func (db *DB) CreateUser(ctx context.Context, u *pier.User, passwordHash string) error {
	err := db.pool.QueryRow(ctx,
		`INSERT INTO users (username, email, password_hash, admin) VALUES ($1, $2, $3, $4)
		 RETURNING id, created_at`, u.Username, u.Email, passwordHash, u.Admin).Scan(&u.ID, &u.CreatedAt)
	if isUnique(err) {
		return pier.Errorf(pier.ECONFLICT, "username %q is taken: choose another", u.Username)
	}
	return wrap(err, "create user %s", u.Username)
}

func (db *DB) HasUsers(ctx context.Context) (bool, error) {
	var has bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users)`).Scan(&has)
	return has, wrap(err, "check for users")
}

func (db *DB) FindUser(ctx context.Context, username string) (*pier.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+` FROM users u WHERE u.username = $1`, username))
	if isNoRows(err) {
		return nil, userNotFound(username)
	}
	return u, wrap(err, "find user %s", username)
}

func (db *DB) UserPassword(ctx context.Context, username string) (*pier.User, string, error) {
	var hash string
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+`, u.password_hash FROM users u WHERE u.username = $1`, username), &hash)
	if isNoRows(err) {
		return nil, "", userNotFound(username)
	}
	if err != nil {
		return nil, "", wrap(err, "find user %s", username)
	}
	return u, hash, nil
}

// ListUsers lists users by username; the cursor is the last username.
func (db *DB) ListUsers(ctx context.Context, p pier.Page) ([]pier.User, string, error) {
	p = p.Normalized()
	after, err := nameCursor(p.After)
	if err != nil {
		return nil, "", err
	}
	rows, err := db.pool.Query(ctx,
		`SELECT `+userColumns+` FROM users u WHERE u.username > $1 ORDER BY u.username LIMIT $2`,
		after, p.Limit+1)
	if err != nil {
		return nil, "", wrap(err, "list users")
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pier.User, error) {
		u, err := scanUser(row)
		if err != nil {
			return pier.User{}, err
		}
		return *u, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list users")
	}
	users, next := cutPage(users, p.Limit, func(u pier.User) string { return u.Username })
	return users, next, nil
}
