-- +goose Up
-- Credentials of platform components that run as their own processes
-- (`pierd router`, later `pierd builder`) on the controller's internal
-- listener. Like api_tokens, only a SHA-256 hash of the 256-bit token is
-- kept; revoking deletes the row. A token has one scope, which says what it
-- may do; they belong to the platform, not to a user (created_by is for the
-- record only, and outlives the user).
CREATE TABLE service_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope        text NOT NULL CHECK (scope IN ('router', 'builder')),
    description  text NOT NULL,
    prefix       text NOT NULL,
    hash         text NOT NULL UNIQUE,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

-- +goose Down
DROP TABLE service_tokens;
