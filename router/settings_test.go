package router_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/router"
)

// request sends one request to the router at addr for app, and returns
// the status and body.
func request(t *testing.T, addr, method, app, body string, chunked bool, hdr ...string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if chunked {
			rd = struct{ io.Reader }{rd} // no length: sent chunked
		}
	}
	req, _ := http.NewRequest(method, "http://"+addr+"/x", rd)
	req.Host = app + ".pier.localhost"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, app, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestMaintenance(t *testing.T) {
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost", Known: func(app string) bool { return app == "idle" }})
	rt.SetRoutes(map[string][]string{"app": {be.addr}, "other": {be.addr}})
	rt.SetSettings(map[string]pier.RouterSettings{"app": {Maintenance: true}, "idle": {Maintenance: true}})
	addr, _ := serve(t, rt)

	for _, app := range []string{"app", "idle"} {
		code, body, h := request(t, addr, "GET", app, "", false)
		if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "Down for maintenance") {
			t.Fatalf("%s in maintenance: %d %v %q", app, code, h, body)
		}
	}
	if code, _, _ := request(t, addr, "GET", "other", "", false); code != 200 {
		t.Fatalf("another app: %d", code)
	}
	if n := len(be.seen()); n != 1 {
		t.Fatalf("backend saw %d requests, want only the other app's", n)
	}
	// Route and domain changes keep the settings.
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	rt.SetDomains(map[string]string{"www.example.com": "app"})
	if code, _, _ := request(t, addr, "GET", "app", "", false); code != 503 {
		t.Fatalf("after a route change: %d", code)
	}
	rt.SetSettings(nil)
	if code, body, _ := request(t, addr, "GET", "app", "", false); code != 200 || !strings.HasPrefix(body, "be GET") {
		t.Fatalf("maintenance off: %d %q", code, body)
	}
}

func TestAllowlist(t *testing.T) {
	be := newSpy(t, "be")
	for _, c := range []struct {
		name    string
		trusted []netip.Prefix
		allow   []string
		xff     string
		want    int
	}{
		{"direct, allowed", nil, []string{"127.0.0.1"}, "", 200},
		{"direct, other network", nil, []string{"10.0.0.0/8"}, "", 403},
		{"direct, X-Forwarded-For not believed", nil, []string{"10.0.0.0/8"}, "10.1.2.3", 403},
		{"v6 network does not match v4", nil, []string{"::1"}, "", 403},
		{"via proxy, client allowed", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.0/24"}, "203.0.113.7", 200},
		{"via proxy, client not allowed", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.0/24"}, "6.6.6.6", 403},
		{"via proxy, client spoofs the left", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.0/24"}, "203.0.113.7, 6.6.6.6", 403},
		{"via proxy, spoofed left ignored", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.0/24"}, "6.6.6.6, 203.0.113.7", 200},
		{"via two trusted proxies", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.0/24"}, "203.0.113.7, 127.0.0.9", 200},
		{"via proxy, no X-Forwarded-For: the proxy is the client", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.0/24"}, "", 403},
		{"via proxy, garbage", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"0.0.0.0/0"}, "nonsense", 403},
		{"via proxy, with a port", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.7"}, "203.0.113.7:5555", 200},
	} {
		rt := router.New(router.Config{Domain: "pier.localhost", TrustedProxies: c.trusted})
		rt.SetRoutes(map[string][]string{"app": {be.addr}})
		rt.SetSettings(map[string]pier.RouterSettings{"app": {Allow: c.allow}})
		addr, _ := serve(t, rt)
		var hdr []string
		if c.xff != "" {
			hdr = []string{"X-Forwarded-For", c.xff}
		}
		code, body, _ := request(t, addr, "GET", "app", "", false, hdr...)
		if code != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, code, body, c.want)
		}
	}
	// An allowlist that does not parse (not from the store) lets no one in.
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	rt.SetSettings(map[string]pier.RouterSettings{"app": {Allow: []string{"127.0.0.1", "bogus"}}})
	addr, _ := serve(t, rt)
	if code, _, _ := request(t, addr, "GET", "app", "", false); code != 403 {
		t.Fatalf("broken allowlist: %d", code)
	}
}

func TestBodyLimit(t *testing.T) {
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost", BodyLimit: 100})
	rt.SetRoutes(map[string][]string{"app": {be.addr}, "plain": {be.addr}})
	rt.SetSettings(map[string]pier.RouterSettings{"app": {BodyLimitBytes: 1000}})
	addr, _ := serve(t, rt)
	big := strings.Repeat("x", 5000)

	for _, c := range []struct {
		app     string
		n       int
		chunked bool
		want    int
	}{
		{"app", 1000, false, 200}, {"app", 1000, true, 200}, {"app", 1001, false, 413}, {"app", 5000, true, 413},
		{"plain", 100, false, 200}, {"plain", 101, false, 413}, {"plain", 5000, true, 413}, {"plain", 100, true, 200},
	} {
		// A request cut at the limit may reach the backend's handler
		// after the client has its 413, while the next case runs: each
		// case's requests carry its number, and only those count.
		mark := fmt.Sprintf("%s-%d-%v", c.app, c.n, c.chunked)
		code, body, _ := request(t, addr, "POST", c.app, big[:c.n], c.chunked, "X-Case", mark)
		if code != c.want {
			t.Errorf("%s %d bytes chunked=%v: %d %q, want %d", c.app, c.n, c.chunked, code, body, c.want)
			continue
		}
		var seen []seenReq
		for _, s := range be.seen() {
			if s.header.Get("X-Case") == mark {
				seen = append(seen, s)
			}
		}
		switch {
		case c.want == 200 && (len(seen) != 1 || len(seen[0].body) != c.n):
			t.Errorf("%s %d bytes: backend saw %d requests", c.app, c.n, len(seen))
		case c.want == 413 && !strings.Contains(body, "at most"):
			t.Errorf("%s %d bytes: page %q", c.app, c.n, body)
		case c.want == 413 && !c.chunked && len(seen) != 0:
			t.Errorf("%s %d bytes with a length: backend saw it", c.app, c.n)
		}
		for _, s := range seen {
			if limit := map[string]int{"app": 1000, "plain": 100}[c.app]; len(s.body) > limit {
				t.Errorf("%s: backend received %d bytes, over the limit %d", c.app, len(s.body), limit)
			}
		}
	}
}

func TestTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("do") {
		case "slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "late")
		case "sse":
			// Headers at once, then events for longer than the timeout.
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			for i := range 6 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				http.NewResponseController(w).Flush()
				time.Sleep(300 * time.Millisecond)
			}
		default:
			io.WriteString(w, "fast")
		}
	}))
	t.Cleanup(srv.Close)
	be := strings.TrimPrefix(srv.URL, "http://")
	rt := router.New(router.Config{Domain: "pier.localhost", Timeout: 500 * time.Millisecond})
	rt.SetRoutes(map[string][]string{"app": {be}, "plain": {be}})
	rt.SetSettings(map[string]pier.RouterSettings{"app": {TimeoutSeconds: 1}})
	addr, _ := serve(t, rt)
	get := func(app, do string) (int, string, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest("GET", "http://"+addr+"/?do="+do, nil)
		req.Host = app + ".pier.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return resp.StatusCode, b.String(), time.Since(start)
	}
	if code, body, _ := get("app", "fast"); code != 200 || body != "fast\n" {
		t.Fatalf("fast: %d %q", code, body)
	}
	code, body, took := get("app", "slow")
	if code != 504 || !strings.Contains(body, "did not answer in time") || took < time.Second || took > 3*time.Second {
		t.Fatalf("slow app: %d in %s %q", code, took, body)
	}
	code, _, took = get("plain", "slow") // the platform's default
	if code != 504 || took > 2*time.Second {
		t.Fatalf("slow, default timeout: %d in %s", code, took)
	}
	// A stream whose headers came in time runs past the timeout.
	code, body, took = get("app", "sse")
	if code != 200 || strings.Count(body, "data: ") != 6 || took < 1500*time.Millisecond {
		t.Fatalf("sse: %d in %s %q", code, took, body)
	}
	code, body, _ = get("plain", "sse")
	if code != 200 || strings.Count(body, "data: ") != 6 {
		t.Fatalf("sse, default timeout: %d %q", code, body)
	}
}
