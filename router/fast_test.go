package router_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier/router"
)

// These tests are about the fast path (fast_linux.go) as such: that it
// serves what it should, passes every framing through, and hands the rest
// to net/http. Every other test in this package runs through it too, by
// way of serve.

func skipNoFastPath(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the fast path is Linux's")
	}
}

// rawBackend runs answer for each connection the router opens.
func rawBackend(t *testing.T, answer func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				answer(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// readAll reads responses from br until n are read or the connection ends.
func readResponses(t *testing.T, br *bufio.Reader, reqs []*http.Request) (out []string) {
	t.Helper()
	for _, req := range reqs {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			out = append(out, "error: "+err.Error())
			return out
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := fmt.Sprintf("%d %q", resp.StatusCode, b)
		if err != nil {
			s += " error: " + err.Error()
		}
		if resp.Close {
			s += " close"
		}
		out = append(out, s)
	}
	return out
}

func TestFastPathRewrites(t *testing.T) {
	skipNoFastPath(t)
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, srv := serve(t, rt)
	c := dial(t, addr)
	io.WriteString(c, "GET /a?q=1 HTTP/1.1\r\nHost: App.Pier.Localhost:80\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Request-Id: mine\r\nForwarded: for=6.6.6.6\r\n"+
		"Keep-Alive: 5\r\nTE: trailers\r\nProxy: http://evil\r\nX-Kept: yes\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "be GET /a" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if n := router.FastServed(srv); n != 1 {
		t.Fatalf("the fast path served %d requests, want 1", n)
	}
	id := resp.Header.Get("X-Request-Id")
	if !requestID.MatchString(id) {
		t.Errorf("X-Request-Id %q", id)
	}
	seen := be.seen()[0]
	h := seen.header
	want := map[string]string{
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "App.Pier.Localhost:80", "X-Forwarded-Proto": "http",
		"X-Request-Id": id, "X-Kept": "yes", "X-Secret": "", "Forwarded": "", "Keep-Alive": "", "Te": "", "Proxy": "", "Connection": "",
	}
	for k, v := range want {
		if got := strings.Join(h[k], ","); got != v {
			t.Errorf("backend got %s %q, want %q", k, got, v)
		}
	}
	if seen.host != "App.Pier.Localhost:80" {
		t.Errorf("backend got Host %q", seen.host)
	}
}

// Trusted proxies' X-Forwarded-* are kept, as on net/http's path.
func TestFastPathTrustedProxy(t *testing.T) {
	skipNoFastPath(t)
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost", TrustedProxies: mustPrefixes(t, "127.0.0.0/8")})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, srv := serve(t, rt)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.pier.localhost\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n"+
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example.com\r\nX-Request-Id: lb-42\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") != "lb-42" || router.FastServed(srv) != 1 {
		t.Fatalf("id %q, fast %d", resp.Header.Get("X-Request-Id"), router.FastServed(srv))
	}
	h := be.seen()[0].header
	for k, v := range map[string]string{"X-Forwarded-For": "1.2.3.4, 5.6.7.8, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.com", "X-Request-Id": "lb-42"} {
		if got := h.Get(k); got != v {
			t.Errorf("%s %q, want %q", k, got, v)
		}
	}
}

func mustPrefixes(t *testing.T, s string) []netip.Prefix {
	p, err := router.ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Pipelined requests are answered in order; a HEAD answer has no body.
func TestFastPathPipelined(t *testing.T) {
	skipNoFastPath(t)
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {be.addr}})
	addr, srv := serve(t, rt)
	c := dial(t, addr)
	const host = "Host: app.pier.localhost\r\n"
	io.WriteString(c, "GET /1 HTTP/1.1\r\n"+host+"\r\nHEAD /2 HTTP/1.1\r\n"+host+"\r\nPOST /3 HTTP/1.1\r\n"+host+"Content-Length: 3\r\n\r\nabcGET /4 HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
	reqs := []*http.Request{{Method: "GET"}, {Method: "HEAD"}, {Method: "POST"}, {Method: "GET"}}
	got := readResponses(t, bufio.NewReader(c), reqs)
	want := []string{`200 "be GET /1"`, `200 ""`, `200 "be POST /3"`, `200 "be GET /4" close`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if n := router.FastServed(srv); n != 4 {
		t.Errorf("fast path served %d, want 4", n)
	}
	if s := be.seen(); len(s) != 4 || s[2].body != "abc" {
		t.Errorf("backend saw %+v", s)
	}
}

// Big bodies stream both ways intact, whatever the sockets take at a time.
func TestFastPathBigBodies(t *testing.T) {
	skipNoFastPath(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%d %x", len(b), sha256.Sum256(b))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big)
	}))
	t.Cleanup(srv.Close)
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {strings.TrimPrefix(srv.URL, "http://")}})
	addr, front := serve(t, rt)
	client := &http.Client{Timeout: 30 * time.Second}
	req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(big))
	req.Host = "app.pier.localhost"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %x", len(big), sha256.Sum256(big)); string(b) != want {
		t.Fatalf("upload: got %q, want %q", b, want)
	}
	// A slow reader: the router must hold back, not drop or buffer all.
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.pier.localhost\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("download: %d bytes (want %d), %v", len(b), len(big), err)
	}
	if n := router.FastServed(front); n != 2 {
		t.Errorf("fast path served %d, want 2", n)
	}
}

// Every framing of an answer passes through: chunked with trailers, up to
// the close, none (204), informational answers first; a malformed one is
// a 502, and the connection goes on.
func TestFastPathAnswerFramings(t *testing.T) {
	skipNoFastPath(t)
	answers := map[string]string{
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: done\r\n\r\n",
		"/204":     "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
		"/103":     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/lf":      "HTTP/1.1 200 OK\nContent-Length: 2\nConnection: keep-alive\n\nlf",
		"/both":    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"/badcl":   "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"/garbage": "SSH-2.0-OpenSSH\r\n\r\n",
		"/close":   "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
		// A head bigger than the backend buffer's first size.
		"/bighead": "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 40<<10) + "\r\nContent-Length: 3\r\n\r\nbig",
	}
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			a := answers[req.URL.Path]
			io.WriteString(c, a)
			if strings.Contains(a, "Connection: close") || req.URL.Path == "/both" || req.URL.Path == "/badcl" || req.URL.Path == "/garbage" {
				return
			}
		}
	})
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {addr}})
	front, _ := serve(t, rt)
	c := dial(t, front)
	paths := []string{"/chunked", "/204", "/103", "/lf", "/both", "/badcl", "/garbage", "/bighead", "/chunked", "/close"}
	var reqs []*http.Request
	for _, p := range paths {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: app.pier.localhost\r\n\r\n", p)
		reqs = append(reqs, &http.Request{Method: "GET"})
	}
	br := bufio.NewReader(c)
	var got []string
	for i, req := range reqs {
		resp, err := http.ReadResponse(br, req)
		if err == nil && resp.StatusCode == 103 {
			got = append(got, "103 "+resp.Header.Get("Link"))
			resp, err = http.ReadResponse(br, req)
		}
		if err != nil {
			t.Fatalf("%s: %v (after %q)", paths[i], err, got)
		}
		b, err := io.ReadAll(resp.Body)
		s := fmt.Sprintf("%d %q", resp.StatusCode, b)
		if err != nil {
			s += " " + err.Error()
		}
		if v := resp.Trailer.Get("X-T"); v != "" {
			s += " trailer " + v
		}
		if resp.Close {
			s += " close"
		}
		if resp.StatusCode == 502 {
			s = "502"
		}
		got = append(got, s)
	}
	want := []string{`200 "hello world" trailer done`, `204 ""`, "103 </a.css>", `200 "ok"`, `200 "lf"`, "502", "502", "502", `200 "big"`, `200 "hello world" trailer done`, `200 "until the end" close`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// What is not plain HTTP/1.1 proxying goes to net/http, which serves it
// (or answers the error) as before, on the same connection.
func TestFastPathHandsOver(t *testing.T) {
	skipNoFastPath(t)
	be := newSpy(t, "be")
	rt := router.New(router.Config{Domain: "pier.localhost", API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") })})
	rt.SetRoutes(map[string][]string{"app": {be.addr}, "idle": {}})
	addr, srv := serve(t, rt)
	for _, c := range []struct{ name, raw, want string }{
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: app.pier.localhost\r\n\r\n", `200 "be GET /old" close`},
		{"chunked upload", "POST /up HTTP/1.1\r\nHost: app.pier.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n", `200 "be POST /up" close`},
		{"the API", "GET / HTTP/1.1\r\nHost: pier.localhost\r\nConnection: close\r\n\r\n", `200 "api" close`},
		{"no app", "GET / HTTP/1.1\r\nHost: nope.pier.localhost\r\nConnection: close\r\n\r\n", `404`},
		{"no process", "GET / HTTP/1.1\r\nHost: idle.pier.localhost\r\nConnection: close\r\n\r\n", `503`},
		{"two hosts", "GET / HTTP/1.1\r\nHost: app.pier.localhost\r\nHost: x\r\n\r\n", `400`},
		{"space before colon", "GET / HTTP/1.1\r\nHost : app.pier.localhost\r\n\r\n", `400`},
		{"bad length", "POST / HTTP/1.1\r\nHost: app.pier.localhost\r\nContent-Length: 1x\r\n\r\n", `400`},
	} {
		codes, bodies := send(t, addr, c.raw, false)
		got := ""
		if len(codes) > 0 {
			got = strconv.Itoa(codes[0])
			if codes[0] == 200 {
				got = fmt.Sprintf("%d %q close", codes[0], bodies[0])
			}
		}
		if got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	if n := router.FastServed(srv); n != 0 {
		t.Errorf("the fast path served %d of these, want 0", n)
	}
	// Then a plain request on a new connection is the fast path's.
	if codes, _ := send(t, addr, "GET / HTTP/1.1\r\nHost: app.pier.localhost\r\nConnection: close\r\n\r\n", false); len(codes) != 1 || codes[0] != 200 || router.FastServed(srv) != 1 {
		t.Errorf("plain request: %v, fast %d", codes, router.FastServed(srv))
	}
}

// A pooled connection the backend closed is not a failed request: an
// idempotent one goes on a new connection.
func TestFastPathStalePool(t *testing.T) {
	skipNoFastPath(t)
	n := 0
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		n++
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// Then close the keep-alive connection, as an app's idle timeout does.
	})
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"app": {addr}})
	front, _ := serve(t, rt)
	c := dial(t, front)
	br := bufio.NewReader(c)
	for i := range 5 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.pier.localhost\r\n\r\n")
		if got := readResponses(t, br, []*http.Request{{Method: "GET"}}); got[0] != `200 "ok"` {
			t.Fatalf("request %d: %s", i, got[0])
		}
	}
}
