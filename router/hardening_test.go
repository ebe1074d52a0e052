package router_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierpaas/pier/router"
)

// serve runs rt as pierd does: rt.NewServer, whose fast path hands what
// it does not serve to net/http on a guarded listener.
func serve(t *testing.T, rt *router.Router) (string, *router.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rt.NewServer(nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// front is serve for tests written against an httptest.Server.
type front struct {
	URL    string
	client *http.Client
}

func (f *front) Client() *http.Client { return f.client }
func (f *front) Close()               {}

func newFront(t *testing.T, rt *router.Router) *front {
	addr, _ := serve(t, rt)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &front{URL: "http://" + addr, client: &http.Client{Transport: tr}}
}

// dial opens a raw connection, with a deadline so that a broken router
// fails the test instead of hanging it.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

type seenReq struct {
	method, path, body string
	header             http.Header
	host               string
}

// spy is a backend that remembers what reached it.
type spy struct {
	addr string
	mu   sync.Mutex
	reqs []seenReq
}

func newSpy(t *testing.T, name string) *spy {
	s := &spy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, seenReq{r.Method, r.URL.Path, string(body), r.Header.Clone(), r.Host})
		s.mu.Unlock()
		fmt.Fprintf(w, "%s %s %s", name, r.Method, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	s.addr = strings.TrimPrefix(srv.URL, "http://")
	return s
}

func (s *spy) seen() []seenReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// send writes raw, byte by byte if slowly, and reads every response until
// the router hangs up.
func send(t *testing.T, addr, raw string, slowly bool) (codes []int, bodies []string) {
	t.Helper()
	c := dial(t, addr)
	go func() {
		if !slowly {
			io.WriteString(c, raw)
			return
		}
		for i := range len(raw) {
			if _, err := c.Write([]byte{raw[i]}); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("after %v: %v", codes, err)
			}
			return codes, bodies
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		bodies = append(bodies, string(b))
		if resp.Close {
			return codes, bodies
		}
	}
}

func TestSmugglingRefused(t *testing.T) {
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost", Logger: slog.New(slog.DiscardHandler)})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, _ := serve(t, rt)
	const host = "Host: app.pier.localhost\r\n"
	const smuggled = "GET /smuggled HTTP/1.1\r\n" + host + "\r\n"
	good := "GET /first HTTP/1.1\r\n" + host + "\r\n"
	for name, raw := range map[string]string{
		"CL.TE":       "POST /a HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"TE.CL":       "POST /a HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n" + smuggled,
		"case":        "POST /a HTTP/1.1\r\n" + host + "transfer-ENCODING:  chunked\r\ncontent-length:   5 \r\n\r\n0\r\n\r\n" + smuggled,
		"bare LF":     "POST /a HTTP/1.1\n" + "Host: app.pier.localhost\n" + "Content-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n" + smuggled,
		"HTTP/1.0":    "POST /a HTTP/1.0\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"after a GET": good + "POST /a HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"after a POST": "POST /first HTTP/1.1\r\n" + host + "Content-Length: 64\r\n\r\n" + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("x", 64-47) +
			"POST /a HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
	} {
		for _, slowly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s slowly=%v", name, slowly), func(t *testing.T) {
				before := len(be.seen())
				codes, _ := send(t, addr, raw, slowly)
				first := strings.HasPrefix(name, "after")
				want := []int{400}
				if first {
					want = []int{200, 400}
				}
				if !slices.Equal(codes, want) {
					t.Fatalf("codes %v, want %v", codes, want)
				}
				seen := be.seen()[before:]
				if first {
					if len(seen) != 1 || seen[0].path != "/first" {
						t.Fatalf("backend saw %+v", seen)
					}
					seen = seen[1:]
				}
				if len(seen) != 0 {
					t.Fatalf("the backend saw %+v", seen)
				}
			})
		}
	}
}

// The guard follows bodies, so text in them that looks like headers is no
// attempt, and pipelined requests of every framing go through.
func TestFramingFollowed(t *testing.T) {
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, _ := serve(t, rt)
	const host = "Host: app.pier.localhost\r\n"
	const decoy = "\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	raw := "POST /chunked HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x;ext=1\r\n%s\r\n", len(decoy), decoy) + "3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n" +
		"POST /length HTTP/1.1\r\n" + host + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(decoy)) + decoy +
		"PUT /old HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"GET /last HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"
	for _, slowly := range []bool{false, true} {
		before := len(be.seen())
		codes, _ := send(t, addr, raw, slowly)
		if !slices.Equal(codes, []int{200, 200, 200, 200}) {
			t.Fatalf("slowly=%v: codes %v", slowly, codes)
		}
		seen := be.seen()[before:]
		var got []string
		for _, r := range seen {
			got = append(got, r.path+" "+r.body)
		}
		want := []string{"/chunked " + decoy + "abc", "/length " + decoy, "/old ", "/last "}
		if !slices.Equal(got, want) {
			t.Fatalf("slowly=%v: backend saw\n%q\nwant\n%q", slowly, got, want)
		}
	}
}

func TestSlowHeaderCutOff(t *testing.T) {
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost", ReadHeaderTimeout: 100 * time.Millisecond})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, _ := serve(t, rt)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.pier.localhost\r\nX-Slow: ")
	// The router hangs up (maybe saying 408 first); the test's own
	// deadline would instead show as a timeout.
	_, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the router did not cut the slow client off: %v", err)
	}
	if n := len(be.seen()); n != 0 {
		t.Fatalf("backend saw %d requests", n)
	}
}

func TestHugeHeader431(t *testing.T) {
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, _ := serve(t, rt)
	raw := "GET / HTTP/1.1\r\nHost: app.pier.localhost\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
	codes, _ := send(t, addr, raw, false)
	if !slices.Equal(codes, []int{431}) {
		t.Fatalf("codes %v", codes)
	}
	if n := len(be.seen()); n != 0 {
		t.Fatalf("backend saw %d requests", n)
	}
}

var requestID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestHopByHopAndRouterHeaders(t *testing.T) {
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, _ := serve(t, rt)
	c := dial(t, addr)
	io.WriteString(c, "GET /h HTTP/1.1\r\nHost: app.pier.localhost\r\n"+
		"Connection: keep-alive, X-Forwarded-For, X-Request-ID, X-Forwarded-Host, X-Forwarded-Proto, X-Custom\r\n"+
		"X-Custom: dropped\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-ID: mine\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"+
		"Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n"+
		"Proxy: http://evil.example\r\nTE: trailers, deflate\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	seen := be.seen()
	if len(seen) != 1 {
		t.Fatalf("backend saw %d requests", len(seen))
	}
	h := seen[0].header
	for name, want := range map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Host":  "app.pier.localhost",
		"X-Forwarded-Proto": "http",
		"Te":                "trailers",
		"X-Kept":            "yes",
	} {
		if got := strings.Join(h.Values(name), ","); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"Connection", "X-Custom", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Proxy", "Trailer", "Upgrade", "Forwarded", "X-Real-Ip"} {
		if v, ok := h[name]; ok {
			t.Errorf("%s forwarded: %q", name, v)
		}
	}
	id := h.Values("X-Request-Id")
	if len(id) != 1 || !requestID.MatchString(id[0]) {
		t.Fatalf("X-Request-Id %q", id)
	}
	if got := resp.Header.Values("X-Request-Id"); !slices.Equal(got, id) {
		t.Fatalf("response X-Request-Id %q, backend saw %q", got, id)
	}
}

func TestTrustedProxies(t *testing.T) {
	be := newSpy(t, "be")
	get := func(rt *router.Router, hdr ...string) (http.Header, http.Header) {
		t.Helper()
		rt.SetRoutes(map[string][]string{"app": {be.addr}})
		addr, _ := serve(t, rt)
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = "app.pier.localhost"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		seen := be.seen()
		return seen[len(seen)-1].header, resp.Header
	}
	spoof := []string{"X-Forwarded-For", "203.0.113.7, 6.6.6.6", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "www.example.com", "X-Request-Id", "lb-1234"}

	// Not trusted (none configured, or not this network): replaced.
	for _, nets := range [][]netip.Prefix{nil, {netip.MustParsePrefix("10.0.0.0/8")}} {
		h, resp := get(router.New(router.Config{Domain: "pier.localhost", TrustedProxies: nets}), spoof...)
		if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != "app.pier.localhost" ||
			!requestID.MatchString(h.Get("X-Request-Id")) || resp.Get("X-Request-Id") != h.Get("X-Request-Id") {
			t.Errorf("untrusted %v: backend saw %v, client got id %q", nets, h, resp.Get("X-Request-Id"))
		}
	}

	// Trusted: kept, and the client's address appended.
	trusted := router.New(router.Config{Domain: "pier.localhost", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	h, resp := get(trusted, spoof...)
	if got := strings.Join(h.Values("X-Forwarded-For"), ","); got != "203.0.113.7, 6.6.6.6, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-Host") != "www.example.com" || h.Get("X-Request-Id") != "lb-1234" || resp.Get("X-Request-Id") != "lb-1234" {
		t.Errorf("trusted: backend saw %v, client got id %q", h, resp.Get("X-Request-Id"))
	}
	// Even from a trusted proxy, an ID that could not go in a log line as
	// is, or a scheme that is none, is replaced.
	h, _ = get(trusted, "X-Request-Id", "two words", "X-Forwarded-Proto", "gopher")
	if !requestID.MatchString(h.Get("X-Request-Id")) || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("trusted, bad values: backend saw %v", h)
	}
	h, _ = get(trusted, "X-Request-Id", strings.Repeat("a", 201))
	if !requestID.MatchString(h.Get("X-Request-Id")) {
		t.Errorf("long id kept: %q", h.Get("X-Request-Id"))
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := router.ParsePrefixes(" 10.0.0.1/8, 192.168.1.7,fd00::/8,, ::1 ")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("::1/128")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := router.ParsePrefixes(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8 10.1.0.0/16", "fe80::1%eth0"} {
		if _, err := router.ParsePrefixes(bad); err == nil || !strings.Contains(err.Error(), "such as 10.0.0.0/8") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestRequestIDs(t *testing.T) {
	be := newSpy(t, "be")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	rt := router.New(router.Config{Domain: "pier.localhost", Logger: slog.New(slog.DiscardHandler)})
	rt.SetRoutes(map[string][]string{"app": {be.addr}, "gone": {strings.TrimPrefix(dead.URL, "http://")}})
	addr, _ := serve(t, rt)
	ids := map[string]bool{}
	for _, host := range []string{"app", "app", "app", "gone"} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host + ".pier.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		if !requestID.MatchString(id) || ids[id] {
			t.Fatalf("%s: %d, id %q (seen: %v)", host, resp.StatusCode, id, ids)
		}
		ids[id] = true
		if host == "gone" && resp.StatusCode != 502 {
			t.Fatalf("gone: %d", resp.StatusCode)
		}
	}
}

// A refused connection never carried the request: it goes on to another
// backend, body and all. A request the backend received and then dropped
// is not sent again, whatever its method: the app may have acted on it.
func TestRetryOnlyUnsent(t *testing.T) {
	live := newSpy(t, "live")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	var dropped atomic.Int64
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		dropped.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		conn.(*net.TCPConn).SetLinger(0) // a reset, as a crashing app gives
		conn.Close()
	}))
	defer dropper.Close()
	do := func(front, method string) (int, string) {
		t.Helper()
		var body io.Reader
		if method != "GET" {
			body = strings.NewReader("payload")
		}
		req, _ := http.NewRequest(method, "http://"+front+"/r", body)
		req.Host = "app.pier.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}

	rt := router.New(router.Config{Domain: "pier.localhost", Logger: slog.New(slog.DiscardHandler)})
	rt.SetRoutes(map[string][]string{"app": {deadAddr, live.addr}})
	front, _ := serve(t, rt)
	for _, m := range []string{"POST", "PUT", "GET"} {
		if code, body := do(front, m); code != 200 || body != "live "+m+" /r" {
			t.Fatalf("%s to a refusing backend: %d %q", m, code, body)
		}
	}
	for _, r := range live.seen() {
		if r.method != "GET" && r.body != "payload" {
			t.Fatalf("body after retry: %q", r.body)
		}
	}

	rt2 := router.New(router.Config{Domain: "pier.localhost", Logger: slog.New(slog.DiscardHandler)})
	rt2.SetRoutes(map[string][]string{"app": {strings.TrimPrefix(dropper.URL, "http://"), live.addr}})
	front2, _ := serve(t, rt2)
	for _, m := range []string{"POST", "GET"} {
		before := len(live.seen())
		var codes []int
		for range 2 {
			code, _ := do(front2, m)
			codes = append(codes, code)
		}
		slices.Sort(codes)
		if !slices.Equal(codes, []int{200, 502}) || len(live.seen())-before != 1 {
			t.Fatalf("%s: codes %v, live saw %d", m, codes, len(live.seen())-before)
		}
	}
	if dropped.Load() != 2 {
		t.Fatalf("dropper saw %d", dropped.Load())
	}
}

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func TestEjectRefusingBackend(t *testing.T) {
	live := newSpy(t, "live")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	for _, ejectFor := range []time.Duration{time.Hour, time.Millisecond} {
		var logs lockedBuffer
		rt := router.New(router.Config{Domain: "pier.localhost", EjectFor: ejectFor, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		rt.SetRoutes(map[string][]string{"app": {deadAddr, live.addr}})
		// A route update for another app keeps the ejection.
		rt.SetRoutes(map[string][]string{"app": {deadAddr, live.addr}, "other": {live.addr}})
		addr, _ := serve(t, rt)
		for i := range 20 {
			if i == 10 {
				rt.SetRoutes(map[string][]string{"app": {deadAddr, live.addr}})
			}
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			req.Host = "app.pier.localhost"
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%d", resp.StatusCode)
			}
			if ejectFor < time.Second {
				time.Sleep(2 * ejectFor) // past the ejection: the dead one is tried again
			}
		}
		n := logs.count("backend refused a connection")
		if ejectFor == time.Hour && n != 1 {
			t.Fatalf("ejected for an hour, yet tried %d times:\n%s", n, logs.b.String())
		}
		if ejectFor < time.Second && n < 2 {
			t.Fatalf("ejected for %s, yet tried only %d times", ejectFor, n)
		}
	}
}

func TestSSEStreamsAcrossRouteChange(t *testing.T) {
	release := make(chan struct{})
	sse := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: %s 1\n\n", name)
			http.NewResponseController(w).Flush()
			// The client must have the first event while this one waits.
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "data: %s 2\n\n", name)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	one, two := sse("one"), sse("two")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {one}})
	addr, _ := serve(t, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func() *bufio.Reader {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/events", nil)
		req.Host = "app.pier.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return bufio.NewReader(resp.Body)
	}
	next := func(br *bufio.Reader, want string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("want %q: %v", want, err)
			}
			if line = strings.TrimSpace(line); line != "" {
				if line != want {
					t.Fatalf("got %q, want %q", line, want)
				}
				return
			}
		}
	}
	s1 := open()
	next(s1, "data: one 1")
	rt.SetRoutes(map[string][]string{"app": {two}})
	s2 := open()
	next(s2, "data: two 1")
	close(release)
	next(s1, "data: one 2")
	next(s2, "data: two 2")
}

func TestDrainOnShutdown(t *testing.T) {
	var started, inflight atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		if r.URL.Path == "/slow" {
			inflight.Add(1)
			time.Sleep(300 * time.Millisecond)
			inflight.Add(-1)
		}
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {strings.TrimPrefix(be.URL, "http://")}})
	addr, srv := serve(t, rt)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()
	var ok, bad atomic.Int64
	var shuttingDown atomic.Bool
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				path := "/fast"
				if (w+i)%3 == 0 {
					path = "/slow"
				}
				// GET: a request written on a kept-alive connection that the
				// server closed as idle is sent again by the transport.
				req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
				req.Host = "app.pier.localhost"
				resp, err := client.Do(req)
				if err != nil {
					// Once the listener is closed, a new connection is
					// refused; nothing else may go wrong.
					if !shuttingDown.Load() || !isRefused(err) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for inflight.Load() < 3 || started.Load() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("load did not build up: %d started, %d in flight", started.Load(), inflight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	shuttingDown.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	wg.Wait()
	if len(errs) > 0 || bad.Load() != 0 {
		t.Fatalf("%d bad answers; errors: %v", bad.Load(), errs)
	}
	if ok.Load() != started.Load() {
		t.Fatalf("the backend started %d requests, %d came back", started.Load(), ok.Load())
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted after shutdown")
	}
}

// isRefused says whether a client error is the connection being refused,
// maybe after the transport saw its kept-alive connection closed.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
