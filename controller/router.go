package controller

import (
	"net/http"

	"github.com/pierpaas/pier"
)

func (s *Server) getRouter(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.store.RouterSettings(r.Context(), appOf(r).Name)
}

// patchRouter changes the app's router settings. Nothing is restarted:
// every router follows the store (postgres: WatchRouterSettings) and
// applies them to the next request.
func (s *Server) patchRouter(w http.ResponseWriter, r *http.Request) (any, error) {
	var c pier.RouterChange
	if err := decode(w, r, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return s.store.SetRouterSettings(r.Context(), appOf(r).Name, c, userOf(r).Username)
}
