-- Pier's desired state. Every app-owned row goes with its app (ON DELETE
-- CASCADE) except audit events, which outlive it.

-- +goose Up
CREATE TABLE settings (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    email         text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    admin         boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of each token is kept: a database dump does not hand out
-- credentials.
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash         text NOT NULL UNIQUE,
    description  text NOT NULL,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

-- Session JWTs are stateless; logging out lists the token ID here until the
-- token would have expired anyway.
CREATE TABLE revoked_sessions (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);

CREATE TABLE keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL,
    fingerprint text NOT NULL UNIQUE,
    public_key  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

-- last_version is the app's release counter: bumping it locks the app row,
-- which serialises every change that adds a release.
CREATE TABLE apps (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    owner_id     bigint NOT NULL REFERENCES users (id),
    last_version integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX apps_owner_id ON apps (owner_id);

CREATE TABLE members (
    app_id     bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'collaborator')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX members_user_id ON members (user_id);

CREATE TABLE builds (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id        bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    commit_sha    text NOT NULL DEFAULT '',
    strategy      text NOT NULL DEFAULT '',
    image         text NOT NULL DEFAULT '',
    process_types jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(process_types) = 'object'),
    status        text NOT NULL,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX builds_app_id ON builds (app_id, id);

-- Releases are immutable: build and config snapshot. created_by is a
-- username, not a reference, so history survives its author.
CREATE TABLE releases (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id     bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version    integer NOT NULL CHECK (version > 0),
    build_id   bigint REFERENCES builds (id),
    config     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    note       text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, version)
);
CREATE INDEX releases_build_id ON releases (build_id);

-- The current config, one row a variable: always equal to the config of the
-- app's latest release (both are written in one transaction).
CREATE TABLE config_vars (
    app_id bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (app_id, key)
);

CREATE TABLE formations (
    app_id       bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    process_type text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, process_type)
);

CREATE TABLE domains (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id     bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hostname   text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_app_id ON domains (app_id);

-- The audit log outlives apps: app_id is cleared when the app goes, app_name
-- keeps saying which app it was.
CREATE TABLE events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id     bigint REFERENCES apps (id) ON DELETE SET NULL,
    app_name   text NOT NULL DEFAULT '',
    actor      text NOT NULL,
    action     text NOT NULL,
    detail     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_app_id ON events (app_id, id);

-- +goose Down
DROP TABLE events;
DROP TABLE domains;
DROP TABLE formations;
DROP TABLE config_vars;
DROP TABLE releases;
DROP TABLE builds;
DROP TABLE members;
DROP TABLE apps;
DROP TABLE keys;
DROP TABLE revoked_sessions;
DROP TABLE api_tokens;
DROP TABLE users;
DROP TABLE settings;
