package bench

import "strings"

// The pgbench scripts: the SQL the store (postgres/*.go) sends for one API
// request, statement by statement, with the values the server would bind
// (pgbench -D variables from the benchmark's data; :client_id picks the same
// per-client app as the Go benchmark). Keep them in step with the store:
// TestSmoke runs them against the current schema.
//
// Both scripts start with the two statements every app request runs before
// its handler: UserForSession (postgres/sessions.go, the JWT's user and
// revocation check) and AppAccess (postgres/apps.go).
//
// :app_name is the app's name: the apps:info app (-D info_app) for every
// client, or client i's own config-app-i for config:set, where the server
// builds the name from pgbench's :client_id (the API binds the whole name).
var scripts = map[string]string{
	"apps-info": strings.ReplaceAll(authSQL+appsInfoSQL, ":app_name", ":info_app"),
	"config-set": strings.ReplaceAll(`\set k random(0, 49)
\set n random(1, 1000000000)
`+authSQL+configSetSQL, ":app_name", "('config-app-' || :client_id::text)"),
}

const authSQL = `-- UserForSession
SELECT u.id, u.username, u.email, u.admin, u.created_at, EXISTS (SELECT 1 FROM revoked_sessions WHERE jti = :jti)
  FROM users u WHERE u.id = :user_id;
-- AppAccess
SELECT a.id, a.name, o.username, a.created_at, a.updated_at, coalesce(m.role, '')
  FROM apps a
  JOIN users o ON o.id = a.owner_id
  LEFT JOIN members m ON m.app_id = a.id AND m.user_id = (SELECT id FROM users WHERE username = :username)
  WHERE a.name = :app_name;
`

// releaseColumns and the builds join are postgres.releaseColumns and
// postgres.releaseJoin.
const releaseColumns = `r.version, r.config, r.note, r.created_by, r.created_at,
    b.id, b.commit_sha, b.strategy, b.image, b.process_types, b.status, b.created_by, b.created_at`

// appsInfoSQL is controller.info: CurrentRelease, Formation, ListDomains,
// ListMembers, each on its own (autocommit), as the server sends them.
const appsInfoSQL = `-- CurrentRelease
SELECT ` + releaseColumns + `
  FROM apps a JOIN releases r ON r.app_id = a.id AND r.version = a.last_version
  LEFT JOIN builds b ON b.id = r.build_id
  WHERE a.name = :app_name;
-- Formation
SELECT process_type, quantity FROM formations WHERE app_id = (SELECT id FROM apps WHERE name = :app_name);
-- ListDomains
SELECT hostname, created_at FROM domains
  WHERE app_id = (SELECT id FROM apps WHERE name = :app_name) ORDER BY hostname;
-- ListMembers
SELECT u.username, m.role FROM members m JOIN users u ON u.id = m.user_id
  WHERE m.app_id = (SELECT id FROM apps WHERE name = :app_name)
  ORDER BY m.role = 'owner' DESC, u.username;
`

// configSetSQL is postgres.SetConfig: one transaction of nextVersion,
// releaseBuildAndConfig, then newRelease.add's batch (one pipeline: the
// release, the config_vars rewrite, the event).
//
// Approximations: the store merges the change into the config in Go
// (pier.ConfigChange.Apply) and binds the result; here the SELECT merges it
// with jsonb || and \gset hands it on, and the build ID (NULL: these apps
// have no build) travels as 0 and goes back through nullif. The bound
// values are text here, binary from pgx.
const configSetSQL = `BEGIN;
-- nextVersion
UPDATE apps SET last_version = last_version + 1, updated_at = now()
  WHERE name = :app_name RETURNING id AS app_id, last_version AS version
\gset
-- releaseBuildAndConfig, plus the merge done by ConfigChange.Apply
SELECT coalesce(build_id, 0) AS build_id,
       config || jsonb_build_object('KEY_' || :k::text, 'value-' || :client_id::text || '-' || :n::text) AS next_config
  FROM releases WHERE app_id = :app_id AND version = :version::int - 1
\gset
-- newRelease.add: one batch
\startpipeline
WITH r AS (
    INSERT INTO releases (app_id, version, build_id, config, note, created_by)
    VALUES (:app_id, :version, nullif(:build_id::bigint, 0), :next_config, 'Set KEY_' || :k::text, :username)
    RETURNING version, build_id, config, note, created_by, created_at
  )
  SELECT ` + releaseColumns + ` FROM r LEFT JOIN builds b ON b.id = r.build_id;
DELETE FROM config_vars WHERE app_id = :app_id AND NOT (:next_config::jsonb ? key);
INSERT INTO config_vars (app_id, key, value)
  SELECT :app_id, key, value FROM jsonb_each_text(:next_config::jsonb)
  ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value
  WHERE config_vars.value IS DISTINCT FROM excluded.value;
INSERT INTO events (app_id, app_name, actor, action, detail)
  VALUES (:app_id, :app_name, :username, 'config.set', 'Set KEY_' || :k::text);
\endpipeline
COMMIT;
`
