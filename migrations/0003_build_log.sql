-- +goose Up
-- What the build strategy wrote, kept with the build (bounded by the
-- controller to pier.BuildLogMax: its start and its end).
ALTER TABLE builds ADD COLUMN log text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE builds DROP COLUMN log;
