-- +goose Up
-- The CNB builder image an app's source is built with by the pack strategy
-- (`pier buildpacks:set-builder`); '' is the platform's default builder.
ALTER TABLE apps ADD COLUMN builder text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE apps DROP COLUMN builder;
