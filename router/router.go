// Package router is Pier's edge: it maps a request's host to an app and
// proxies it to one of the app's ready web processes, round-robin. The route
// table is an immutable value swapped atomically, so the request path takes
// no lock.
package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// TrustedProxies are the networks of the proxies in front of the router
	// (a load balancer). From them, X-Forwarded-For is kept and the client's
	// address appended, and X-Forwarded-Proto, X-Forwarded-Host and
	// X-Request-ID are believed; from anyone else they are replaced, since
	// apps use them for rate limits, redirects and audit logs.
	TrustedProxies []netip.Prefix
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's headers; 0 means 10 s.
	ReadHeaderTimeout time.Duration
	// EjectFor is how long a backend that refused a connection gets no new
	// requests while the app has others; 0 means 2 s. A backend refusing
	// connections is usually a process going away during a deploy, before
	// the scheduler's next update of the routes says so.
	EjectFor time.Duration
	// BodyLimit is the largest request body an app is sent, in bytes,
	// unless its settings say otherwise (SetSettings); 0: none. Timeout
	// is how long the router waits for an app's answer headers (not its
	// body), unless its settings say otherwise; 0: as long as it takes.
	BodyLimit int64
	Timeout   time.Duration
	// Metrics, if set, receives the router's Prometheus series
	// (pier_router_requests_total, pier_router_request_duration_seconds).
	Metrics prometheus.Registerer
	// AccessLog, if set, gets one line per app request (never its query
	// string); nil turns the access log off.
	AccessLog *slog.Logger

	// HTTPSPort is the port HTTPS redirects name (0 or 443: none); see
	// TLSConfig and SetHTTPS (tls.go).
	HTTPSPort int
}

// Router is an http.Handler. Its zero value is not usable: call New.
type Router struct {
	domain string
	api    http.Handler
	known  func(string) bool
	log    *slog.Logger
	proxy  *httputil.ReverseProxy

	trusted           []netip.Prefix
	metrics           *metrics     // nil: none
	access            *slog.Logger // nil: no access log
	readHeaderTimeout time.Duration
	ejectFor          time.Duration
	defaults          *appSettings // for apps without settings; nil: none (settings.go)

	wmu   sync.Mutex // serializes writers of table; readers never lock
	table atomic.Pointer[table]

	// TLS (tls.go)
	certs        atomic.Pointer[certSet]
	platformCert atomic.Pointer[tls.Certificate] // the platform domain's names; nil: none
	httpsPort    string                          // in redirects; "" for 443

	challenges atomic.Pointer[map[string]string] // ACME HTTP-01: token → key authorization (acme.go)
}

// table is one immutable snapshot of the routes.
type table struct {
	apps  map[string]*route // app → its ready backends
	exact map[string]string // custom hostname → app
	wild  map[string]string // "example.com" for "*.example.com" → app
	// raw inputs, to rebuild one half when the other changes
	routes  map[string][]string
	domains map[string]string
	https   map[string]httpsFlags // app → HTTPS flags (tls.go)
	// settings are the apps' router settings (settings.go)
	settings map[string]*appSettings
}

type route struct {
	app      string
	backends []*backend
	next     atomic.Uint64
	https    httpsFlags   // HTTPS redirect and HSTS (tls.go)
	cfg      *appSettings // the app's router settings; nil: none (settings.go)
}

// backend is one address of an app with its passive health. It outlives
// route tables: the same address keeps its state across swaps.
type backend struct {
	addr string
	ap   netip.AddrPort // addr, when it is an IP address and port (the fast path's condition)
	// down is the time (Unix ns) until which the backend gets no new
	// requests, because it refused a connection; 0 when up.
	down atomic.Int64
}

// pick returns the next backend in turn, skipping those that are down.
func (r *route) pick() *backend {
	i := r.next.Add(1)
	b := r.backends[i%uint64(len(r.backends))]
	if b.down.Load() == 0 {
		return b
	}
	return r.pickUp(i, "")
}

// pickUp is pick's slow path: the first backend from i on that is up and
// is not addr. A backend whose time out is over is up again; if it still
// refuses, it is ejected again. With every backend down, the one in turn
// is tried rather than refusing the request: maybe it is back.
func (r *route) pickUp(i uint64, addr string) *backend {
	now := time.Now().UnixNano()
	n := uint64(len(r.backends))
	for k := range n {
		b := r.backends[(i+k)%n]
		if b.addr == addr {
			continue
		}
		d := b.down.Load()
		if d != 0 && now >= d {
			b.down.CompareAndSwap(d, 0)
			d = 0
		}
		if d == 0 {
			return b
		}
	}
	if addr != "" {
		return nil
	}
	return r.backends[i%n]
}

// New returns a router with an empty route table.
func New(cfg Config) *Router {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rt := &Router{
		domain:            normalizeHost(cfg.Domain),
		api:               cfg.API,
		known:             cfg.Known,
		log:               cfg.Logger,
		readHeaderTimeout: cfg.ReadHeaderTimeout,
		ejectFor:          cfg.EjectFor,
		access:            cfg.AccessLog,
		httpsPort:         httpsPortOf(cfg.HTTPSPort),
	}
	if cfg.Metrics != nil {
		rt.metrics = newMetrics(cfg.Metrics)
	}
	if rt.readHeaderTimeout <= 0 {
		rt.readHeaderTimeout = 10 * time.Second
	}
	if rt.ejectFor <= 0 {
		rt.ejectFor = 2 * time.Second
	}
	rt.defaults = defaultSettings(cfg)
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			continue
		}
		// Clients reach a dual-stack listener as ::ffff:a.b.c.d; the
		// address is compared unmapped, so the prefix must be too.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		rt.trusted = append(rt.trusted, p.Masked())
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
		Rewrite:        rt.rewrite,
		Transport:      headerDeadline{&retrier{t: transport, r: rt}}, // per-app timeouts (settings.go)
		BufferPool:     bufferPool{},
		ModifyResponse: rt.modifyResponse,
		ErrorHandler:   rt.proxyError,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		// Responses without a length (SSE, chunked streams) are flushed
		// as they come by ReverseProxy already; the rest are copied
		// through the buffer and flushed at the end.
	}
	rt.table.Store(buildTable(nil, nil, nil))
	return rt
}

// Server returns an http.Server for the router with timeouts that bound slow
// clients without cutting WebSockets, streams or big uploads short: no
// ReadTimeout or WriteTimeout, which would end an SSE stream or a long
// download. Serve it on rt.Listener(ln), which lets it refuse smuggling
// attempts. Shutdown drains it: in-flight requests finish, new connections
// are refused.
func (rt *Router) Server(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           rt,
		ReadHeaderTimeout: rt.readHeaderTimeout,
		IdleTimeout:       120 * time.Second,
		// Past this (and net/http's 4 KB of slack) a client gets 431.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(rt.log.Handler(), slog.LevelWarn),
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
	old := rt.table.Load()
	rt.table.Store(buildTable(cp, old.domains, old))
}

// SetDomains replaces the custom domains: hostname (or "*.example.com") → app.
func (rt *Router) SetDomains(domains map[string]string) {
	rt.wmu.Lock()
	defer rt.wmu.Unlock()
	cp := make(map[string]string, len(domains))
	for h, app := range domains {
		cp[normalizeHost(h)] = app
	}
	old := rt.table.Load()
	rt.table.Store(buildTable(old.routes, cp, old))
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

// buildTable makes a table; backends already in old keep their health.
func buildTable(routes map[string][]string, domains map[string]string, old *table) *table {
	t := &table{apps: make(map[string]*route, len(routes)), exact: map[string]string{}, wild: map[string]string{}, routes: routes, domains: domains}
	for app, addrs := range routes {
		r := &route{app: app, backends: make([]*backend, len(addrs))}
		var was []*backend
		if old != nil && old.apps[app] != nil {
			was = old.apps[app].backends
		}
		for i, a := range addrs {
			r.backends[i] = newBackend(a)
			for _, b := range was {
				if b.addr == a {
					r.backends[i] = b
					break
				}
			}
		}
		t.apps[app] = r
	}
	if old != nil {
		t.setHTTPS(old.https)       // HTTPS flags carry over (tls.go)
		t.setSettings(old.settings) // and router settings (settings.go)
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

func newBackend(addr string) *backend {
	b := &backend{addr: addr}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		b.ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return b
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

// target is what the router decided for one request.
type target struct {
	app     string
	b       *backend
	id      []string // X-Request-ID, as a header value
	trusted bool     // the client is a trusted proxy
	hsts    bool     // answer with Strict-Transport-Security (over TLS, app with HSTS on)
	status  int      // the answer's status, once known (0: the client left first)
	timing           // body limit and timeout (settings.go)
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// ACME HTTP-01 challenges of Pier's own orders come first (acme.go).
	if strings.HasPrefix(r.URL.Path, ACMEChallengePath) && rt.serveChallenge(w, r) {
		return
	}
	host := normalizeHost(r.Host)
	if host == rt.domain || host == "pier."+rt.domain {
		if rt.api == nil {
			page(w, http.StatusNotFound, "No app at this address", "This Pier has no API here.")
			return
		}
		rt.api.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	t := rt.table.Load()
	app, ok := rt.resolve(t, host)
	if !ok {
		page(w, http.StatusNotFound, "No app at this address", "There is no app at this address on this Pier.")
		rt.done(r, "", http.StatusNotFound, start, "")
		return
	}
	rte := t.apps[app]
	// The app's settings (settings.go): allowlist, maintenance, body limit.
	cfg := rt.settingsOf(t, rte, app)
	if cfg != nil {
		if code := rt.admit(w, r, cfg); code != 0 {
			rt.done(r, app, code, start, "")
			return
		}
	}
	if rte == nil || len(rte.backends) == 0 {
		if rte == nil && (rt.known == nil || !rt.known(app)) {
			page(w, http.StatusNotFound, "No app at this address", "There is no app at this address on this Pier.")
			rt.done(r, "", http.StatusNotFound, start, "")
			return
		}
		w.Header().Set("Retry-After", "5")
		page(w, http.StatusServiceUnavailable, "No process is running", "This app has no web process ready to answer. Try again in a moment.")
		rt.done(r, app, http.StatusServiceUnavailable, start, "")
		return
	}
	if rte.https&flagRedirect != 0 && rt.redirectHTTPS(w, r, host) {
		rt.done(r, app, http.StatusPermanentRedirect, start, "")
		return
	}
	tg := &target{app: app, b: rte.pick(), trusted: rt.trusts(r.RemoteAddr), hsts: r.TLS != nil && rte.https&flagHSTS != 0}
	if tg.trusted {
		if v := r.Header["X-Request-Id"]; len(v) == 1 && validRequestID(v[0]) {
			tg.id = v
		}
	}
	if tg.id == nil {
		tg.id = []string{newRequestID()}
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, tg)
	if cfg != nil {
		ctx = rt.limitRequest(w, r, ctx, tg, cfg) // settings.go
		if tg.cancel != nil {
			defer tg.cancel()
		}
	}
	rt.proxy.ServeHTTP(w, r.WithContext(ctx))
	if rt.metrics != nil || rt.access != nil {
		status := tg.status
		if status == 0 {
			status = 499 // the client went away before an answer (nginx's word for it)
		}
		rt.done(r, app, status, start, tg.id[0])
	}
}

// trusts says whether remote (the connection's host:port) is in a trusted
// proxy network.
func (rt *Router) trusts(remote string) bool {
	if len(rt.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range rt.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// newRequestID returns 128 random bits in hex. math/rand/v2's generator is
// per-thread ChaCha8 seeded by the OS: unguessable enough for an ID that is
// no secret, and far cheaper than a system call.
func newRequestID() string {
	const digits = "0123456789abcdef"
	var b [32]byte
	for half, v := range [2]uint64{rand.Uint64(), rand.Uint64()} {
		for i := range 16 {
			b[half*16+i] = digits[v>>(60-4*i)&0xf]
		}
	}
	return string(b[:])
}

// validRequestID accepts what a proxy in front may have set: 1 to 200
// visible ASCII characters, so that it can go into logs and headers as is.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// rewrite makes the outgoing request. ReverseProxy has already removed the
// hop-by-hop headers, including those the client named in Connection, and
// the client's X-Forwarded-*; what is set here comes after, so no
// `Connection: X-Forwarded-For` can remove it.
func (rt *Router) rewrite(pr *httputil.ProxyRequest) {
	tg := pr.In.Context().Value(ctxKey{}).(*target)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = tg.b.addr
	// Apps see the host they were called by, as on Heroku.
	pr.Out.Host = pr.In.Host
	h := pr.Out.Header
	// These claim what X-Forwarded-* claim, and are as untrustworthy.
	delete(h, "Forwarded")
	delete(h, "X-Real-Ip")
	// Not hop-by-hop by name, but "httpoxy": CGI turns it into HTTP_PROXY.
	delete(h, "Proxy")
	if tg.trusted {
		if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
			h["X-Forwarded-For"] = v // SetXForwarded appends the client
		}
	}
	pr.SetXForwarded()
	if tg.trusted {
		// The proxy in front terminated TLS, or was called by another name.
		if v := pr.In.Header.Get("X-Forwarded-Proto"); v == "http" || v == "https" {
			h["X-Forwarded-Proto"] = []string{v}
		}
		if v := pr.In.Header.Get("X-Forwarded-Host"); v != "" {
			h["X-Forwarded-Host"] = []string{v}
		}
	}
	h["X-Request-Id"] = tg.id
	if pr.Out.Body != nil {
		pr.Out.Body = &trackedBody{ReadCloser: pr.Out.Body}
	}
}

// modifyResponse gives the client the request's ID, whatever the app set,
// so that a user's report can be matched with the app's logs.
func (rt *Router) modifyResponse(resp *http.Response) error {
	if tg, _ := resp.Request.Context().Value(ctxKey{}).(*target); tg != nil {
		resp.Header["X-Request-Id"] = tg.id
		if tg.hsts {
			resp.Header["Strict-Transport-Security"] = hstsValue
		}
		tg.status = resp.StatusCode
	}
	return nil
}

// retrier sends a request on to another ready backend of the app, once, when
// the first one provably never received it: the connection could not be
// made, and the body (if any) is untouched. That holds for any method.
// Once a backend has the request, even a reset is not retried: the app may
// have acted on it. A backend that refuses connections is ejected for
// EjectFor, so that the requests after this one do not pay for a retry.
// Backends vanish during deploys; this hides the gap.
type retrier struct {
	t *http.Transport
	r *Router
}

func (rr *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rr.t.RoundTrip(req)
	if err == nil {
		return resp, nil
	}
	tg, _ := req.Context().Value(ctxKey{}).(*target)
	if tg == nil || !isDial(err) {
		return resp, err
	}
	rr.r.eject(tg.app, tg.b)
	if req.Context().Err() != nil {
		return resp, err
	}
	if body, ok := req.Body.(*trackedBody); ok && body.read.Load() {
		return resp, err
	}
	// The table may have changed since the pick (a deploy): use the current one.
	rte := rr.r.table.Load().apps[tg.app]
	if rte == nil {
		return resp, err
	}
	b := rte.pickUp(rte.next.Add(1), tg.b.addr)
	if b == nil {
		return resp, err
	}
	again := req.Clone(req.Context())
	again.URL.Host = b.addr
	resp, err = rr.t.RoundTrip(again)
	if err != nil && isDial(err) {
		rr.r.eject(tg.app, b)
	}
	return resp, err
}

// isDial says whether err means the connection to the backend was never
// made, so it never saw the request.
func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// eject keeps b out of the rotation for a while.
func (rt *Router) eject(app string, b *backend) {
	if b.down.Swap(time.Now().Add(rt.ejectFor).UnixNano()) == 0 {
		rt.log.Warn("backend refused a connection: sending its app's requests to its other processes for a while", "app", app, "backend", b.addr, "for", rt.ejectFor)
	}
}

// trackedBody tells whether the transport has started to send a request's
// body, which rules out sending it again. The transport closes a body when
// it cannot connect; this one stays open for the retry, and ReverseProxy
// closes what it wraps when the request is done.
type trackedBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

func (b *trackedBody) Close() error { return nil }

func (rt *Router) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if tg, _ := r.Context().Value(ctxKey{}).(*target); rt.settingsError(w, r, tg, err) {
		return // 413 or 504 (settings.go)
	}
	if r.Context().Err() != nil {
		return // the client left; nobody to answer
	}
	tg, _ := r.Context().Value(ctxKey{}).(*target)
	if tg == nil {
		rt.log.Warn("backend error", "err", err)
	} else {
		w.Header()["X-Request-Id"] = tg.id
		if tg.hsts {
			w.Header()["Strict-Transport-Security"] = hstsValue
		}
		tg.status = http.StatusBadGateway
		rt.log.Warn("backend error", "app", tg.app, "request_id", tg.id[0], "err", err)
	}
	page(w, http.StatusBadGateway, "The app did not answer", "This app's process could not be reached or broke off its answer.")
}

// ParsePrefixes reads a comma-separated list of networks and addresses,
// such as "10.0.0.0/8, 192.168.1.7, fd00::/8", for Config.TrustedProxies.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil && a.Zone() == "" {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		return nil, fmt.Errorf("%q is neither a network such as 10.0.0.0/8 nor an address such as 10.1.2.3", f)
	}
	return out, nil
}

func page(w http.ResponseWriter, status int, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, pageHTML(title, text))
}

func pageHTML(title, text string) string {
	return "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + title + " · Pier</title></head>\n<body style=\"font-family:sans-serif;margin:4em auto;max-width:36em\">\n<h1>" + title + "</h1>\n<p>" + text + "</p>\n<p><small>Pier</small></p>\n</body></html>\n"
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
