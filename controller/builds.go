package controller

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/pierpaas/pier"
)

func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request) (any, error) {
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	builds, next, err := s.store.ListBuilds(r.Context(), appOf(r).Name, p)
	for i := range builds {
		builds[i].Log = "" // logs are for the single-build answer
	}
	return list(builds, next), err
}

// getBuild answers one build with its log: {id} is a build ID or "latest".
func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) (any, error) {
	app := appOf(r).Name
	raw := chi.URLParam(r, "id")
	if raw == "latest" {
		builds, _, err := s.store.ListBuilds(r.Context(), app, pier.Page{Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(builds) == 0 {
			return nil, pier.Errorf(pier.ENOTFOUND, "app %q has no builds yet: git push first (git push pier main)", app)
		}
		return s.store.FindBuild(r.Context(), app, builds[0].ID)
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		if len(raw) > 40 {
			raw = raw[:40] + "…"
		}
		return nil, pier.Errorf(pier.EINVALID, "build ID %q is invalid: use a number from `pier builds`, or latest", raw)
	}
	return s.store.FindBuild(r.Context(), app, id)
}
