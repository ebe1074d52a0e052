package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
	"github.com/pierpaas/pier/controller"
)

// fakeServiceTokens keeps service tokens by hash in memory.
type fakeServiceTokens struct {
	mu     sync.Mutex
	byHash map[string]pier.ServiceToken
}

func (f *fakeServiceTokens) add(scope string) string {
	token, prefix := controller.NewServiceTokenSecret(scope)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byHash == nil {
		f.byHash = map[string]pier.ServiceToken{}
	}
	f.byHash[controller.HashServiceToken(token)] = pier.ServiceToken{ID: int64(len(f.byHash) + 1), Scope: scope, Prefix: prefix}
	return token
}

func (f *fakeServiceTokens) revoke(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byHash, controller.HashServiceToken(token))
}

func (f *fakeServiceTokens) CreateServiceToken(context.Context, *pier.ServiceToken, string) error {
	return errors.New("not here")
}
func (f *fakeServiceTokens) ListServiceTokens(context.Context) ([]pier.ServiceToken, error) {
	return nil, nil
}
func (f *fakeServiceTokens) RevokeServiceToken(context.Context, int64, string) error { return nil }
func (f *fakeServiceTokens) ServiceTokenByHash(_ context.Context, hash string) (*pier.ServiceToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.byHash[hash]
	if !ok {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "unknown")
	}
	return &t, nil
}

// fakeRoutes is a scheduler's route feed.
type fakeRoutes struct {
	mu     sync.Mutex
	routes map[string][]string
	subs   []func()
}

func (r *fakeRoutes) Subscribe(fn func()) func() {
	r.mu.Lock()
	r.subs = append(r.subs, fn)
	r.mu.Unlock()
	return func() {}
}

func (r *fakeRoutes) Routes() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.routes)
}

func (r *fakeRoutes) set(app string, addrs ...string) {
	r.mu.Lock()
	if r.routes == nil {
		r.routes = map[string][]string{}
	}
	r.routes[app] = addrs
	subs := append([]func(){}, r.subs...)
	r.mu.Unlock()
	for _, fn := range subs {
		fn()
	}
}

// fakeWatcher is the store's watches: each part is loaded when the test
// says so.
type fakeWatcher struct {
	domains  chan map[string]string
	tls      chan pier.TLSState
	settings chan map[string]pier.RouterSettings
}

func newFakeWatcher() *fakeWatcher {
	return &fakeWatcher{make(chan map[string]string, 8), make(chan pier.TLSState, 8), make(chan map[string]pier.RouterSettings, 8)}
}

func follow[T any](ctx context.Context, ch chan T, fn func(T)) {
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-ch:
			fn(v)
		}
	}
}

func (w *fakeWatcher) WatchDomains(ctx context.Context, _ *slog.Logger, fn func(map[string]string)) {
	follow(ctx, w.domains, fn)
}
func (w *fakeWatcher) WatchCerts(ctx context.Context, _ *slog.Logger, fn func(pier.TLSState)) {
	follow(ctx, w.tls, fn)
}
func (w *fakeWatcher) WatchRouterSettings(ctx context.Context, _ *slog.Logger, fn func(map[string]pier.RouterSettings)) {
	follow(ctx, w.settings, fn)
}

type feedEnv struct {
	tokens *fakeServiceTokens
	routes *fakeRoutes
	watch  *fakeWatcher
	srv    *httptest.Server
}

func newFeedEnv(t *testing.T, heartbeat time.Duration) *feedEnv {
	t.Helper()
	e := &feedEnv{tokens: &fakeServiceTokens{}, routes: &fakeRoutes{}, watch: newFakeWatcher()}
	e.routes.set("web", "127.0.0.1:5001")
	feed := controller.NewRouterFeed(controller.RouterFeedConfig{
		Tokens: e.tokens, Routes: e.routes, Watch: e.watch, Heartbeat: heartbeat, Logger: slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); feed.Run(ctx) }()
	e.srv = httptest.NewServer(controller.InternalHandler(feed, slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { e.srv.CloseClientConnections(); e.srv.Close(); cancel(); <-done })
	return e
}

// open starts a feed request with the token.
func (e *feedEnv) open(t *testing.T, auth string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+controller.RouterFeedPath, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// feedFrames decodes the stream into a channel.
func feedFrames(res *http.Response) <-chan pier.RouterFrame {
	ch := make(chan pier.RouterFrame, 1000)
	go func() {
		defer close(ch)
		client.DecodeRouterFrames(res.Body, func(f pier.RouterFrame) error { ch <- f; return nil })
	}()
	return ch
}

// nextSnapshot returns the next snapshot, skipping heartbeats.
func nextSnapshot(t *testing.T, ch <-chan pier.RouterFrame) pier.RouterFrame {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatal("the feed ended")
			}
			if f.Type == pier.RouterFrameSnapshot {
				return f
			}
		case <-timeout:
			t.Fatal("no snapshot")
		}
	}
}

func TestRouterFeedRefusesAllButRouterTokens(t *testing.T) {
	e := newFeedEnv(t, time.Hour)
	builder := e.tokens.add(pier.ScopeBuilder)
	for _, c := range []struct {
		name, auth string
		code       int
		msg        string
	}{
		{"none", "", 401, "needs a router service token"},
		{"user API token", "Bearer pier_abcdefghijklmnop", 403, "user credentials (login sessions and API tokens) are refused"},
		{"session JWT", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", 403, "user credentials"},
		{"not bearer", "Basic YWRhOnB3", 401, "must be 'Bearer <service token>'"},
		{"unknown service token", "Bearer piersvc_router_nope", 401, "unknown or revoked"},
		{"builder scope", "Bearer " + builder, 403, `has scope "builder"; this endpoint needs scope "router"`},
	} {
		res := e.open(t, c.auth)
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.NewDecoder(res.Body).Decode(&body)
		if res.StatusCode != c.code || !strings.Contains(body.Error.Message, c.msg) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, res.StatusCode, body.Error.Message, c.code, c.msg)
		}
		if !strings.Contains(body.Error.Message, "pier service-tokens:create --scope router") && c.code == 403 {
			t.Errorf("%s: the message does not say how to get a token: %q", c.name, body.Error.Message)
		}
	}
	// Only the feed is on the internal listener.
	res, err := http.Get(e.srv.URL + "/v1/apps")
	if err != nil || res.StatusCode != 404 {
		t.Fatalf("the public API on the internal listener: %v %v", res, err)
	}
}

func TestRouterFeedStreams(t *testing.T) {
	e := newFeedEnv(t, 50*time.Millisecond)
	token := e.tokens.add(pier.ScopeRouter)
	res := e.open(t, "Bearer "+token)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("feed: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	ch := feedFrames(res)
	// Heartbeats only, until every part of the store has been read once.
	e.watch.domains <- map[string]string{"www.example.test": "web"}
	e.watch.settings <- map[string]pier.RouterSettings{"web": {Maintenance: true}}
	hb := time.After(5 * time.Second)
	for beats := 0; beats < 2; {
		select {
		case f := <-ch:
			if f.Type != pier.RouterFrameHeartbeat {
				t.Fatalf("a %s before the store was read", f.Type)
			}
			beats++
		case <-hb:
			t.Fatal("no heartbeats")
		}
	}
	e.watch.tls <- pier.TLSState{Certs: []pier.TLSCert{{Certificate: pier.Certificate{App: "web", Name: "abc", Domains: []string{"www.example.test"}}, Chain: "CHAIN", Key: "KEY"}},
		HTTPS: map[string]pier.HTTPSSettings{"web": {HSTS: true}}}
	f := nextSnapshot(t, ch)
	st := f.State
	if st.Routes["web"][0] != "127.0.0.1:5001" || st.Domains["www.example.test"] != "web" || !st.Settings["web"].Maintenance ||
		len(st.Certs) != 1 || st.Certs[0].Key != "KEY" || st.Certs[0].Chain != "CHAIN" || !st.HTTPS["web"].HSTS {
		t.Fatalf("first snapshot: %+v", st)
	}
	// A burst of changes goes as few snapshots, the last one complete.
	for i := range 50 {
		e.routes.set("web", "127.0.0.1:"+string(rune('0'+i%10))+"000")
	}
	e.routes.set("other", "127.0.0.1:6000")
	var n int
	for {
		f = nextSnapshot(t, ch)
		n++
		if f.State.Routes["other"] != nil {
			break
		}
	}
	if n > 10 {
		t.Errorf("51 changes in a burst made %d snapshots: not coalesced", n)
	}
	if f.State.Domains["www.example.test"] != "web" || f.Seq < 2 {
		t.Fatalf("snapshot after the burst: seq %d %+v", f.Seq, f.State)
	}
	// Revoked, the stream ends within a heartbeat.
	e.tokens.revoke(token)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("the stream of a revoked token goes on")
		}
	}
}

func TestRouterCertLogValueHidesKey(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "cert", pier.RouterCert{App: "web", Name: "abc", Chain: "CHAIN", Key: "SECRETKEY"})
	if strings.Contains(b.String(), "SECRETKEY") || !strings.Contains(b.String(), "abc") {
		t.Fatalf("log line: %s", b.String())
	}
}
