-- +goose Up
-- Limits of each process type of an app (Deis' limits:set), in Kubernetes
-- quantity syntax, validated by the controller; '' is "not set", and a
-- type with neither limit has no row.
CREATE TABLE limits (
    app_id       bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    process_type text NOT NULL,
    memory       text NOT NULL DEFAULT '',
    cpu          text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, process_type),
    CHECK (memory <> '' OR cpu <> '')
);

-- The status of a release, the only thing about it that changes: pending
-- when written, succeeded once its processes were available, failed when
-- they did not become available (with why). The current release of an app
-- is its newest release that has not failed. Releases written before this
-- migration all ran (or were taken to), so they are succeeded.
ALTER TABLE releases
    ADD COLUMN status text NOT NULL DEFAULT 'succeeded'
        CHECK (status IN ('pending', 'succeeded', 'failed')),
    ADD COLUMN failure text NOT NULL DEFAULT '',
    ADD COLUMN failed_at timestamptz,
    ADD CONSTRAINT releases_failed_at CHECK ((status = 'failed') = (failed_at IS NOT NULL));
ALTER TABLE releases ALTER COLUMN status SET DEFAULT 'pending';

-- +goose Down
ALTER TABLE releases DROP CONSTRAINT releases_failed_at;
ALTER TABLE releases DROP COLUMN failed_at, DROP COLUMN failure, DROP COLUMN status;
DROP TABLE limits;
