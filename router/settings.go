package router

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pierpaas/pier"
)

// appSettings are an app's pier.RouterSettings merged with the platform's
// defaults (Config.BodyLimit, Config.Timeout) and made ready for the
// request path: parsed networks, durations. Immutable once built, shared
// by the tables that carry it.
type appSettings struct {
	maintenance bool
	allow       []netip.Prefix // nil: everyone; empty and not nil: no one
	bodyLimit   int64          // bytes; 0: none
	timeout     time.Duration  // wait for the answer's headers; 0: none
	limitPage   string         // the 413 page's text
}

// defaultSettings are what apps without settings get: nil when the
// platform sets neither a body limit nor a timeout, so that their requests
// skip every check.
func defaultSettings(cfg Config) *appSettings {
	if cfg.BodyLimit <= 0 && cfg.Timeout <= 0 {
		return nil
	}
	s := &appSettings{bodyLimit: max(cfg.BodyLimit, 0), timeout: max(cfg.Timeout, 0)}
	s.limitPage = limitText(s.bodyLimit)
	return s
}

// compile makes one app's settings. Settings come validated from the
// store; whatever does not validate here is logged and, for the allowlist,
// fails closed: an allowlist that cannot be read lets no one in.
func (rt *Router) compile(app string, s pier.RouterSettings) *appSettings {
	c := &appSettings{maintenance: s.Maintenance}
	if rt.defaults != nil {
		c.bodyLimit, c.timeout = rt.defaults.bodyLimit, rt.defaults.timeout
	}
	if len(s.Allow) > 0 {
		ps, err := pier.ParseAllow(s.Allow)
		if err != nil {
			rt.log.Error("app's allowlist does not parse: refusing every client until it is fixed (`pier router:set --allow`)", "app", app, "err", err)
			ps = []netip.Prefix{}
		}
		c.allow = ps
	}
	if s.BodyLimitBytes != 0 {
		if err := pier.ValidateBodyLimit(s.BodyLimitBytes); err != nil {
			rt.log.Error("app's body limit is invalid: using the platform's", "app", app, "err", err)
		} else {
			c.bodyLimit = s.BodyLimitBytes
		}
	}
	if s.TimeoutSeconds != 0 {
		if err := pier.ValidateTimeout(s.TimeoutSeconds); err != nil {
			rt.log.Error("app's timeout is invalid: using the platform's", "app", app, "err", err)
		} else {
			c.timeout = s.Timeout()
		}
	}
	c.limitPage = limitText(c.bodyLimit)
	return c
}

func limitText(n int64) string {
	return "This app accepts request bodies of at most " + strconv.FormatInt(n, 10) + " bytes."
}

// SetSettings replaces every app's router settings: maintenance, allowlist,
// body limit and timeout. Apps absent have the platform's behaviour. The
// settings are precomputed onto the route table, so a request reads them
// with its route.
func (rt *Router) SetSettings(settings map[string]pier.RouterSettings) {
	cp := make(map[string]*appSettings, len(settings))
	for app, s := range settings {
		if s.IsZero() {
			continue
		}
		cp[app] = rt.compile(app, s)
	}
	rt.wmu.Lock()
	defer rt.wmu.Unlock()
	old := rt.table.Load()
	t := buildTable(old.routes, old.domains, old)
	t.setSettings(cp)
	rt.table.Store(t)
}

// setSettings records the settings on a table being built and puts each
// app's on its route.
func (t *table) setSettings(m map[string]*appSettings) {
	t.settings = m
	for app, r := range t.apps {
		r.cfg = m[app]
	}
}

// settingsOf returns the settings that apply to app, nil for none: its
// route's, or for an app without a route (no process ready), the table's.
func (rt *Router) settingsOf(t *table, rte *route, app string) *appSettings {
	if rte == nil {
		return t.settings[app] // maintenance shows with no process ready
	}
	if rte.cfg != nil {
		return rte.cfg
	}
	return rt.defaults
}

// admit answers a request its app's settings refuse, and returns the
// status it answered (0: go on). The allowlist comes first, so that a
// client it keeps out learns nothing, not even that the app is down for
// maintenance.
func (rt *Router) admit(w http.ResponseWriter, r *http.Request, c *appSettings) int {
	if c.allow != nil && !c.allows(rt.clientAddr(r)) {
		page(w, http.StatusForbidden, "Forbidden", "This app does not accept requests from your network.")
		return http.StatusForbidden
	}
	if c.maintenance {
		w.Header().Set("Retry-After", "300")
		page(w, http.StatusServiceUnavailable, "Down for maintenance", "This app is down for maintenance. Please try again in a few minutes.")
		return http.StatusServiceUnavailable
	}
	if c.bodyLimit > 0 && r.ContentLength > c.bodyLimit {
		// Not reading the body: net/http closes the connection after
		// the answer rather than drain a large one.
		page(w, http.StatusRequestEntityTooLarge, "Request body too large", c.limitPage)
		return http.StatusRequestEntityTooLarge
	}
	return 0
}

func (c *appSettings) allows(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range c.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address of the client for the allowlist: the
// connection's, or, when the connection is from a trusted proxy, the
// nearest address in X-Forwarded-For that is not a trusted proxy (the
// entries to its left were written by the client or by proxies no one
// vouches for, so they count for nothing). The zero Addr, which no
// allowlist lets in, when an entry that counts does not parse.
func (rt *Router) clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap()
	if !rt.trustsAddr(a) {
		return a
	}
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			var hop string
			if k := strings.LastIndexByte(v, ','); k >= 0 {
				hop, v = v[k+1:], v[:k]
			} else {
				hop, v = v, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			h, err := netip.ParseAddr(hop)
			if err != nil {
				// "[2001:db8::1]:443" and "1.2.3.4:80" are seen in the wild.
				hp, err2 := netip.ParseAddrPort(hop)
				if err2 != nil {
					return netip.Addr{}
				}
				h = hp.Addr()
			}
			a = h.Unmap().WithZone("")
			if !rt.trustsAddr(a) {
				return a
			}
		}
	}
	// Only trusted proxies on the way: the nearest is the client.
	return a
}

func (rt *Router) trustsAddr(a netip.Addr) bool {
	for _, p := range rt.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// limitRequest applies the settings that go with the request to the
// backend: a body without a length is cut past the limit, as
// http.MaxBytesReader does (the backend never receives more; the client
// gets 413 if no answer began), and the wait for the answer's headers is
// bounded. The returned context is the request's from then on; tg.cancel,
// when set, must be called once the request is done.
func (rt *Router) limitRequest(w http.ResponseWriter, r *http.Request, ctx context.Context, tg *target, c *appSettings) context.Context {
	if c.bodyLimit > 0 && r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, c.bodyLimit)
	}
	tg.bodyLimit = c.bodyLimit
	if c.timeout > 0 {
		tg.timeout = c.timeout
		ctx, tg.cancel = context.WithCancel(ctx)
	}
	return ctx
}

// timing holds a request's settings that the transport and the error
// handler need; embedded in target.
type timing struct {
	bodyLimit int64
	timeout   time.Duration
	cancel    context.CancelFunc // ends the request's context (the timeout's)
	timedOut  atomic.Bool
}

// errHeaderTimeout is a request whose answer's headers did not come in time.
var errHeaderTimeout = errors.New("the app did not start its answer within its timeout")

// headerDeadline bounds the wait for an answer's headers by the app's
// timeout. http.Transport's ResponseHeaderTimeout is one for all apps, and
// a context deadline would also end a streamed body (SSE, a long
// download): here a timer cancels the request's context only if it fires
// before the headers came, and is stopped as soon as they do, so the body
// then streams for as long as it takes.
type headerDeadline struct{ next http.RoundTripper }

func (h headerDeadline) RoundTrip(req *http.Request) (*http.Response, error) {
	tg, _ := req.Context().Value(ctxKey{}).(*target)
	if tg == nil || tg.timeout <= 0 || tg.cancel == nil {
		return h.next.RoundTrip(req)
	}
	timer := time.AfterFunc(tg.timeout, func() {
		tg.timedOut.Store(true)
		tg.cancel()
	})
	resp, err := h.next.RoundTrip(req)
	if !timer.Stop() {
		// Fired: the context is cancelled, so even headers that came at
		// that very moment have a body that is cut. Answer 504.
		if resp != nil {
			resp.Body.Close()
		}
		return nil, errHeaderTimeout
	}
	return resp, err
}

// settingsError answers the errors the settings cause, and says whether
// it did: 413 for a body cut at the limit, 504 for an answer that did not
// start in time.
func (rt *Router) settingsError(w http.ResponseWriter, r *http.Request, tg *target, err error) bool {
	if tg == nil {
		return false
	}
	var tooLarge *http.MaxBytesError
	switch {
	case tg.timedOut.Load():
		w.Header()["X-Request-Id"] = tg.id
		tg.status = http.StatusGatewayTimeout
		rt.log.Warn("app did not answer in time", "app", tg.app, "request_id", tg.id[0], "timeout", tg.timeout)
		page(w, http.StatusGatewayTimeout, "The app did not answer in time", "This app took longer than "+tg.timeout.String()+" to start its answer.")
		return true
	case tg.bodyLimit > 0 && errors.As(err, &tooLarge):
		w.Header()["X-Request-Id"] = tg.id
		tg.status = http.StatusRequestEntityTooLarge
		page(w, http.StatusRequestEntityTooLarge, "Request body too large", limitText(tg.bodyLimit))
		return true
	}
	return false
}
