package controller

import (
	"context"
	"time"

	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pierpaas/pier"
)

type appRequest struct {
	Name string `json:"name,omitempty"`
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) (any, error) {
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	apps, next, err := s.store.ListApps(r.Context(), userOf(r), p)
	return list(apps, next), err
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) (any, error) {
	var req appRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	generated := req.Name == ""
	// A generated name can collide with an existing app: try a few.
	for attempt := 0; ; attempt++ {
		if generated {
			req.Name = randomAppName()
		}
		if err := pier.ValidateAppName(req.Name); err != nil {
			return nil, err
		}
		if s.reservedHost(req.Name) {
			return nil, pier.Errorf(pier.EINVALID, "app name %q is reserved by the platform: choose another", req.Name)
		}
		app := &pier.App{Name: req.Name}
		_, err := s.store.CreateApp(r.Context(), app, userOf(r).Username)
		if pier.ErrorCode(err) == pier.ECONFLICT && generated && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return s.info(r, app)
	}
}

// reservedHost reports names the platform serves itself under its domain.
func (s *Server) reservedHost(app string) bool {
	return strings.HasPrefix(s.domain, app+".")
}

func (s *Server) appInfo(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.info(r, appOf(r))
}

func (s *Server) info(r *http.Request, app *pier.App) (*pier.AppInfo, error) {
	ctx := r.Context()
	info := &pier.AppInfo{App: *app, URL: s.appURL(app.Name), Domains: []string{}}
	if s.gitURL != nil {
		info.GitURL = s.gitURL(app.Name)
	}
	var err error
	if info.Release, err = s.store.CurrentRelease(ctx, app.Name); err != nil {
		return nil, err
	}
	info.Release.Config = nil // values are for `config`, not for every info call
	if info.Formation, err = s.store.Formation(ctx, app.Name); err != nil {
		return nil, err
	}
	if info.Limits, err = s.store.Limits(ctx, app.Name); err != nil {
		return nil, err
	}
	domains, err := s.store.ListDomains(ctx, app.Name)
	if err != nil {
		return nil, err
	}
	for _, d := range domains {
		info.Domains = append(info.Domains, d.Hostname)
	}
	if info.Members, err = s.store.ListMembers(ctx, app.Name); err != nil {
		return nil, err
	}
	return info, nil
}

// destroyTimeout bounds the clean-up of a destroyed app.
const destroyTimeout = 10 * time.Minute

func (s *Server) destroyApp(w http.ResponseWriter, r *http.Request) (any, error) {
	app := appOf(r).Name
	if err := s.store.DestroyApp(r.Context(), app, userOf(r).Username); err != nil {
		return nil, err
	}
	if s.rec != nil {
		// The app is gone from Postgres; stopping what it ran is the
		// scheduler's to finish (a Kubernetes namespace takes its pods'
		// grace period to go), so the caller does not wait for it, and a
		// caller that hangs up does not interrupt it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), destroyTimeout)
		go func() {
			defer cancel()
			if err := s.rec.Destroy(ctx, app); err != nil {
				s.log.ErrorContext(ctx, "stop destroyed app", "app", app, "err", err)
			}
		}()
	}
	return nil, nil
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) (any, error) {
	cfg, err := s.store.Config(r.Context(), appOf(r).Name)
	if cfg == nil {
		cfg = pier.Config{}
	}
	return cfg, err
}

func (s *Server) getConfigVar(w http.ResponseWriter, r *http.Request) (any, error) {
	key := chi.URLParam(r, "key")
	if err := pier.ValidateConfigKey(key); err != nil && key != "PORT" {
		return nil, err
	}
	cfg, err := s.store.Config(r.Context(), appOf(r).Name)
	if err != nil {
		return nil, err
	}
	v, ok := cfg[key]
	if !ok {
		return nil, pier.Errorf(pier.ENOTFOUND, "config %s is not set on %s: see `pier config`", key, appOf(r).Name)
	}
	return map[string]string{"key": key, "value": v}, nil
}

func (s *Server) patchConfig(w http.ResponseWriter, r *http.Request) (any, error) {
	var req map[string]*string
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	change := pier.ConfigChange{Set: pier.Config{}}
	for k, v := range req {
		if v == nil {
			change.Unset = append(change.Unset, k)
		} else {
			change.Set[k] = *v
		}
	}
	if err := change.Validate(); err != nil {
		return nil, err
	}
	rel, err := s.store.SetConfig(r.Context(), appOf(r).Name, change, userOf(r).Username)
	if err != nil {
		return nil, err
	}
	return s.released(r.Context(), rel)
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) (any, error) {
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	rels, next, err := s.store.ListReleases(r.Context(), appOf(r).Name, p)
	for i := range rels {
		rels[i].Config = nil
	}
	return list(rels, next), err
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) (any, error) {
	v, err := pier.ParseVersion(chi.URLParam(r, "version"))
	if err != nil {
		return nil, err
	}
	return s.store.FindRelease(r.Context(), appOf(r).Name, v)
}

type rollbackRequest struct {
	Version int `json:"version,omitempty"` // 0: the release before the current one
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) (any, error) {
	var req rollbackRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
	}
	if req.Version < 0 {
		return nil, pier.Errorf(pier.EINVALID, "release version %d is invalid: use a number such as 3", req.Version)
	}
	rel, err := s.store.Rollback(r.Context(), appOf(r).Name, req.Version, userOf(r).Username)
	if err != nil {
		return nil, err
	}
	return s.released(r.Context(), rel)
}

func (s *Server) getFormation(w http.ResponseWriter, r *http.Request) (any, error) {
	f, err := s.store.Formation(r.Context(), appOf(r).Name)
	if f == nil {
		f = pier.Formation{}
	}
	return f, err
}

func (s *Server) scale(w http.ResponseWriter, r *http.Request) (any, error) {
	var f pier.Formation
	if err := decode(w, r, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	out, err := s.store.Scale(r.Context(), appOf(r).Name, f, userOf(r).Username)
	if err != nil {
		return nil, err
	}
	if err := s.converge(r.Context(), appOf(r).Name); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) getLimits(w http.ResponseWriter, r *http.Request) (any, error) {
	l, err := s.store.Limits(r.Context(), appOf(r).Name)
	if l == nil {
		l = map[string]pier.Limits{}
	}
	return l, err
}

// patchLimits sets and unsets limits. Like scaling, it adds no release,
// and converges: the scheduler gets the new limits on every Apply.
func (s *Server) patchLimits(w http.ResponseWriter, r *http.Request) (any, error) {
	var c pier.LimitsChange
	if err := decode(w, r, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out, err := s.store.SetLimits(r.Context(), appOf(r).Name, c, userOf(r).Username)
	if err != nil {
		return nil, err
	}
	if err := s.converge(r.Context(), appOf(r).Name); err != nil {
		return nil, err
	}
	return out, nil
}

type domainRequest struct {
	Hostname string `json:"hostname"`
}

func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) (any, error) {
	ds, err := s.store.ListDomains(r.Context(), appOf(r).Name)
	return list(ds, ""), err
}

func (s *Server) addDomain(w http.ResponseWriter, r *http.Request) (any, error) {
	var req domainRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	host, err := pier.NormalizeHostname(req.Hostname)
	if err != nil {
		return nil, err
	}
	app := appOf(r).Name
	// The platform domain and its subdomains are the platform's; an app
	// already answers at <app>.<domain> without adding it.
	if host == s.domain || strings.HasSuffix(host, "."+s.domain) {
		if host == app+"."+s.domain {
			return nil, pier.Errorf(pier.ECONFLICT, "%s is already %s's default domain: nothing to add", host, app)
		}
		return nil, pier.Errorf(pier.EFORBIDDEN, "domain %s is reserved by the platform: add a domain you own", host)
	}
	if strings.HasPrefix(host, "*.") && !userOf(r).Admin {
		return nil, pier.Errorf(pier.EFORBIDDEN, "wildcard domains need an admin: ask one to add %s", host)
	}
	return s.store.AddDomain(r.Context(), app, host, userOf(r).Username)
}

func (s *Server) removeDomain(w http.ResponseWriter, r *http.Request) (any, error) {
	raw, err := pathParam(r, "hostname")
	if err != nil {
		return nil, err
	}
	host, err := pier.NormalizeHostname(raw)
	if err != nil {
		return nil, err
	}
	return nil, s.store.RemoveDomain(r.Context(), appOf(r).Name, host, userOf(r).Username)
}

type permRequest struct {
	Username string `json:"username"`
}

func (s *Server) listPerms(w http.ResponseWriter, r *http.Request) (any, error) {
	ms, err := s.store.ListMembers(r.Context(), appOf(r).Name)
	return list(ms, ""), err
}

func (s *Server) addPerm(w http.ResponseWriter, r *http.Request) (any, error) {
	var req permRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if err := pier.ValidateUsername(req.Username); err != nil {
		return nil, err
	}
	if err := s.store.AddMember(r.Context(), appOf(r).Name, req.Username, userOf(r).Username); err != nil {
		return nil, err
	}
	return pier.Member{Username: req.Username, Role: pier.RoleCollaborator}, nil
}

func (s *Server) removePerm(w http.ResponseWriter, r *http.Request) (any, error) {
	name := chi.URLParam(r, "username")
	if err := pier.ValidateUsername(name); err != nil {
		return nil, err
	}
	return nil, s.store.RemoveMember(r.Context(), appOf(r).Name, name, userOf(r).Username)
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) (any, error) {
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	es, next, err := s.store.ListEvents(r.Context(), appOf(r).Name, p)
	return list(es, next), err
}

var (
	nameAdjectives = []string{"amber", "brave", "calm", "dusty", "eager", "fuzzy", "gentle", "hidden", "icy", "jolly", "keen", "lively", "misty", "noble", "odd", "proud", "quiet", "rapid", "sunny", "tidy", "vast", "witty", "young", "zesty"}
	nameNouns      = []string{"anchor", "beacon", "canyon", "delta", "ember", "fjord", "grove", "harbor", "island", "jetty", "kelp", "lagoon", "meadow", "nebula", "orchard", "pier", "quarry", "reef", "summit", "tide", "valley", "wharf", "yard", "zephyr"}
)

// randomAppName makes a Heroku-style name such as "misty-harbor-4821".
func randomAppName() string {
	pick := func(words []string) string {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(words))))
		return words[n.Int64()]
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(9000))
	return fmt.Sprintf("%s-%s-%d", pick(nameAdjectives), pick(nameNouns), 1000+n.Int64())
}
