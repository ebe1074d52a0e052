-- +goose Up
-- Automatic certificates (`pier certs:auto:enable`): an app's flag, the
-- issuer's record of each domain's last failure, the HTTP-01 challenges
-- routers answer, and a mark on the certificates Pier ordered itself.
ALTER TABLE apps ADD COLUMN auto_certs boolean NOT NULL DEFAULT false;
ALTER TABLE certs ADD COLUMN managed boolean NOT NULL DEFAULT false;

-- One row per domain with a failed order since its last success; a success
-- deletes it. The domain's removal takes it away.
CREATE TABLE autocert_failures (
    domain_id    bigint PRIMARY KEY REFERENCES domains (id) ON DELETE CASCADE,
    error        text NOT NULL,
    attempts     integer NOT NULL CHECK (attempts > 0),
    next_attempt timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Key authorizations of the HTTP-01 challenges under way, by token: what
-- routers answer at /.well-known/acme-challenge/<token>. Not secret (any
-- validator reads them over plain HTTP), but short-lived.
CREATE TABLE acme_challenges (
    token      text PRIMARY KEY,
    key_auth   text NOT NULL,
    domain_id  bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Routers follow the challenges (pier_acme_challenges); the issuer wakes up
-- when an app's flag, its domains or its certificates change
-- (pier_autocerts), whichever controller made the change.
-- +goose StatementBegin
CREATE FUNCTION pier_acme_challenges_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pier_acme_challenges', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER acme_challenges_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON acme_challenges
    FOR EACH STATEMENT EXECUTE FUNCTION pier_acme_challenges_changed();

-- +goose StatementBegin
CREATE FUNCTION pier_autocerts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pier_autocerts', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER apps_autocerts_changed AFTER UPDATE OF auto_certs ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION pier_autocerts_changed();
CREATE TRIGGER domains_autocerts_changed AFTER INSERT OR DELETE OR TRUNCATE ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION pier_autocerts_changed();
CREATE TRIGGER certs_autocerts_changed AFTER INSERT OR DELETE OR TRUNCATE ON certs
    FOR EACH STATEMENT EXECUTE FUNCTION pier_autocerts_changed();

-- +goose Down
DROP TRIGGER certs_autocerts_changed ON certs;
DROP TRIGGER domains_autocerts_changed ON domains;
DROP TRIGGER apps_autocerts_changed ON apps;
DROP FUNCTION pier_autocerts_changed();
DROP TRIGGER acme_challenges_changed ON acme_challenges;
DROP FUNCTION pier_acme_challenges_changed();
DROP TABLE acme_challenges;
DROP TABLE autocert_failures;
ALTER TABLE certs DROP COLUMN managed;
ALTER TABLE apps DROP COLUMN auto_certs;
