package pier

import "time"

// Session is what logging in returns: a short-lived signed token.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      User      `json:"user"`
}

// NewAPIToken is a freshly created API token. Token is shown only here.
type NewAPIToken struct {
	Token string `json:"token"`
	APIToken
}

// List is one page of a listing, as the API returns it.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"` // pass as ?after= for the next page
}

// Settings are the platform settings an admin may change.
type Settings struct {
	Registration string `json:"registration"` // RegistrationAdmin or RegistrationOpen
}

// Registration modes: after the first user, who may create accounts.
const (
	RegistrationAdmin = "admin" // only admins create users (the default)
	RegistrationOpen  = "open"  // anyone may register
)
