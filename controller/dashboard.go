package controller

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/pierpaas/pier/web"
)

// mountDashboard serves the web dashboard (package web) on its few paths of
// the API host; the API stays under /v1. The dashboard makes its pages by
// calling this API in-process with the signed-in user's token, through the
// same endpoints (and so the same authorisation) as the CLI. Those inner
// calls skip the access log: the page's own request is logged once.
func (s *Server) mountDashboard(r chi.Router) {
	api := chi.NewRouter()
	api.Use(s.recoverer)
	for _, rt := range s.routes {
		api.Method(rt.method, rt.pattern, s.endpoint(rt))
	}
	// The page's request carries the outer router's routing state, which
	// chi would take for a mount: the inner calls start afresh.
	fresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, nil)))
	})
	d := web.New(web.Config{API: fresh, Logger: s.log})
	for _, p := range web.Paths {
		r.Handle(p, d)
	}
}
