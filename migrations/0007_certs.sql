-- +goose Up
-- TLS certificates of apps (`pier certs:add`), and each app's HTTPS
-- behaviour at the router. The private key is kept like config values are:
-- in the database only, never returned by the API once uploaded.
CREATE TABLE certs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id      bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name        text NOT NULL,
    fingerprint text NOT NULL,
    domains     text[] NOT NULL,
    issuer      text NOT NULL DEFAULT '',
    not_before  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    chain       text NOT NULL,
    private_key text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, fingerprint)
);
CREATE INDEX certs_app_id ON certs (app_id);

ALTER TABLE apps ADD COLUMN https_redirect boolean NOT NULL DEFAULT false;
ALTER TABLE apps ADD COLUMN hsts boolean NOT NULL DEFAULT false;

-- Routers follow the certificates and the HTTPS settings: any change to
-- either (including what an app's destruction takes away) notifies the
-- pier_certs channel, and listeners reload them.
-- +goose StatementBegin
CREATE FUNCTION pier_certs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pier_certs', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER certs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON certs
    FOR EACH STATEMENT EXECUTE FUNCTION pier_certs_changed();
CREATE TRIGGER apps_https_changed AFTER UPDATE OF https_redirect, hsts OR DELETE ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION pier_certs_changed();

-- +goose Down
DROP TRIGGER apps_https_changed ON apps;
DROP TRIGGER certs_changed ON certs;
DROP FUNCTION pier_certs_changed();
ALTER TABLE apps DROP COLUMN hsts;
ALTER TABLE apps DROP COLUMN https_redirect;
DROP TABLE certs;
