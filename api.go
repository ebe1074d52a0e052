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

// RunFrame is one line of the streamed answer of a one-off process
// (POST /v1/apps/{app}/run): a chunk of its output (Stream "stdout" or
// "stderr", with Data), and last either its exit status (Exit) or why it
// could not run to the end (Error).
type RunFrame struct {
	Stream string `json:"stream,omitempty"`
	Data   string `json:"data,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
	Error  *Error `json:"error,omitempty"`
}

// Output streams of a RunFrame.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)
