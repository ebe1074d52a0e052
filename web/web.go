// Package web is Pier's dashboard: server-rendered pages (html/template,
// assets embedded) that the controller serves at the platform's own host,
// such as http://pier.localhost:8080/.
//
// Every page is made by calling the controller's REST API in-process
// (inproc.go) with the signed-in user's session token, so the dashboard
// shows and changes exactly what the API allows that user: there is no
// second copy of the permission rules. The session token lives in a
// __Host- cookie (HttpOnly, SameSite=Strict, Secure); every form carries a
// CSRF token derived from it.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Paths are the path patterns (chi syntax) the controller mounts the
// dashboard on; everything else on the API host stays the REST API.
var Paths = []string{"/", "/login", "/logout", "/apps", "/apps/*", "/account", "/account/*", "/assets/*"}

// Config is what the dashboard needs.
type Config struct {
	// API is the controller's REST API handler, called in-process.
	API    http.Handler
	Logger *slog.Logger
}

// Handler serves the dashboard.
type Handler struct {
	mux   *http.ServeMux
	http  *http.Client
	log   *slog.Logger
	pages map[string]*template.Template
}

// New makes the dashboard's handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{http: &http.Client{Transport: inProcess{cfg.API}}, log: cfg.Logger, pages: parsePages()}
	h.mux = h.routes()
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// Cookies. Browsers accept a __Host- cookie only with Secure, and a Secure
// cookie only from a secure origin: HTTPS, or a loopback host (localhost,
// *.localhost, 127.0.0.1), which Chromium and Firefox count as secure even
// over plain HTTP. The embedded default (http://pier.localhost:8080) is
// such a host. Over plain HTTP on any other host (not recommended) the
// cookies lose the prefix and Secure, which such a browser would refuse.
const (
	sessionCookie = "pier_session"
	loginCookie   = "pier_login" // pre-session: the login form's CSRF secret
	flashCookie   = "pier_flash"
	hostPrefix    = "__Host-"
)

// secureOrigin reports whether the browser sees r's origin as secure.
func secureOrigin(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// CookieName is the name the dashboard gives cookie base on r's origin:
// __Host-<base> where the browser accepts it (see above), else <base>.
func CookieName(r *http.Request, base string) string {
	if secureOrigin(r) {
		return hostPrefix + base
	}
	return base
}

func setCookie(w http.ResponseWriter, r *http.Request, base, value string, expires time.Time) {
	c := &http.Cookie{
		Name: CookieName(r, base), Value: value, Path: "/",
		HttpOnly: true, Secure: secureOrigin(r), SameSite: http.SameSiteStrictMode,
	}
	if value == "" {
		c.MaxAge = -1
	} else if !expires.IsZero() {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

func cookieValue(r *http.Request, base string) string {
	c, err := r.Cookie(CookieName(r, base))
	if err != nil {
		return ""
	}
	return c.Value
}

// csrfToken is the token forms carry: an HMAC keyed by the secret the
// browser holds in an HttpOnly cookie (the session token, or before login
// the login cookie's random value). Another site can neither read the
// cookie nor so compute the token; the token does not reveal the cookie.
func csrfToken(secret, purpose string) string {
	if secret == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("pier-dashboard-csrf:" + purpose))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func validCSRF(r *http.Request, secret, purpose string) bool {
	want := csrfToken(secret, purpose)
	got := r.PostFormValue("csrf")
	return want != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin refuses a form posted from another origin when the browser
// says where it came from (defence in depth; the token is the check).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == "" // "null": sandboxed or privacy-stripped; refuse
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func randomValue() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// session is a signed-in request: its user and an API client with their token.
type session struct {
	user  *pier.User
	api   *client.Client
	token string
}

func (s *session) csrf() string { return csrfToken(s.token, "session") }

func (h *Handler) client(token string) *client.Client {
	return client.New("http://pier.internal", token, client.WithHTTPClient(h.http), client.WithTimeout(0), client.WithUserAgent("pier-dashboard"))
}

// authed wraps a page that needs a signed-in user. POSTs must carry the
// session's CSRF token. A missing or ended session goes to the login page.
func (h *Handler) authed(fn func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := cookieValue(r, sessionCookie)
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
			if token == "" || !sameOrigin(r) || !validCSRF(r, token, "session") {
				h.csrfRejected(w, r)
				return
			}
			// A change may wait for a rollout (the API's own bound is 15 min).
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(16 * time.Minute))
		}
		if token == "" {
			h.toLogin(w, r, "")
			return
		}
		api := h.client(token)
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		u, err := api.Whoami(ctx)
		cancel()
		if err != nil {
			if pier.ErrorCode(err) == pier.EUNAUTHORIZED {
				setCookie(w, r, sessionCookie, "", time.Time{})
				h.toLogin(w, r, "Your session has ended: log in again.")
				return
			}
			h.errorPage(w, r, nil, err)
			return
		}
		fn(w, r, &session{user: u, api: api, token: token})
	}
}

func (h *Handler) toLogin(w http.ResponseWriter, r *http.Request, msg string) {
	if msg != "" {
		h.flash(w, r, msg)
	}
	q := url.Values{}
	if r.Method == http.MethodGet && r.URL.Path != "/" {
		q.Set("next", r.URL.RequestURI())
	}
	target := "/login"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/apps"
	}
	return next
}

// flash leaves a short message for the next page (post, redirect, get).
func (h *Handler) flash(w http.ResponseWriter, r *http.Request, msg string) {
	if len(msg) > 600 {
		msg = msg[:600] + "…"
	}
	c := &http.Cookie{Name: CookieName(r, flashCookie), Value: base64.RawURLEncoding.EncodeToString([]byte(msg)), Path: "/",
		HttpOnly: true, Secure: secureOrigin(r), SameSite: http.SameSiteStrictMode, MaxAge: 60}
	http.SetCookie(w, c)
}

func (h *Handler) takeFlash(w http.ResponseWriter, r *http.Request) string {
	v := cookieValue(r, flashCookie)
	if v == "" {
		return ""
	}
	setCookie(w, r, flashCookie, "", time.Time{})
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// statusOf maps an API error to the page's HTTP status.
func statusOf(err error) int {
	switch pier.ErrorCode(err) {
	case pier.ENOTFOUND:
		return http.StatusNotFound
	case pier.EFORBIDDEN:
		return http.StatusForbidden
	case pier.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case pier.EINVALID:
		return http.StatusUnprocessableEntity
	case pier.ECONFLICT:
		return http.StatusConflict
	case pier.ETOOMANY:
		return http.StatusTooManyRequests
	case pier.EUNAVAILABLE: // such as the API's answer while Pier's database is down
		return http.StatusServiceUnavailable
	}
	var pe *pier.Error
	if errors.As(err, &pe) && pe.Code != pier.EINTERNAL {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// message is what a page says about err: the API's words, which say what
// to do; never the text of an internal error.
func message(err error) string {
	var pe *pier.Error
	if errors.As(err, &pe) && pe.Code != pier.EINTERNAL && pe.Message != "" {
		return pe.Message
	}
	return "Something went wrong on the server. Try again; if it goes on, ask your Pier operator to look at pierd's log."
}

func (h *Handler) routes() *http.ServeMux {
	m := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	files := http.StripPrefix("/assets/", http.FileServerFS(assets))
	m.Handle("GET /assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET /{$}", h.home)
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.loginPost)
	m.HandleFunc("POST /logout", h.authed(h.logout))
	m.HandleFunc("GET /apps", h.authed(h.appsPage))
	m.HandleFunc("POST /apps", h.authed(h.createApp))
	m.HandleFunc("GET /apps/{app}", h.authed(h.overview))
	m.HandleFunc("POST /apps/{app}/scale", h.authed(h.scale))
	m.HandleFunc("POST /apps/{app}/restart", h.authed(h.restart))
	m.HandleFunc("GET /apps/{app}/releases", h.authed(h.releasesPage))
	m.HandleFunc("GET /apps/{app}/releases/{version}/rollback", h.authed(h.rollbackPage))
	m.HandleFunc("POST /apps/{app}/releases/{version}/rollback", h.authed(h.rollback))
	m.HandleFunc("GET /apps/{app}/config", h.authed(h.configPage))
	m.HandleFunc("POST /apps/{app}/config", h.authed(h.setConfig))
	m.HandleFunc("POST /apps/{app}/config/unset", h.authed(h.unsetConfig))
	m.HandleFunc("GET /apps/{app}/domains", h.authed(h.domainsPage))
	m.HandleFunc("POST /apps/{app}/domains", h.authed(h.addDomain))
	m.HandleFunc("POST /apps/{app}/domains/remove", h.authed(h.removeDomain))
	m.HandleFunc("GET /apps/{app}/builds", h.authed(h.buildsPage))
	m.HandleFunc("GET /apps/{app}/builds/{id}", h.authed(h.buildPage))
	m.HandleFunc("GET /apps/{app}/logs", h.authed(h.logsPage))
	m.HandleFunc("GET /apps/{app}/logs/stream", h.authed(h.logStream))
	m.HandleFunc("GET /apps/{app}/access", h.authed(h.accessPage))
	m.HandleFunc("POST /apps/{app}/access", h.authed(h.addMember))
	m.HandleFunc("POST /apps/{app}/access/remove", h.authed(h.removeMember))
	m.HandleFunc("GET /apps/{app}/activity", h.authed(h.activityPage))
	m.HandleFunc("GET /apps/{app}/destroy", h.authed(h.destroyPage))
	m.HandleFunc("POST /apps/{app}/destroy", h.authed(h.destroy))
	m.HandleFunc("GET /account", h.authed(h.accountPage))
	m.HandleFunc("POST /account/keys", h.authed(h.addKey))
	m.HandleFunc("POST /account/keys/remove", h.authed(h.removeKey))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.errorPage(w, r, nil, pier.Errorf(pier.ENOTFOUND, "there is no page at %s: go to your apps", clip(r.URL.Path)))
	})
	return m
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
