-- +goose Up
-- Every app gets a uid of its own (issue 14): the local scheduler, as root,
-- runs the app's builds and processes as it. Names used to be hashed into
-- 65,536 uids, so two apps could share one; now the store hands them out
-- from a counter, and UNIQUE keeps two existing apps from ever sharing one.
ALTER TABLE apps ADD COLUMN uid integer UNIQUE CHECK (uid > 0);

-- The next uid to try, within the operator's range (pierd --app-uids).
-- One row; CreateApp locks it, so that allocations queue rather than race.
CREATE TABLE app_uid_counter (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    next integer NOT NULL
);

-- Existing apps get distinct uids at the bottom of the default range
-- (100000-165535), in the order they were created.
UPDATE apps SET uid = n.uid
FROM (SELECT id, 99999 + row_number() OVER (ORDER BY id) AS uid FROM apps) n
WHERE apps.id = n.id;

ALTER TABLE apps ALTER COLUMN uid SET NOT NULL;

INSERT INTO app_uid_counter (next) SELECT coalesce(max(uid) + 1, 100000) FROM apps;

-- +goose Down
DROP TABLE app_uid_counter;
ALTER TABLE apps DROP COLUMN uid;
