// Package controller is Pier's REST API: it authenticates callers, checks
// what they may do, validates their input and turns it into Store changes.
// It depends on the pier interfaces only; cmd/pierd wires in Postgres.
package controller

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/pierpaas/pier"
)

// Config is what the operator chooses for the controller.
type Config struct {
	Store  pier.Store
	Logger *slog.Logger
	// PublicURL is where users reach the platform, such as
	// http://pier.localhost:8080; apps are served at <app>.<host of PublicURL>.
	PublicURL string
	// SessionTTL is the lifetime of a login token (default 12h).
	SessionTTL time.Duration
	// Now is the clock (tests move it).
	Now func() time.Time
	// Reconciler, when set, is told of every change to what an app should
	// run (config, rollback, scale, destroy). Without one the API only
	// records desired state (`pierd controller` beside a separate runner).
	Reconciler *Reconciler
	// GitURL, when a builder runs, says where to push an app, such as
	// ssh://git@localhost:2222/myapp.git.
	GitURL func(app string) string
	// DefaultBuilder is the CNB builder image of apps that chose none, when
	// the pack strategy builds pushes ("" otherwise).
	DefaultBuilder string
	// ACME says that a certificate issuer runs (pierd --acme-directory):
	// apps' automatic certificates are ordered.
	ACME bool
	// RegistryAuth, when set, is the registry's token service
	// (registryauth.Authority): served at RegistryTokenPath and
	// RegistryCertificatePath, outside the API's own authentication (it
	// takes the registry credentials' Basic authentication).
	RegistryAuth http.Handler
	// ImageRepository, when set, is app's repository in Pier's own
	// registry, such as 127.0.0.1:5000/pier/myapp. The schedulers pull
	// from that registry with Pier's credentials, which read every app's
	// images: builds:create refuses an image of that registry outside the
	// app's own repository.
	ImageRepository func(app string) string
	// DatabaseGrace is how long the database may be down before /healthz
	// fails, so that a supervisor restarts pierd (default
	// DefaultDatabaseGrace).
	DatabaseGrace time.Duration
	// ServiceTokenRevoked, when set, is called after a service token has
	// been revoked (pierd then replaces the tokens it keeps for the
	// chart's pods, --service-tokens-secret). It must not block.
	ServiceTokenRevoked func()
}

// The registry token service's paths (registryauth.TokenPath and
// registryauth.CertificatePath).
const (
	RegistryTokenPath       = "/v1/registry/token"
	RegistryCertificatePath = "/v1/registry/certificate"
)

// Server is the controller's HTTP API.
type Server struct {
	store     pier.Store
	log       *slog.Logger
	public    *url.URL
	domain    string // platform domain: the host of PublicURL
	tokens    *tokenIssuer
	now       func() time.Time
	handler   http.Handler
	routes    []route
	openapi   []byte
	dummyPwd  string // a hash to compare against when a user is unknown
	rec       *Reconciler
	gitURL    func(app string) string
	builder   string // the platform's default CNB builder
	acme      bool   // an ACME issuer runs (Config.ACME)
	registry  http.Handler
	revoked   func()                  // Config.ServiceTokenRevoked
	imageRepo func(app string) string // Config.ImageRepository
	grace     time.Duration           // Config.DatabaseGrace
}

// New makes a Server, loading (or on first start creating) the token
// signing key from the Store so that every controller on one database agrees.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("controller: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://pier.localhost:8080"
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("controller: public URL must look like http://pier.example.com")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DatabaseGrace <= 0 {
		cfg.DatabaseGrace = DefaultDatabaseGrace
	}
	s := &Server{store: cfg.Store, log: cfg.Logger, public: u, domain: u.Hostname(), now: cfg.Now, rec: cfg.Reconciler, gitURL: cfg.GitURL, builder: cfg.DefaultBuilder, acme: cfg.ACME, registry: cfg.RegistryAuth, revoked: cfg.ServiceTokenRevoked, imageRepo: cfg.ImageRepository, grace: cfg.DatabaseGrace}
	s.tokens, err = newTokenIssuer(ctx, cfg.Store, cfg.SessionTTL, cfg.Now)
	if err != nil {
		return nil, err
	}
	if s.dummyPwd, err = hashPassword("not a real password"); err != nil {
		return nil, err
	}
	s.routes = s.routeTable()
	s.openapi, err = openAPIDocument(s.routes)
	if err != nil {
		return nil, err
	}
	s.handler = s.router()
	return s, nil
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// PublicURL is where users reach the platform.
func (s *Server) PublicURL() string { return s.public.String() }

// AppURL is where an app is served.
func (s *Server) AppURL(app string) string { return s.appURL(app) }

// convergeTimeout bounds a converge an API call waits for: far beyond any
// scheduler's own deadline for processes to come up.
const convergeTimeout = 15 * time.Minute

// converge applies an app's new desired state, when a Reconciler runs here,
// and returns once it is applied. It goes on if the caller goes away, so
// that a rollout is never left half done.
//
// The change is already committed. A rollout failure (pier.EROLLOUT: the
// processes did not come up; the reconciler has marked the release failed
// and restored the previous one, or says why it did not) is the caller's to
// know, so it is returned, as is a scheduler's refusal to run an image
// (the app was deployed from one under another scheduler). Any other failure to converge is transient (the
// scheduler keeps the old processes): it is the app's state to report, not
// the API call's, so it is logged.
func (s *Server) converge(ctx context.Context, app string) error {
	if s.rec == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), convergeTimeout)
	defer cancel()
	err := s.rec.Converge(ctx, app)
	if err == nil {
		return nil
	}
	s.log.ErrorContext(ctx, "converge", "app", app, "err", err)
	var images cannotRunImages
	if errors.Is(err, pier.ErrRolloutFailed) || errors.As(err, &images) {
		return err
	}
	return nil
}

// released converges the app of a new release and answers with the
// release as it stands after that (succeeded, or still pending when no
// scheduler runs here).
func (s *Server) released(ctx context.Context, rel *pier.Release) (*pier.Release, error) {
	if err := s.converge(ctx, rel.App); err != nil {
		return nil, err
	}
	if s.rec == nil {
		return rel, nil
	}
	now, err := s.store.FindRelease(ctx, rel.App, rel.Version)
	if err != nil {
		return rel, nil // it is committed and converged; the answer is only late news
	}
	return now, nil
}

func (s *Server) appURL(app string) string {
	u := *s.public
	host := app + "." + s.domain
	if p := s.public.Port(); p != "" {
		host += ":" + p
	}
	u.Host = host
	u.Path = ""
	return u.String()
}

func (s *Server) router() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Use(s.recoverer) // outside withHealth: a panic is a bug, a 500, even during an outage
	r.Use(s.withHealth)
	r.Use(s.accessLog)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, pier.Errorf(pier.ENOTFOUND, "no such endpoint %s %s: see /v1/openapi.json", r.Method, clipPath(r.URL.Path)))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, pier.Errorf(pier.EINVALID, "method %s is not allowed on %s: see /v1/openapi.json", r.Method, clipPath(r.URL.Path)))
	})
	for _, rt := range s.routes {
		r.Method(rt.method, rt.pattern, s.endpoint(rt))
	}
	if s.registry != nil {
		// Docker's token protocol: Basic credentials in, a registry
		// token out; never a Pier session.
		r.Handle(RegistryTokenPath, s.registry)
		r.Handle(RegistryCertificatePath, s.registry)
	}
	s.mountDashboard(r) // the web dashboard: /, /login, /apps/... (dashboard.go)
	return r
}

func clipPath(p string) string {
	if len(p) > 80 {
		return p[:80] + "…"
	}
	return p
}

// recoverer turns a panic into a logged 500 instead of a dropped connection.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(w, r, s.log, errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// accessLog logs one line per request. It logs the path, never the query
// string, headers or body: those may carry tokens or config values.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			return // probes, every few seconds
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("path", clipPath(r.URL.Path)),
			slog.Int("status", ww.Status()), slog.Duration("took", time.Since(start)),
			slog.String("request_id", middleware.GetReqID(r.Context())))
	})
}

// appName reads {app} from the path and checks it before it reaches SQL.
func appName(r *http.Request) (string, error) {
	name := chi.URLParam(r, "app")
	return name, pier.ValidateAppName(name)
}

// pathParam returns a path parameter, unescaped (fingerprints hold '/').
func pathParam(r *http.Request, name string) (string, error) {
	v, err := url.PathUnescape(chi.URLParam(r, name))
	if err != nil {
		return "", pier.Errorf(pier.EINVALID, "%s in the path is not validly escaped", name)
	}
	return v, nil
}
