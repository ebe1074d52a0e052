package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// Default range of app uids: 65,536 uids above those any distribution hands
// out to people and services (pierd --app-uids).
const (
	DefaultAppUIDLow  = 100000
	DefaultAppUIDHigh = 165535
)

// SetAppUIDs sets the inclusive range CreateApp allocates app uids from.
// Apps that exist keep theirs, even outside it. Call it before serving.
func (db *DB) SetAppUIDs(lo, hi int) error {
	if lo < 1000 || lo > hi {
		return fmt.Errorf("app uid range %d-%d is invalid: it must be LO-HI with 1000 <= LO <= HI (uids below 1000 belong to the system)", lo, hi)
	}
	db.uidLo, db.uidHi = lo, hi
	return nil
}

// allocUID takes the next free uid of the range for a new app, in tx: the
// counter's row stays locked until tx ends, so concurrent creations queue.
// It starts after the last uid handed out, so a destroyed app's uid comes
// back only once the counter has gone round the whole range; the UNIQUE
// column keeps it from ever being one an existing app holds.
func (db *DB) allocUID(ctx context.Context, tx pgx.Tx) (int, error) {
	var next int
	if err := tx.QueryRow(ctx, `SELECT next FROM app_uid_counter FOR UPDATE`).Scan(&next); err != nil {
		return 0, wrap(err, "read the app uid counter")
	}
	lo, hi := db.uidLo, db.uidHi
	if next < lo || next > hi {
		next = lo
	}
	uid, err := freeUID(ctx, tx, next, hi)
	if err == nil && uid == 0 && next > lo {
		uid, err = freeUID(ctx, tx, lo, next-1)
	}
	if err != nil {
		return 0, wrap(err, "find a free app uid")
	}
	if uid == 0 {
		return 0, pier.Errorf(pier.EUNAVAILABLE, "no free app uid in %d-%d: widen --app-uids, or destroy an app", lo, hi)
	}
	if _, err := tx.Exec(ctx, `UPDATE app_uid_counter SET next = $1`, uid+1); err != nil {
		return 0, wrap(err, "advance the app uid counter")
	}
	return uid, nil
}

// freeUID is the lowest uid in from..to no app holds, 0 if none. It looks at
// from itself, then just above each uid in use: through the index, not by
// walking the range.
func freeUID(ctx context.Context, tx pgx.Tx, from, to int) (int, error) {
	var uid *int
	err := tx.QueryRow(ctx,
		`SELECT min(c) FROM (
			SELECT $1::integer AS c WHERE NOT EXISTS (SELECT 1 FROM apps WHERE uid = $1::integer)
			UNION ALL
			SELECT a.uid + 1 FROM apps a
			WHERE a.uid >= $1::integer AND a.uid < $2::integer
			  AND NOT EXISTS (SELECT 1 FROM apps b WHERE b.uid = a.uid + 1)
		) free`, from, to).Scan(&uid)
	if err != nil || uid == nil {
		return 0, err
	}
	return *uid, nil
}
