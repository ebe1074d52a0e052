package controller

import (
	"context"
	"net/http"
	"strings"

	"github.com/pierpaas/pier"
)

type certRequest struct {
	Certificate string `json:"certificate"` // PEM chain, leaf first
	PrivateKey  string `json:"private_key"` // PEM; never returned
}

func (s *Server) listCerts(w http.ResponseWriter, r *http.Request) (any, error) {
	cs, err := s.store.ListCerts(r.Context(), appOf(r).Name)
	return list(cs, ""), err
}

// addCert checks an uploaded certificate and its key, and that every name
// it is for is the app's: one of its domains, or <app>.<platform domain>.
func (s *Server) addCert(w http.ResponseWriter, r *http.Request) (any, error) {
	var req certRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	c, err := pier.ParseCertificate(req.Certificate, req.PrivateKey, s.now())
	if err != nil {
		return nil, err
	}
	app := appOf(r).Name
	if err := s.certNamesOwned(r.Context(), app, c.Domains); err != nil {
		return nil, err
	}
	if err := s.store.AddCert(r.Context(), app, c, req.Certificate, req.PrivateKey, userOf(r).Username); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Server) certNamesOwned(ctx context.Context, app string, names []string) error {
	domains, err := s.store.ListDomains(ctx, app)
	if err != nil {
		return err
	}
	owned := map[string]bool{app + "." + s.domain: true}
	for _, d := range domains {
		owned[d.Hostname] = true
	}
	var foreign []string
	for _, n := range names {
		if !owned[n] {
			foreign = append(foreign, n)
		}
	}
	if len(foreign) > 0 {
		return pier.Errorf(pier.EINVALID, "the certificate is for %s, which %s not a domain of %s: add it first with `pier domains:add %s -a %s`, or upload a certificate for %s's domains only",
			strings.Join(foreign, ", "), map[bool]string{true: "is", false: "are"}[len(foreign) == 1], app, foreign[0], app, app)
	}
	return nil
}

func (s *Server) removeCert(w http.ResponseWriter, r *http.Request) (any, error) {
	name, err := pathParam(r, "name")
	if err != nil {
		return nil, err
	}
	if name, err = pier.NormalizeCertName(name); err != nil {
		return nil, err
	}
	_, err = s.store.RemoveCert(r.Context(), appOf(r).Name, name, userOf(r).Username)
	return nil, err
}

func (s *Server) getHTTPS(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.store.AppHTTPS(r.Context(), appOf(r).Name)
}

func (s *Server) patchHTTPS(w http.ResponseWriter, r *http.Request) (any, error) {
	var c pier.HTTPSChange
	if err := decode(w, r, &c); err != nil {
		return nil, err
	}
	if c.HTTPSRedirect == nil && c.HSTS == nil {
		return nil, pier.Errorf(pier.EINVALID, `nothing to change: send {"https_redirect": true|false} and/or {"hsts": true|false}`)
	}
	return s.store.SetAppHTTPS(r.Context(), appOf(r).Name, c, userOf(r).Username)
}
