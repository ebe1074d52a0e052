// Package router is Pier's edge: it maps a request's host to an app and
// proxies it to one of the app's ready web processes, round-robin. The route
// table is an immutable value swapped atomically, so the request path takes
// no lock.
package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config configures a Router.
type Config struct {
	// Domain is the platform domain: <app>.<Domain> reaches an app, and
	// <Domain> and pier.<Domain> reach API.
	Domain string
	API    http.Handler // the controller; nil answers 404 there
	// Known, if set, says whether an app without a route exists, so that it
	// gets "503 no process" rather than "404 no app". Only asked on that
	// slow path.
	Known  func(app string) bool
	Logger *slog.Logger
}

// Router is an http.Handler. Its zero value is not usable: call New.
type Router struct {
	domain string
	api    http.Handler
	known  func(string) bool
	log    *slog.Logger
	proxy  *httputil.ReverseProxy

	wmu   sync.Mutex // serializes writers of table; readers never lock
	table atomic.Pointer[table]
}

// table is one immutable snapshot of the routes.
type table struct {
	apps  map[string]*route // app → its ready backends
	exact map[string]string // custom hostname → app
	wild  map[string]string // "example.com" for "*.example.com" → app
	// raw inputs, to rebuild one half when the other changes
	routes  map[string][]string
	domains map[string]string
}

type route struct {
	app      string
	backends []string
	next     atomic.Uint64
}

// New returns a router with an empty route table.
func New(cfg Config) *Router {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rt := &Router{
		domain: normalizeHost(cfg.Domain),
		api:    cfg.API,
		known:  cfg.Known,
		log:    cfg.Logger,
	}
	transport := &http.Transport{
		Proxy: nil, // backends are local: never an environment proxy
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          10000,
		MaxIdleConnsPerHost:   1000, // keep-alive to busy backends instead of new connections per request
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite:      rt.rewrite,
		Transport:    &retrier{t: transport, r: rt},
		BufferPool:   bufferPool{},
		ErrorHandler: rt.proxyError,
		ErrorLog:     slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	rt.table.Store(buildTable(nil, nil))
	return rt
}

// Server returns an http.Server for the router with timeouts that bound slow
// clients without cutting WebSockets, streams or big uploads short.
func (rt *Router) Server(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           rt,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(rt.log.Handler(), slog.LevelWarn),
	}
}

// SetRoutes replaces every app's backends (host:port). An app present with
// an empty list exists but has nothing ready: it gets 503, not 404.
func (rt *Router) SetRoutes(routes map[string][]string) {
	rt.wmu.Lock()
	defer rt.wmu.Unlock()
	cp := make(map[string][]string, len(routes))
	for app, bs := range routes {
		cp[app] = append([]string(nil), bs...)
	}
	rt.table.Store(buildTable(cp, rt.table.Load().domains))
}

// SetDomains replaces the custom domains: hostname (or "*.example.com") → app.
func (rt *Router) SetDomains(domains map[string]string) {
	rt.wmu.Lock()
	defer rt.wmu.Unlock()
	cp := make(map[string]string, len(domains))
	for h, app := range domains {
		cp[normalizeHost(h)] = app
	}
	rt.table.Store(buildTable(rt.table.Load().routes, cp))
}

// RouteSource is what the router follows: the local scheduler provides it.
type RouteSource interface {
	Subscribe(fn func()) (cancel func())
	Routes() map[string][]string
}

// Follow keeps the route table equal to src's routes until cancel is called.
func (rt *Router) Follow(src RouteSource) (cancel func()) {
	cancel = src.Subscribe(func() { rt.SetRoutes(src.Routes()) })
	rt.SetRoutes(src.Routes())
	return cancel
}

func buildTable(routes map[string][]string, domains map[string]string) *table {
	t := &table{apps: make(map[string]*route, len(routes)), exact: map[string]string{}, wild: map[string]string{}, routes: routes, domains: domains}
	for app, bs := range routes {
		t.apps[app] = &route{app: app, backends: bs}
	}
	for h, app := range domains {
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			t.wild[rest] = app
		} else {
			t.exact[h] = app
		}
	}
	return t
}

func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// resolve maps a normalized host to an app: custom hostname first, then the
// platform subdomain, then a wildcard one label up.
func (rt *Router) resolve(t *table, host string) (string, bool) {
	if app, ok := t.exact[host]; ok {
		return app, true
	}
	label, rest, ok := strings.Cut(host, ".")
	if !ok {
		return "", false
	}
	if rest == rt.domain {
		return label, true
	}
	app, ok := t.wild[rest]
	return app, ok
}

type ctxKey struct{}

// target is the backend chosen for one request, and its app's route.
type target struct {
	app  string
	addr string
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := normalizeHost(r.Host)
	if host == rt.domain || host == "pier."+rt.domain {
		if rt.api == nil {
			page(w, http.StatusNotFound, "No app at this address", "This Pier has no API here.")
			return
		}
		rt.api.ServeHTTP(w, r)
		return
	}
	t := rt.table.Load()
	app, ok := rt.resolve(t, host)
	if !ok {
		page(w, http.StatusNotFound, "No app at this address", "There is no app at this address on this Pier.")
		return
	}
	rte := t.apps[app]
	if rte == nil || len(rte.backends) == 0 {
		if rte == nil && (rt.known == nil || !rt.known(app)) {
			page(w, http.StatusNotFound, "No app at this address", "There is no app at this address on this Pier.")
			return
		}
		w.Header().Set("Retry-After", "5")
		page(w, http.StatusServiceUnavailable, "No process is running", "This app has no web process ready to answer. Try again in a moment.")
		return
	}
	addr := rte.backends[rte.next.Add(1)%uint64(len(rte.backends))]
	ctx := context.WithValue(r.Context(), ctxKey{}, &target{app: app, addr: addr})
	rt.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func (rt *Router) rewrite(pr *httputil.ProxyRequest) {
	tg := pr.In.Context().Value(ctxKey{}).(*target)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = tg.addr
	// Apps see the host they were called by, as on Heroku.
	pr.Out.Host = pr.In.Host
	// Rewrite has already dropped the client's X-Forwarded-*; these claim
	// the same and are as untrustworthy.
	pr.Out.Header.Del("Forwarded")
	pr.Out.Header.Del("X-Real-Ip")
	pr.SetXForwarded()
}

// retrier retries a request whose backend could not be reached on another
// ready backend of the app, once, when that is safe: an idempotent method and
// no body. Backends vanish during deploys; this hides the gap.
type retrier struct {
	t *http.Transport
	r *Router
}

func (rr *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rr.t.RoundTrip(req)
	if err == nil || !retryable(req, err) {
		return resp, err
	}
	tg, _ := req.Context().Value(ctxKey{}).(*target)
	if tg == nil {
		return resp, err
	}
	// The table may have changed since the pick (a deploy): use the current one.
	rte := rr.r.table.Load().apps[tg.app]
	if rte == nil {
		return resp, err
	}
	n := len(rte.backends)
	for i := 0; i < n; i++ {
		addr := rte.backends[rte.next.Add(1)%uint64(n)]
		if addr == tg.addr {
			continue
		}
		again := req.Clone(req.Context())
		again.URL.Host = addr
		return rr.t.RoundTrip(again)
	}
	return resp, err
}

func retryable(req *http.Request, err error) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	if req.Context().Err() != nil {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	// The backend closed the connection without answering: it is going away.
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func (rt *Router) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client left; nobody to answer
	}
	tg, _ := r.Context().Value(ctxKey{}).(*target)
	app := ""
	if tg != nil {
		app = tg.app
	}
	rt.log.Warn("backend error", "app", app, "err", err)
	page(w, http.StatusBadGateway, "The app did not answer", "This app's process could not be reached or broke off its answer.")
}

func page(w http.ResponseWriter, status int, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>"+title+" · Pier</title></head>\n<body style=\"font-family:sans-serif;margin:4em auto;max-width:36em\">\n<h1>"+title+"</h1>\n<p>"+text+"</p>\n<p><small>Pier</small></p>\n</body></html>\n")
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
