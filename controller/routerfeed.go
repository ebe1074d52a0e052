package controller

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/pierpaas/pier"
)

// RouterFeedPath is where routers running alone (`pierd router`) follow
// the routing state, on the controller's internal listener only.
const RouterFeedPath = "/internal/v1/router/watch"

// RouteSource is where the feed finds the apps' ready web processes: the
// scheduler (router.RouteSource has this shape).
type RouteSource interface {
	Subscribe(fn func()) (cancel func())
	Routes() map[string][]string
}

// RouterWatcher follows the routing state kept in the store, calling fn now
// and after every change until ctx ends (postgres.DB implements it with
// LISTEN/NOTIFY).
type RouterWatcher interface {
	WatchDomains(ctx context.Context, log *slog.Logger, fn func(map[string]string))
	WatchCerts(ctx context.Context, log *slog.Logger, fn func(pier.TLSState))
	WatchRouterSettings(ctx context.Context, log *slog.Logger, fn func(map[string]pier.RouterSettings))
}

// ChallengeWatcher follows the ACME HTTP-01 challenges under way (token →
// key authorization). A RouterWatcher that is one also feeds them to the
// routers.
type ChallengeWatcher interface {
	WatchACMEChallenges(ctx context.Context, log *slog.Logger, fn func(map[string]string))
}

// RouterFeedConfig configures a RouterFeed.
type RouterFeedConfig struct {
	Tokens pier.ServiceTokenStore // checks the routers' service tokens
	Routes RouteSource            // nil: no routes (a scheduler without one)
	Watch  RouterWatcher          // nil: no domains, certificates or settings
	Logger *slog.Logger
	// Heartbeat is how often an idle stream says it is alive (and the
	// router's token is checked again); 0: 5 s. A router that hears
	// nothing for three heartbeats reconnects.
	Heartbeat time.Duration
	// Coalesce is how long a stream waits after a change before it sends
	// the snapshot, so that a burst of changes goes as one; 0: 10 ms.
	Coalesce time.Duration
}

// RouterFeed streams everything a router needs, whole, to routers running
// alone: at connect, and again after every change, pushed as the sources
// push it (the scheduler's route feed, Postgres notifications), never
// polled. Serve it on the internal listener only (InternalHandler).
type RouterFeed struct {
	cfg RouterFeedConfig
	log *slog.Logger

	mu      sync.Mutex
	st      pier.RouterState // its maps are replaced, never changed in place
	seq     uint64           // bumped on every change
	encoded []byte           // the snapshot frame of encSeq, shared by streams
	encSeq  uint64
	wake    chan struct{} // closed (and replaced) on every change
	loaded  int           // bit set of the store's parts loaded once
	need    int           // the bit set of every part this feed follows
	ready   chan struct{} // closed once every part has loaded
}

const (
	partDomains = iota
	partCerts
	partSettings
	partChallenges
)

// NewRouterFeed makes a feed; Run follows its sources.
func NewRouterFeed(cfg RouterFeedConfig) *RouterFeed {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = 10 * time.Millisecond
	}
	f := &RouterFeed{
		cfg: cfg, log: cfg.Logger,
		st: pier.RouterState{
			Routes: map[string][]string{}, Domains: map[string]string{}, Certs: []pier.RouterCert{},
			HTTPS: map[string]pier.HTTPSSettings{}, Settings: map[string]pier.RouterSettings{},
		},
		wake: make(chan struct{}), ready: make(chan struct{}),
	}
	if cfg.Watch != nil {
		f.need = 1<<partDomains | 1<<partCerts | 1<<partSettings
		if _, ok := cfg.Watch.(ChallengeWatcher); ok {
			f.need |= 1 << partChallenges
		}
	} else {
		close(f.ready)
	}
	return f
}

// Run follows the sources until ctx ends.
func (f *RouterFeed) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if src := f.cfg.Routes; src != nil {
		cancel := src.Subscribe(func() {
			routes := src.Routes()
			f.update(-1, func(st *pier.RouterState) { st.Routes = routes })
		})
		defer cancel()
		routes := src.Routes()
		f.update(-1, func(st *pier.RouterState) { st.Routes = routes })
	}
	if w := f.cfg.Watch; w != nil {
		wg.Add(3)
		go func() {
			defer wg.Done()
			w.WatchDomains(ctx, f.log, func(d map[string]string) {
				f.update(partDomains, func(st *pier.RouterState) { st.Domains = d })
			})
		}()
		go func() {
			defer wg.Done()
			w.WatchCerts(ctx, f.log, func(tls pier.TLSState) {
				certs := make([]pier.RouterCert, 0, len(tls.Certs))
				for _, c := range tls.Certs {
					certs = append(certs, pier.RouterCert{App: c.App, Name: c.Name, Domains: c.Domains, Chain: c.Chain, Key: c.Key})
				}
				https := tls.HTTPS
				if https == nil {
					https = map[string]pier.HTTPSSettings{}
				}
				f.update(partCerts, func(st *pier.RouterState) { st.Certs, st.HTTPS = certs, https })
			})
		}()
		go func() {
			defer wg.Done()
			w.WatchRouterSettings(ctx, f.log, func(s map[string]pier.RouterSettings) {
				f.update(partSettings, func(st *pier.RouterState) { st.Settings = s })
			})
		}()
	}
	// ACME HTTP-01 challenges, when the store keeps them: a router running
	// alone answers them like pierd all's.
	if cw, ok := f.cfg.Watch.(ChallengeWatcher); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cw.WatchACMEChallenges(ctx, f.log, func(c map[string]string) {
				f.update(partChallenges, func(st *pier.RouterState) { st.Challenges = c })
			})
		}()
	}
	<-ctx.Done()
	wg.Wait()
}

// update changes the state and wakes the streams. part (≥ 0) marks one of
// the store's parts as loaded; the first snapshot waits for all of them,
// so that a router never gets, say, the routes without the domains.
func (f *RouterFeed) update(part int, change func(*pier.RouterState)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	change(&st)
	f.st = st
	f.seq++
	close(f.wake)
	f.wake = make(chan struct{})
	if part >= 0 && f.loaded&(1<<part) == 0 {
		f.loaded |= 1 << part
		if f.loaded == f.need {
			close(f.ready)
		}
	}
}

// current returns the snapshot frame (encoded once per change, shared by
// every stream), its sequence number, and a channel closed at the next
// change.
func (f *RouterFeed) current() ([]byte, uint64, <-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.encSeq != f.seq || f.encoded == nil {
		st := f.st
		b, err := json.Marshal(pier.RouterFrame{Type: pier.RouterFrameSnapshot, Seq: f.seq, State: &st})
		if err != nil {
			return nil, 0, f.wake, err
		}
		f.encoded, f.encSeq = append(b, '\n'), f.seq
	}
	return f.encoded, f.seq, f.wake, nil
}

// State returns a copy of the current state (for tests and diagnostics).
func (f *RouterFeed) State() pier.RouterState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Routes = maps.Clone(st.Routes)
	return st
}

// writeTimeout bounds one frame's write: a router that stops reading is
// cut off rather than holding a goroutine and its snapshot forever.
const feedWriteTimeout = 30 * time.Second

var heartbeatFrame = []byte(`{"type":"` + pier.RouterFrameHeartbeat + `"}` + "\n")

// ServeHTTP serves GET RouterFeedPath to routers with a router service
// token: newline-delimited JSON pier.RouterFrame values, a snapshot at
// once (once the store has been read) and after every change, and
// heartbeats in between.
func (f *RouterFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, r, f.log, pier.Errorf(pier.EINVALID, "method %s is not allowed on %s: use GET", r.Method, RouterFeedPath))
		return
	}
	ctx := r.Context()
	tok, err := CheckServiceToken(ctx, f.cfg.Tokens, r.Header.Get("Authorization"), pier.ScopeRouter)
	if err != nil {
		if code := pier.ErrorCode(err); code == pier.EUNAUTHORIZED || code == pier.EFORBIDDEN {
			f.log.Warn("router feed: refused a client", "remote", r.RemoteAddr, "status", statusOf(code))
		}
		writeError(w, r, f.log, err)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(feedWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write(heartbeatFrame); err != nil {
		return
	}
	log := f.log.With("remote", r.RemoteAddr, "token", tok.ID)
	log.Info("router connected to the feed")
	defer log.Info("router left the feed")

	hb := time.NewTicker(f.cfg.Heartbeat)
	defer hb.Stop()
	// Until the store has been read once, only heartbeats.
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return
		case <-f.ready:
			waiting = false
		case <-hb.C:
			if write(heartbeatFrame) != nil {
				return
			}
		}
	}
	var sent uint64
	coalesce := time.NewTimer(0)
	<-coalesce.C
	for {
		b, seq, wake, err := f.current()
		if err != nil {
			log.Error("router feed: encoding the snapshot", "err", err)
			return
		}
		if seq != sent {
			if err := write(b); err != nil {
				log.Info("router feed: write failed", "err", err)
				return
			}
			sent = seq
			hb.Reset(f.cfg.Heartbeat)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			// Let a burst of changes settle into one snapshot.
			coalesce.Reset(f.cfg.Coalesce)
			select {
			case <-ctx.Done():
				return
			case <-coalesce.C:
			}
		case <-hb.C:
			// A revoked token loses its stream within a heartbeat. A store
			// that cannot answer now does not cut it.
			if _, err := CheckServiceToken(ctx, f.cfg.Tokens, r.Header.Get("Authorization"), pier.ScopeRouter); err != nil {
				if c := pier.ErrorCode(err); c == pier.EUNAUTHORIZED || c == pier.EFORBIDDEN {
					log.Warn("router feed: the router's service token was revoked: closing its stream")
					return
				}
			}
			if write(heartbeatFrame) != nil {
				return
			}
		}
	}
}

// InternalHandler is the controller's internal listener: the endpoints of
// platform components, each authenticated with a service token of its
// scope. Nothing of the public API is here, and none of this is there:
// serve it on its own (loopback or cluster-internal) address, never
// behind the public router.
func InternalHandler(feed *RouterFeed, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle(RouterFeedPath, feed)
	mux.HandleFunc("/internal/v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, log, pier.Errorf(pier.ENOTFOUND, "no such internal endpoint %s %s: routers follow %s; builders use %s (of pierd all)", r.Method, clipPath(r.URL.Path), RouterFeedPath, BuilderPathPrefix))
	})
	return mux
}
