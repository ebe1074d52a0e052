package postgres

import (
	"context"
)

// InitSetting stores value under key unless the key is set, and returns the
// stored value, in one statement so that concurrent starts agree on it.
func (db *DB) InitSetting(ctx context.Context, key, value string) (string, error) {
	var stored string
	// The no-op update makes RETURNING give the existing row on a conflict.
	err := db.pool.QueryRow(ctx,
		`INSERT INTO settings (key, value) VALUES ($1, $2)
		 ON CONFLICT (key) DO UPDATE SET value = settings.value
		 RETURNING value`, key, value).Scan(&stored)
	return stored, wrap(err, "init setting %s", key)
}

func (db *DB) GetSetting(ctx context.Context, key string) (string, bool, error) {
	var value string
	err := db.pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&value)
	if isNoRows(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, wrap(err, "get setting %s", key)
	}
	return value, true, nil
}

func (db *DB) SetSetting(ctx context.Context, key, value string) error {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO settings (key, value) VALUES ($1, $2)
		 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()`, key, value)
	return wrap(err, "set setting %s", key)
}

func (db *DB) DeleteSetting(ctx context.Context, key string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM settings WHERE key = $1`, key)
	return wrap(err, "delete setting %s", key)
}
