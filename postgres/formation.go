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
		var types map[string]string
		err = tx.QueryRow(ctx,
			`SELECT b.process_types
			 FROM apps a
			 JOIN releases r ON r.app_id = a.id AND r.version = a.last_version
			 JOIN builds b ON b.id = r.build_id
			 WHERE a.id = $1`, id).Scan(&types)
		switch {
		case isNoRows(err): // no build yet: any type
		case err != nil:
			return wrap(err, "read process types of %s", app)
		default:
			if err := checkProcessTypes(f, types); err != nil {
				return err
			}
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

// checkProcessTypes refuses the first (by name) type of f the build does not
// define, naming those it does.
func checkProcessTypes(f pier.Formation, defined map[string]string) error {
	asked := make([]string, 0, len(f))
	for t := range f {
		asked = append(asked, t)
	}
	sort.Strings(asked)
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
