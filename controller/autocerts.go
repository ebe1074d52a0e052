package controller

import (
	"net/http"

	"github.com/pierpaas/pier"
)

// getAutoCerts shows the app's automatic certificates: on or off, and each
// domain's state (pier.PlanAutoCerts).
func (s *Server) getAutoCerts(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.autoCerts(r, appOf(r).Name)
}

// enableAutoCerts turns automatic certificates on: the issuer (pierd
// --acme-directory) orders one for each exact custom domain.
func (s *Server) enableAutoCerts(w http.ResponseWriter, r *http.Request) (any, error) {
	app := appOf(r).Name
	if err := s.store.SetAutoCerts(r.Context(), app, true, userOf(r).Username); err != nil {
		return nil, err
	}
	return s.autoCerts(r, app)
}

// disableAutoCerts turns them off: no more orders or renewals; issued
// certificates stay until they expire or are removed.
func (s *Server) disableAutoCerts(w http.ResponseWriter, r *http.Request) (any, error) {
	app := appOf(r).Name
	if err := s.store.SetAutoCerts(r.Context(), app, false, userOf(r).Username); err != nil {
		return nil, err
	}
	return s.autoCerts(r, app)
}

func (s *Server) autoCerts(r *http.Request, app string) (*pier.AutoCerts, error) {
	a, err := s.store.AutoCertApp(r.Context(), app)
	if err != nil {
		return nil, err
	}
	domains, _, _ := pier.PlanAutoCerts(*a, s.domain, s.now())
	return &pier.AutoCerts{App: app, Enabled: a.Enabled, Issuing: s.acme, Domains: domains}, nil
}
