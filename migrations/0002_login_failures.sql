-- +goose Up
-- Failed logins per username, shared by every controller, so that password
-- guessing slows down whichever controller it is spread over.
CREATE TABLE login_failures (
    username    text        PRIMARY KEY,
    failures    integer     NOT NULL,
    last_failed timestamptz NOT NULL
);

-- +goose Down
DROP TABLE login_failures;
