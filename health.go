package pier

import (
	"context"
	"time"
)

// StoreHealth is an optional interface of a Store that can tell an outage
// of its database from a bug, and say how it is. The controller checks for
// it with a type assertion: with it, an API call that fails while the
// database is not answering gets 503 and Retry-After instead of 500, and
// /healthz and /readyz tell the truth.
type StoreHealth interface {
	// Outage reports whether err (returned by one of the Store's methods)
	// comes from the database not answering: a connection lost or refused,
	// the server shutting down or starting up, or the store currently
	// finding it down. Such an error is worth trying again in a moment; any
	// other is not.
	Outage(err error) bool
	// Check asks the database now: it answers, and its schema is at the
	// latest migration this build knows. The error says which of the two
	// failed (ErrSchemaBehind for the second).
	Check(ctx context.Context) error
	// DownSince is when the database was last found not answering, for as
	// long as it has not answered since; zero while it is up.
	DownSince() time.Time
}

// ErrSchemaBehind is what StoreHealth.Check returns (wrapped) when the
// database answers but its schema is not at the latest migration.
var ErrSchemaBehind = Errorf(EUNAVAILABLE, "the database's schema is not at the latest migration: run `pierd migrate`")

// OutageMessage is what the API answers while the database is down.
const OutageMessage = "Pier's database is not answering; try again in a few seconds"
