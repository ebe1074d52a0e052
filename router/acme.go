package router

import (
	"io"
	"net/http"
	"strings"
)

// ACMEChallengePath is where ACME HTTP-01 validators ask for a token's key
// authorization (RFC 8555, section 8.3), over plain HTTP.
const ACMEChallengePath = "/.well-known/acme-challenge/"

// SetChallenges replaces the ACME HTTP-01 challenges the router answers:
// token → key authorization. The table is swapped atomically, like the
// routes.
func (rt *Router) SetChallenges(challenges map[string]string) {
	cp := make(map[string]string, len(challenges))
	for token, keyAuth := range challenges {
		cp[token] = keyAuth
	}
	rt.challenges.Store(&cp)
}

// HasChallenge says whether the router answers token now.
func (rt *Router) HasChallenge(token string) bool {
	m := rt.challenges.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[token]
	return ok
}

// serveChallenge answers a GET or HEAD of ACMEChallengePath+token with the
// key authorization (text/plain) if the token is one of Pier's, whatever
// the host and the app's state (no process, maintenance, HTTPS redirect),
// and says whether it did. Tokens are unguessable and belong to one order.
// A token Pier does not know goes on to the app, so that an app that runs
// its own ACME client keeps working.
func (rt *Router) serveChallenge(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	m := rt.challenges.Load()
	if m == nil {
		return false
	}
	token := strings.TrimPrefix(r.URL.Path, ACMEChallengePath)
	keyAuth, ok := (*m)[token]
	if !ok {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		io.WriteString(w, keyAuth)
	}
	rt.log.Info("answered an ACME HTTP-01 challenge", "host", normalizeHost(r.Host), "remote", r.RemoteAddr)
	return true
}
