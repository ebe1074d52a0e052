package pier

import "log/slog"

// RouterState is everything a router needs to serve: what the controller
// streams to a router running alone (`pierd router`), whole, at connect and
// after every change. pierd all's in-process router gets the same parts
// from the scheduler and Postgres directly.
type RouterState struct {
	// Routes: app → the addresses (host:port) of its ready web processes.
	// An app present with none exists but has nothing ready.
	Routes map[string][]string `json:"routes"`
	// Domains: custom hostname (or "*.example.com") → app.
	Domains map[string]string `json:"domains"`
	// Certs are every app's certificates, with their private keys.
	Certs []RouterCert `json:"certs"`
	// HTTPS: app → its HTTPS redirect and HSTS flags; apps with both off
	// are absent.
	HTTPS map[string]HTTPSSettings `json:"https"`
	// Settings: app → its router settings; apps without any are absent.
	Settings map[string]RouterSettings `json:"settings"`
	// Challenges: ACME http-01 token → key authorization, answered at
	// /.well-known/acme-challenge/<token> while a certificate is issued.
	Challenges map[string]string `json:"challenges,omitempty"`
}

// RouterCert is one certificate a router serves, with its private key. It
// is sent only to routers, on the internal listener; LogValue keeps the key
// out of logs.
type RouterCert struct {
	App     string   `json:"app"`
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Chain   string   `json:"chain"` // PEM, leaf first
	Key     string   `json:"key"`   // PEM
}

// LogValue shows the certificate's metadata only.
func (c RouterCert) LogValue() slog.Value {
	return slog.GroupValue(slog.String("app", c.App), slog.String("name", c.Name), slog.Any("domains", c.Domains))
}

// RouterFrame is one line of the router feed (GET
// /internal/v1/router/watch, newline-delimited JSON): a whole snapshot, or
// a heartbeat that says the connection is alive.
type RouterFrame struct {
	Type string `json:"type"` // RouterFrameSnapshot or RouterFrameHeartbeat
	// Seq numbers the snapshots of one controller process, from 1.
	Seq   uint64       `json:"seq,omitempty"`
	State *RouterState `json:"state,omitempty"`
}

// Frame types of the router feed.
const (
	RouterFrameSnapshot  = "snapshot"
	RouterFrameHeartbeat = "heartbeat"
)
