package router

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// Server serves the router on plain HTTP the fastest way this platform
// allows. On Linux, requests that are plain HTTP/1.1 proxying (the bulk of
// an app's traffic) are served by event loops on epoll that parse strictly,
// allocate almost nothing and make nginx's system calls (fast_linux.go);
// everything else on a connection (WebSockets, chunked uploads, HTTP/1.0,
// the API, error pages, maintenance, HTTPS redirects, ACME challenges,
// anything unusual or malformed) is handed, with the bytes already read,
// to a net/http server behind rt.Listener, and stays there. Elsewhere, or
// on a listener that is not TCP, net/http serves it all.
//
// TLS is served by net/http (rt.Server with rt.TLSConfig), for HTTP/2.
type Server struct {
	rt *Router
	hs *http.Server

	mu      sync.Mutex
	stopped bool
	stop    chan struct{} // closed when Shutdown or Close begins
	fast    *fastPath     // nil: net/http serves everything
	hand    *handoffListener
}

// NewServer returns a Server for rt. What the fast path does not serve goes
// to h through net/http (nil: rt itself); pierd passes the handler that
// also answers the API on its host names.
func (rt *Router) NewServer(h http.Handler) *Server {
	hs := rt.Server("")
	if h != nil {
		hs.Handler = h
	}
	return &Server{rt: rt, hs: hs, stop: make(chan struct{})}
}

// Serve serves ln until Shutdown or Close, and then returns
// http.ErrServerClosed, as http.Server's Serve does.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.hand = newHandoffListener(ln.Addr())
	fp, err := startFast(s.rt, ln, s.hand)
	if err != nil {
		s.mu.Unlock()
		if !errors.Is(err, errNoFastPath) {
			s.rt.log.Warn("router fast path unavailable: serving every request with net/http", "err", err)
		}
		return s.hs.Serve(s.rt.Listener(ln))
	}
	s.fast = fp
	s.mu.Unlock()
	go s.hs.Serve(s.rt.Listener(s.hand))
	<-s.stop
	return http.ErrServerClosed
}

// Shutdown stops accepting connections, closes idle ones, lets in-flight
// requests finish (each connection is closed after its current answer),
// and returns when none is left or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	fp := s.begin()
	var fastErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if fp != nil {
			fastErr = fp.shutdown(ctx)
		}
	}()
	err := s.hs.Shutdown(ctx)
	<-done
	return errors.Join(err, fastErr)
}

// Close closes every connection at once.
func (s *Server) Close() error {
	fp := s.begin()
	if fp != nil {
		fp.close()
	}
	return s.hs.Close()
}

// fastServed is how many requests the fast path proxied (for tests).
func (s *Server) fastServed() uint64 {
	s.mu.Lock()
	fp := s.fast
	s.mu.Unlock()
	if fp == nil {
		return 0
	}
	return fp.served()
}

func (s *Server) begin() *fastPath {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.stop)
	}
	return s.fast
}

var errNoFastPath = errors.New("no fast path on this platform or listener")

// handoffListener is how connections reach net/http from the fast path.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn, 256), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// deliver gives c to net/http without ever blocking the event loop.
func (l *handoffListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
		return
	case <-l.done:
		c.Close()
		return
	default:
	}
	go func() {
		select {
		case l.ch <- c:
		case <-l.done:
			c.Close()
		}
	}()
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	buf []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close, as on the *net.TCPConn beneath.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
