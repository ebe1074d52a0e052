package router

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// Whatever the fast path's parser accepts, net/http reads the same way:
// same method, target, host and body length. So a request cannot mean one
// thing to the router and another to a server that parses it as net/http
// does. What it refuses goes to net/http anyway.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"POST /x?y=1 HTTP/1.1\r\nHost: a.example:80\r\nContent-Length: 3\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n Folded: x\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nhOsT:   a.b  \r\nX: \t\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h head
		if err := parseRequest(b, &h); err != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:h.n])))
		if err != nil {
			t.Fatalf("fast path accepts what net/http refuses (%v): %q", err, b[:h.n])
		}
		if req.Method != string(h.method.of(b)) || req.RequestURI != string(h.target.of(b)) || req.Host != string(h.host.of(b)) {
			t.Fatalf("disagree: net/http %q %q %q, fast path %q %q %q", req.Method, req.RequestURI, req.Host, h.method.of(b), h.target.of(b), h.host.of(b))
		}
		if cl := max(h.contentLength, 0); req.ContentLength != cl && !(h.contentLength < 0 && req.ContentLength == 0) {
			t.Fatalf("length: net/http %d, fast path %d", req.ContentLength, h.contentLength)
		}
		if len(req.TransferEncoding) > 0 || req.Close != h.close {
			t.Fatalf("framing: net/http TE %v close %v, fast path close %v", req.TransferEncoding, req.Close, h.close)
		}
	})
}

func TestParseRequestRefuses(t *testing.T) {
	for _, s := range []string{
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", maxFastLines) + "\r\n",
	} {
		var h head
		if err := parseRequest([]byte(s), &h); err != errNotFast {
			t.Errorf("%q: %v, want errNotFast", s, err)
		}
	}
	var h head
	if err := parseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\n"), &h); err != errIncomplete {
		t.Errorf("partial head: %v", err)
	}
}

// A chunked body is followed to its end however it is cut.
func TestChunksSplit(t *testing.T) {
	body := "5\r\nhello\r\na;x=y\r\n0123456789\r\n0\r\nT: 1\r\n\r\n"
	rest := "NEXT"
	for cut := 1; cut <= len(body); cut++ {
		var c chunks
		all := []byte(body + rest)
		total, ended := 0, false
		for p := 0; p < len(all) && !ended; {
			end := min(p+cut, len(all))
			k, e, err := c.feed(all[p:end])
			if err != nil {
				t.Fatalf("cut %d at %d: %v", cut, p, err)
			}
			total += k
			ended = e
			p += k
			if !e && k != end-(p-k) {
				t.Fatalf("cut %d: consumed %d of %d without ending", cut, k, end-(p-k))
			}
		}
		if !ended || total != len(body) {
			t.Fatalf("cut %d: ended %v after %d bytes, want %d", cut, ended, total, len(body))
		}
	}
	for _, bad := range []string{"x\r\n", "5\r\nhelloXX", "\r\n", "0\r\nbad\n"} {
		var c chunks
		if _, _, err := c.feed([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
