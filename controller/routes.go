package controller

import (
	"context"
	"net/http"
	"time"

	"github.com/pierpaas/pier"
)

// access says who may call a route.
type access int

const (
	public    access = iota // anyone; a valid token is still read if sent
	probe                   // anyone; credentials are not read, so that a health probe never waits on the database for them
	signedIn                // any authenticated user
	adminOnly               // an admin
	appMember               // the app's owner, its collaborators, or an admin
	appOwner                // the app's owner or an admin
)

// route is one endpoint. The table of routes is the single source of both
// the chi router and the OpenAPI document, so the two cannot disagree.
type route struct {
	method, pattern string
	summary         string
	access          access
	in              any // request body type, for the OpenAPI document; for a GET, its query parameters (see decodeQuery)
	out             any // response body type; ndjson[T] for a stream of T
	status          int // success status
	handle          func(w http.ResponseWriter, r *http.Request) (any, error)
}

func (s *Server) routeTable() []route {
	type cfgValue struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	return []route{
		{"GET", "/healthz", "Liveness: 200 unless the database has been down for longer than the grace period (pierd --database-grace), then 503", probe, nil, healthBody{}, 200, s.liveness},
		{"GET", "/readyz", "Readiness: 200 when the database answers, its schema is at the latest migration and the apps have been converged since start; else 503 naming the failing checks", probe, nil, healthBody{}, 200, s.readiness},
		{"GET", "/v1/openapi.json", "This OpenAPI document", public, nil, map[string]any{}, 200, s.openAPI},

		{"POST", "/v1/auth/register", "Create a user (the first needs the bootstrap token and becomes admin)", public, registerRequest{}, pier.User{}, 201, s.register},
		{"POST", "/v1/auth/login", "Log in: returns a short-lived session token", public, loginRequest{}, pier.Session{}, 200, s.login},
		{"POST", "/v1/auth/logout", "Revoke the session token used", signedIn, nil, nil, 204, s.logout},
		{"GET", "/v1/auth/whoami", "The calling user", signedIn, nil, pier.User{}, 200, s.whoami},
		{"GET", "/v1/users", "List users", adminOnly, nil, pier.List[pier.User]{}, 200, s.listUsers},
		{"GET", "/v1/settings", "Platform settings", adminOnly, nil, pier.Settings{}, 200, s.getSettings},
		{"PATCH", "/v1/settings", "Change platform settings", adminOnly, pier.Settings{}, pier.Settings{}, 200, s.patchSettings},

		{"GET", "/v1/tokens", "List your API tokens", signedIn, nil, pier.List[pier.APIToken]{}, 200, s.listTokens},
		{"POST", "/v1/tokens", "Create a long-lived API token (shown once)", signedIn, tokenRequest{}, pier.NewAPIToken{}, 201, s.createToken},
		{"DELETE", "/v1/tokens/{id}", "Revoke an API token", signedIn, nil, nil, 204, s.revokeToken},
		// Service tokens of components run alone (pierd router): servicetokens.go.
		{"GET", "/v1/service-tokens", "List the service tokens of platform components (never the tokens)", adminOnly, nil, pier.List[pier.ServiceToken]{}, 200, s.listServiceTokens},
		{"POST", "/v1/service-tokens", "Create a service token for a component, such as scope router for pierd router (shown once)", adminOnly, serviceTokenRequest{}, pier.NewServiceToken{}, 201, s.createServiceToken},
		{"DELETE", "/v1/service-tokens/{id}", "Revoke a service token", adminOnly, nil, nil, 204, s.revokeServiceToken},

		{"GET", "/v1/keys", "List your SSH keys", signedIn, nil, pier.List[pier.Key]{}, 200, s.listKeys},
		{"POST", "/v1/keys", "Add an SSH public key", signedIn, keyRequest{}, pier.Key{}, 201, s.addKey},
		{"DELETE", "/v1/keys/{key}", "Remove an SSH key by name or fingerprint", signedIn, nil, nil, 204, s.removeKey},

		{"GET", "/v1/apps", "List the apps you can see", signedIn, nil, pier.List[pier.App]{}, 200, s.listApps},
		{"POST", "/v1/apps", "Create an app (a name is generated if omitted)", signedIn, appRequest{}, pier.AppInfo{}, 201, s.createApp},
		{"GET", "/v1/apps/{app}", "An app, its current release, formation, domains and members", appMember, nil, pier.AppInfo{}, 200, s.appInfo},
		{"DELETE", "/v1/apps/{app}", "Destroy an app", appOwner, nil, nil, 204, s.destroyApp},

		{"GET", "/v1/apps/{app}/config", "The app's config vars", appMember, nil, pier.Config{}, 200, s.getConfig},
		{"GET", "/v1/apps/{app}/config/{key}", "One config var", appMember, nil, cfgValue{}, 200, s.getConfigVar},
		{"PATCH", "/v1/apps/{app}/config", "Set (string) and unset (null) config vars in one new release", appMember, map[string]*string{}, pier.Release{}, 200, s.patchConfig},

		{"GET", "/v1/apps/{app}/releases", "List releases, newest first", appMember, nil, pier.List[pier.Release]{}, 200, s.listReleases},
		{"GET", "/v1/apps/{app}/releases/{version}", "One release (v3 or 3)", appMember, nil, pier.Release{}, 200, s.getRelease},
		{"POST", "/v1/apps/{app}/releases/rollback", "Roll back: a new release copying an earlier one (default: the previous)", appMember, rollbackRequest{}, pier.Release{}, 201, s.rollback},

		{"GET", "/v1/apps/{app}/formation", "Process counts by type", appMember, nil, pier.Formation{}, 200, s.getFormation},
		{"PATCH", "/v1/apps/{app}/formation", "Scale process types", appMember, pier.Formation{}, pier.Formation{}, 200, s.scale},
		{"GET", "/v1/apps/{app}/limits", "Memory and CPU limits by process type", appMember, nil, map[string]pier.Limits{}, 200, s.getLimits},
		{"PATCH", "/v1/apps/{app}/limits", "Set (a string) and unset (null) limits by process type; no new release", appMember, pier.LimitsChange{}, map[string]pier.Limits{}, 200, s.patchLimits},

		{"GET", "/v1/apps/{app}/builder", "The CNB builder image the app's source is built with (pack strategy)", appMember, nil, pier.BuilderSetting{}, 200, s.getBuilder},
		{"PUT", "/v1/apps/{app}/builder", "Choose the app's CNB builder image (\"\": the platform's default); used from the next push", appMember, pier.BuilderSetting{}, pier.BuilderSetting{}, 200, s.putBuilder},

		// Router settings: maintenance, allowlist, body limit, timeout (router.go).
		{"GET", "/v1/apps/{app}/router", "How the router treats the app's requests: maintenance, allowlist, body limit, timeout", appMember, nil, pier.RouterSettings{}, 200, s.getRouter},
		{"PATCH", "/v1/apps/{app}/router", "Change the app's router settings (omitted: unchanged; null: back to the default); no restart", appMember, pier.RouterChange{}, pier.RouterSettings{}, 200, s.patchRouter},

		{"GET", "/v1/apps/{app}/builds", "List builds, newest first (without their logs)", appMember, nil, pier.List[pier.Build]{}, 200, s.listBuilds},
		{"POST", "/v1/apps/{app}/builds", "Deploy an existing image: a build of strategy image and its release, written once its processes serve", appMember, buildRequest{}, pier.Release{}, 201, s.createBuild},
		{"GET", "/v1/apps/{app}/builds/{id}", "One build with its log (an ID, or latest)", appMember, nil, pier.Build{}, 200, s.getBuild},

		{"GET", "/v1/apps/{app}/ps", "The app's running processes", appMember, nil, pier.List[pier.Process]{}, 200, s.processes},
		{"POST", "/v1/apps/{app}/ps/restart", "Restart the processes of one type, or all ({} or no body)", appMember, restartRequest{}, nil, 204, s.restart},
		{"GET", "/v1/apps/{app}/logs", "The app's log: one JSON LogLine per line; with follow, new lines as they come", appMember, logsQuery{}, ndjson[pier.LogLine]{}, 200, s.logs},
		{"POST", "/v1/apps/{app}/run", "Run a one-off process: its output, then its exit status, as one JSON RunFrame per line (no stdin)", appMember, runRequest{}, ndjson[pier.RunFrame]{}, 200, s.run},

		{"GET", "/v1/apps/{app}/domains", "List the app's domains", appMember, nil, pier.List[pier.Domain]{}, 200, s.listDomains},
		{"POST", "/v1/apps/{app}/domains", "Add a domain", appMember, domainRequest{}, pier.Domain{}, 201, s.addDomain},
		{"DELETE", "/v1/apps/{app}/domains/{hostname}", "Remove a domain", appMember, nil, nil, 204, s.removeDomain},

		// TLS: certificates (never their keys once uploaded) and HTTPS behaviour.
		{"GET", "/v1/apps/{app}/certs", "List the app's TLS certificates (without keys)", appMember, nil, pier.List[pier.Certificate]{}, 200, s.listCerts},
		{"POST", "/v1/apps/{app}/certs", "Upload a TLS certificate chain and its private key, for names that are all the app's", appMember, certRequest{}, pier.Certificate{}, 201, s.addCert},
		{"DELETE", "/v1/apps/{app}/certs/{name}", "Remove a certificate by name or fingerprint prefix (8+ hex digits)", appMember, nil, nil, 204, s.removeCert},
		{"GET", "/v1/apps/{app}/https", "The app's HTTPS redirect and HSTS settings", appMember, nil, pier.HTTPSSettings{}, 200, s.getHTTPS},
		{"PATCH", "/v1/apps/{app}/https", "Turn the app's HTTPS redirect and HSTS on or off (omitted: unchanged)", appMember, pier.HTTPSChange{}, pier.HTTPSSettings{}, 200, s.patchHTTPS},
		// Automatic certificates (ACME, HTTP-01 through the router): autocerts.go.
		{"GET", "/v1/apps/{app}/certs/auto", "The app's automatic certificates: on or off, and each domain's state (pending, issued, failed with the CA's error and the next attempt, uploaded, unsupported, off)", appMember, nil, pier.AutoCerts{}, 200, s.getAutoCerts},
		{"POST", "/v1/apps/{app}/certs/auto", "Turn automatic certificates on: one is ordered for each exact custom domain, and renewed", appMember, nil, pier.AutoCerts{}, 200, s.enableAutoCerts},
		{"DELETE", "/v1/apps/{app}/certs/auto", "Turn automatic certificates off: no more orders or renewals; issued certificates stay until they expire", appMember, nil, pier.AutoCerts{}, 200, s.disableAutoCerts},

		{"GET", "/v1/apps/{app}/perms", "List the app's members", appMember, nil, pier.List[pier.Member]{}, 200, s.listPerms},
		{"POST", "/v1/apps/{app}/perms", "Give a user access to the app", appOwner, permRequest{}, pier.Member{}, 201, s.addPerm},
		{"DELETE", "/v1/apps/{app}/perms/{username}", "Take a user's access away", appOwner, nil, nil, 204, s.removePerm},

		{"GET", "/v1/apps/{app}/events", "The app's audit log, newest first", appMember, nil, pier.List[pier.Event]{}, 200, s.listEvents},
	}
}

// pagedRoutes are the lists that take ?limit= and ?after=; the others are
// short by nature (a user's keys, an app's domains).
var pagedRoutes = map[string]bool{
	"/v1/users": true, "/v1/apps": true, "/v1/apps/{app}/releases": true, "/v1/apps/{app}/events": true,
	"/v1/apps/{app}/builds": true,
}

type ctxKey int

const (
	ctxCaller ctxKey = iota
	ctxApp
	ctxHealth // the store's pier.StoreHealth (withHealth)
)

// caller is who is calling: the user and how they authenticated.
type caller struct {
	user    *pier.User
	session *sessionClaims // nil when an API token was used
}

func callerOf(ctx context.Context) *caller {
	c, _ := ctx.Value(ctxCaller).(*caller)
	return c
}

// userOf returns the authenticated user; routes other than public ones
// always have one.
func userOf(r *http.Request) *pier.User {
	if c := callerOf(r.Context()); c != nil {
		return c.user
	}
	return nil
}

// appOf returns the app of an app route, loaded and access-checked.
func appOf(r *http.Request) *pier.App {
	a, _ := r.Context().Value(ctxApp).(*pier.App)
	return a
}

// convergeAnswerTimeout bounds how long an authorised change may take to
// answer: longer than any scheduler's rollout deadline (5 min by default).
const convergeAnswerTimeout = 15 * time.Minute

// endpoint wraps a route's handler with authentication, authorisation and
// the JSON encoding of its answer or error.
func (s *Server) endpoint(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, err := s.authorize(r, rt.access)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if r.Method != http.MethodGet {
			// A change converges before it is answered (a Kubernetes
			// rollout may take minutes, bounded by the scheduler's
			// deadline): the server's write timeout must not cut the
			// answer off. Unsupported writers (tests) ignore this.
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(convergeAnswerTimeout))
		}
		out, err := rt.handle(w, r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if _, ok := out.(written); ok {
			return // a stream, answered by the handler
		}
		if rt.status == http.StatusNoContent {
			w.WriteHeader(rt.status)
			return
		}
		if b, ok := out.([]byte); ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(rt.status)
			_, _ = w.Write(b)
			return
		}
		writeJSON(w, rt.status, out)
	})
}

// authorize authenticates the caller and checks the route's access rule,
// returning the request with the caller (and app) in its context.
func (s *Server) authorize(r *http.Request, a access) (*http.Request, error) {
	if a == probe {
		return r, nil
	}
	c, err := s.authenticate(r) // nil, nil when no credentials were sent
	if err != nil {
		return r, err
	}
	if c == nil && a != public {
		return r, pier.Errorf(pier.EUNAUTHORIZED, "not logged in: run `pier login URL`, or send an API token as 'Authorization: Bearer pier_...'")
	}
	ctx := r.Context()
	if c != nil {
		ctx = context.WithValue(ctx, ctxCaller, c)
	}
	switch a {
	case public, signedIn:
	case adminOnly:
		if !c.user.Admin {
			return r, pier.Errorf(pier.EFORBIDDEN, "only an admin may do this")
		}
	case appMember, appOwner:
		name, err := appName(r)
		if err != nil {
			return r, err
		}
		app, role, err := s.store.AppAccess(ctx, name, c.user.Username)
		if err != nil {
			return r, err
		}
		switch {
		case c.user.Admin, role == pier.RoleOwner:
		case role == "":
			return r, pier.Errorf(pier.EFORBIDDEN, "you do not have access to app %q: ask its owner to run `pier perms:add %s -a %s`", name, c.user.Username, name)
		case a == appOwner:
			return r, pier.Errorf(pier.EFORBIDDEN, "only the owner of app %q (or an admin) may do this", name)
		}
		ctx = context.WithValue(ctx, ctxApp, app)
	}
	return r.WithContext(ctx), nil
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.openapi, nil
}
