package postgres

import (
	"context"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier"
)

// Formation returns how many processes of each type the app should run.
func (db *DB) Formation(ctx context.Context, app string) (pier.Formation, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT process_type, quantity FROM formations WHERE app_id = (SELECT id FROM apps WHERE name = $1)`, app)
	f, err := collectFormation(rows, err)
	if err != nil {
		return nil, wrap(err, "read formation of %s", app)
	}
	if len(f) == 0 {
		if err := appMissing(ctx, db.pool, app); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// collectFormation reads the rows of a formation query.
func collectFormation(rows pgx.Rows, err error) (pier.Formation, error) {
	if err != nil {
		return nil, err
	}
	f := pier.Formation{}
	var t string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&t, &n}, func() error {
		f[t] = n
		return nil
	})
	return f, err
}

// Scale sets the given quantities and returns the whole formation. Once the
// current release has a build, only the process types it defines can be
// scaled; before that, any type may be, for the first deploy to use.
func (db *DB) Scale(ctx context.Context, app string, f pier.Formation, actor string) (pier.Formation, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var whole pier.Formation
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// Locked so that a concurrent deploy cannot change the build between
		// the check and the write.
		id, err := appID(ctx, tx, app, noKeyUpdate)
		if err != nil {
			return err
		}
		if err := checkCurrentTypes(ctx, tx, id, app, sortedKeys(f)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO formations (app_id, process_type, quantity)
			 SELECT $1, key, value::integer FROM jsonb_each_text($2::jsonb)
			 ON CONFLICT (app_id, process_type) DO UPDATE SET quantity = excluded.quantity, updated_at = now()`,
			id, f)
		if err != nil {
			return wrap(err, "scale %s", app)
		}
		if err := recordEvent(ctx, tx, id, app, actor, "formation.scale", f.String()); err != nil {
			return err
		}
		whole, err = collectFormation(tx.Query(ctx,
			`SELECT process_type, quantity FROM formations WHERE app_id = $1`, id))
		return wrap(err, "read formation of %s", app)
	})
	if err != nil {
		return nil, err
	}
	return whole, nil
}

// checkCurrentTypes refuses process types the build of the app's current
// release does not define; before the first build, any type goes. The
// caller holds the app's row lock, so that a deploy cannot change the
// build between the check and the write.
func checkCurrentTypes(ctx context.Context, tx pgx.Tx, appID int64, app string, asked []string) error {
	var types map[string]string
	err := tx.QueryRow(ctx,
		`SELECT b.process_types FROM releases r JOIN builds b ON b.id = r.build_id
		 WHERE r.app_id = $1 AND r.version = (`+currentVersionSQL+`)`, appID).Scan(&types)
	switch {
	case isNoRows(err): // no build yet: any type
		return nil
	case err != nil:
		return wrap(err, "read process types of %s", app)
	}
	return checkProcessTypes(asked, types)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkProcessTypes refuses the first of the asked types (sorted) the build
// does not define, naming those it does.
func checkProcessTypes(asked []string, defined map[string]string) error {
	for _, t := range asked {
		if _, ok := defined[t]; ok {
			continue
		}
		known := make([]string, 0, len(defined))
		for d := range defined {
			known = append(known, d)
		}
		if len(known) == 0 {
			return pier.Errorf(pier.EINVALID, "unknown process type %q: this app's build defines no process types", t)
		}
		sort.Strings(known)
		return pier.Errorf(pier.EINVALID, "unknown process type %q: this app defines %s", t, strings.Join(known, ", "))
	}
	return nil
}
