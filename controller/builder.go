package controller

import (
	"net/http"

	"github.com/pierpaas/pier"
)

func (s *Server) getBuilder(w http.ResponseWriter, r *http.Request) (any, error) {
	b, err := s.store.AppBuilder(r.Context(), appOf(r).Name)
	if err != nil {
		return nil, err
	}
	return pier.BuilderSetting{Builder: b, Default: s.builder}, nil
}

// putBuilder chooses the app's builder. Nothing is rebuilt: the next push
// is built with it, as with Heroku's buildpacks:set.
func (s *Server) putBuilder(w http.ResponseWriter, r *http.Request) (any, error) {
	var req pier.BuilderSetting
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if req.Builder != "" {
		if err := pier.ValidateImage(req.Builder); err != nil {
			return nil, pier.Errorf(pier.EINVALID, "builder: %s", pier.ErrorMessage(err))
		}
	}
	if err := s.store.SetAppBuilder(r.Context(), appOf(r).Name, req.Builder, userOf(r).Username); err != nil {
		return nil, err
	}
	return pier.BuilderSetting{Builder: req.Builder, Default: s.builder}, nil
}
