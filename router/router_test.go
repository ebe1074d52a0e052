package router_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pierpaas/pier/router"
)

// backend answers with its name and what it was told.
func backend(t *testing.T, name string) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s xff=%s xfh=%s xfp=%s fwd=%s", name, r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Forwarded"))
	}))
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "http://")
}

func get(t *testing.T, front *front, host string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", front.URL+"/x?y=1", nil)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestHostMapping(t *testing.T) {
	_, a := backend(t, "a")
	_, b := backend(t, "b")
	_, c := backend(t, "c")
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") })
	rt := router.New(router.Config{Domain: "pier.localhost", API: api, Known: func(app string) bool { return app == "fresh" }})
	rt.SetRoutes(map[string][]string{"alpha": {a}, "beta": {b}, "gamma": {c}, "idle": {}})
	rt.SetDomains(map[string]string{"www.example.com": "beta", "*.example.com": "gamma", "Shop.Example.org": "alpha"})
	front := newFront(t, rt)
	defer front.Close()
	for host, want := range map[string]string{
		"alpha.pier.localhost":      "a ",
		"ALPHA.Pier.Localhost:8080": "a ",
		"alpha.pier.localhost.":     "a ",
		"www.example.com":           "b ", // exact before wildcard
		"shop.example.com":          "c ",
		"shop.example.org":          "a ",
		"pier.localhost:8080":       "api",
		"pier.pier.localhost":       "api",
		"beta.pier.localhost:443":   "b ",
		"gamma.pier.localhost":      "c ",
	} {
		code, body, _ := get(t, front, host)
		if code != 200 || !strings.HasPrefix(body, want) {
			t.Errorf("%s: %d %q, want %q", host, code, body, want)
		}
	}
	for _, host := range []string{"nope.pier.localhost", "a.b.example.com", "example.com", "alpha.pier.localhost.evil.com", "localhost", "127.0.0.1"} {
		code, body, _ := get(t, front, host)
		if code != 404 || !strings.Contains(body, "No app at this address") || !strings.Contains(body, "Pier") {
			t.Errorf("%s: %d %q", host, code, body)
		}
	}
	for _, host := range []string{"idle.pier.localhost", "fresh.pier.localhost"} {
		code, body, hdr := get(t, front, host)
		if code != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(body, "No process is running") {
			t.Errorf("%s: %d %q", host, code, body)
		}
	}
	rt.SetDomains(nil)
	if code, _, _ := get(t, front, "www.example.com"); code != 404 {
		t.Errorf("removed domain still routed: %d", code)
	}
}

func TestRoundRobin(t *testing.T) {
	var addrs []string
	for _, n := range []string{"one", "two", "three"} {
		_, a := backend(t, n)
		addrs = append(addrs, a)
	}
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": addrs})
	front := newFront(t, rt)
	defer front.Close()
	count := map[string]int{}
	for range 300 {
		_, body, _ := get(t, front, "app.pier.localhost")
		count[strings.Fields(body)[0]]++
	}
	if count["one"] != 100 || count["two"] != 100 || count["three"] != 100 {
		t.Fatalf("spread %v", count)
	}
}

func TestForwardedHeaders(t *testing.T) {
	_, a := backend(t, "a")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {a}})
	front := newFront(t, rt)
	defer front.Close()
	_, body, _ := get(t, front, "app.pier.localhost:8080",
		"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.com", "X-Forwarded-Proto", "https", "Forwarded", "for=6.6.6.6")
	want := "a host=app.pier.localhost:8080 xff=127.0.0.1 xfh=app.pier.localhost:8080 xfp=http fwd="
	if body != want {
		t.Fatalf("backend saw %q\nwant        %q", body, want)
	}
}

func TestSwapUnderLoad(t *testing.T) {
	var addrs []string
	for _, n := range []string{"one", "two", "three", "four"} {
		_, a := backend(t, n)
		addrs = append(addrs, a)
	}
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": addrs[:2]})
	front := newFront(t, rt)
	defer front.Close()
	var failures atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 300; i++ {
			rt.SetRoutes(map[string][]string{"app": addrs[i%3 : i%3+2]})
			rt.SetDomains(map[string]string{"www.example.com": "app"})
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 150 {
				req, _ := http.NewRequest("GET", front.URL, nil)
				req.Host = "app.pier.localhost"
				resp, err := front.Client().Do(req)
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	<-done
	if failures.Load() != 0 {
		t.Fatalf("%d failures", failures.Load())
	}
}

func TestRetryOnDeadBackend(t *testing.T) {
	_, live := backend(t, "live")
	dead, deadAddr := backend(t, "dead")
	dead.Close()
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {deadAddr, live}})
	front := newFront(t, rt)
	defer front.Close()
	for range 10 {
		code, body, _ := get(t, front, "app.pier.localhost")
		if code != 200 || !strings.HasPrefix(body, "live") {
			t.Fatalf("%d %q", code, body)
		}
	}
	// A connection that was refused never carried the request, so even a
	// POST with a body goes on to the live backend, body intact.
	for range 2 {
		req, _ := http.NewRequest("POST", front.URL, strings.NewReader("payload"))
		req.Host = "app.pier.localhost"
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "live") {
			t.Fatalf("POST: %d %q", resp.StatusCode, body)
		}
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	// A minimal upgrade: 101, then the connection echoes bytes.
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "no upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	defer ws.Close()
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"chat": {strings.TrimPrefix(ws.URL, "http://")}})
	front := newFront(t, rt)
	defer front.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /socket HTTP/1.1\r\nHost: chat.pier.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	fmt.Fprint(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("%q %v", line, err)
	}
}

func TestServerTimeouts(t *testing.T) {
	srv := router.New(router.Config{Domain: "pier.localhost"}).Server(":0")
	if srv.ReadHeaderTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Fatalf("%+v", srv)
	}
}
