-- +goose Up
-- Routers follow the domains table: any change to it (including the rows
-- an app's destruction cascades away) notifies the pier_domains channel,
-- whichever controller made it, and listeners reload the table.
-- +goose StatementBegin
CREATE FUNCTION pier_domains_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pier_domains', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER domains_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION pier_domains_changed();

-- +goose Down
DROP TRIGGER domains_changed ON domains;
DROP FUNCTION pier_domains_changed();
