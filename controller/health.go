package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pierpaas/pier"
)

// DefaultDatabaseGrace is how long the database may be down before
// /healthz fails (Config.DatabaseGrace).
const DefaultDatabaseGrace = 2 * time.Minute

// outageRetryAfter is the Retry-After, in seconds, of an answer given
// while the database is down: a restarted embedded Postgres is back within
// about a second.
const outageRetryAfter = "2"

// withHealth puts the store's health, if it can tell (pier.StoreHealth),
// in the request's context, where writeError finds it: every error
// answered while the database is down is a 503, whichever handler met it.
func (s *Server) withHealth(next http.Handler) http.Handler {
	h, ok := s.store.(pier.StoreHealth)
	if !ok {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxHealth, h)))
	})
}

// outage reports whether err, met while serving a request of ctx, comes
// from the database not answering.
func outage(ctx context.Context, err error) bool {
	h, ok := ctx.Value(ctxHealth).(pier.StoreHealth)
	return ok && h.Outage(err)
}

// healthBody is the answer of /healthz and /readyz.
type healthBody struct {
	Status string            `json:"status"` // ok, or unavailable
	Checks map[string]string `json:"checks,omitempty"`
}

// liveness answers /healthz: whether this process can make progress. It
// fails only when the database has been down for longer than the grace
// period, so that a supervisor (a kubelet, systemd, Docker) restarts pierd
// then, and not for an outage the supervisor of the embedded Postgres or
// the pool's reconnection heals by itself. It reads no credentials and,
// while the database is up, asks it nothing.
func (s *Server) liveness(w http.ResponseWriter, r *http.Request) (any, error) {
	if h, ok := s.store.(pier.StoreHealth); ok {
		if since := h.DownSince(); !since.IsZero() {
			if down := s.now().Sub(since); down > s.grace {
				writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "unavailable", Checks: map[string]string{
					"database": fmt.Sprintf("not answering for %s, longer than the grace period of %s (--database-grace)", down.Round(time.Second), s.grace),
				}})
				return written{}, nil
			}
		}
	}
	return healthBody{Status: "ok"}, nil
}

// readiness answers /readyz: whether this controller should be sent
// traffic. Its checks: the database answers, its schema is at the latest
// migration, and the apps have been converged since start (when a
// scheduler runs here). 503 names the failing checks.
func (s *Server) readiness(w http.ResponseWriter, r *http.Request) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "migrations": "ok", "scheduler": "ok"}
	var err error
	if h, ok := s.store.(pier.StoreHealth); ok {
		err = h.Check(ctx)
	} else {
		_, err = s.store.HasUsers(ctx)
	}
	switch {
	case errors.Is(err, pier.ErrSchemaBehind):
		checks["migrations"] = pier.ErrorMessage(pier.ErrSchemaBehind)
	case err != nil:
		s.log.DebugContext(ctx, "readiness: database check", "err", err)
		checks["database"] = "not answering"
		checks["migrations"] = "unknown: the database is not answering"
	}
	if s.rec != nil && !s.rec.Synced() {
		checks["scheduler"] = "the apps have not all been converged since start"
	}
	for _, v := range checks {
		if v != "ok" {
			writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "unavailable", Checks: checks})
			return written{}, nil
		}
	}
	return healthBody{Status: "ok", Checks: checks}, nil
}
