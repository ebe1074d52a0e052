-- +goose Up
-- How the router treats an app's requests (`pier maintenance:on`,
-- `pier router:set`). An app without a row has the platform's behaviour;
-- a row is deleted when its settings go back to that. 0 is "the platform's
-- default" for the body limit and the timeout; an empty allowlist lets
-- everyone in. Values are validated by the controller.
CREATE TABLE router_settings (
    app_id           bigint PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    maintenance      boolean NOT NULL DEFAULT false,
    allow            text[] NOT NULL DEFAULT '{}',
    body_limit_bytes bigint NOT NULL DEFAULT 0 CHECK (body_limit_bytes >= 0),
    timeout_seconds  integer NOT NULL DEFAULT 0 CHECK (timeout_seconds BETWEEN 0 AND 3600),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Routers follow the table as they follow domains (0004): any change,
-- including the rows an app's destruction cascades away, notifies the
-- pier_router_settings channel, and listeners reload it.
-- +goose StatementBegin
CREATE FUNCTION pier_router_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pier_router_settings', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER router_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON router_settings
    FOR EACH STATEMENT EXECUTE FUNCTION pier_router_settings_changed();

-- +goose Down
DROP TRIGGER router_settings_changed ON router_settings;
DROP FUNCTION pier_router_settings_changed();
DROP TABLE router_settings;
