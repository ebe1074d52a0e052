//go:build linux

package router

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The fast path: one event loop per GOMAXPROCS, each with its own epoll
// set, sharing the listening socket (EPOLLEXCLUSIVE). A loop owns its
// client connections and its pool of keep-alive connections to backends,
// so nothing on the request path is shared but the route table (an atomic
// pointer) and the backends' health. Per request it makes the system calls
// nginx makes (read the client, write the backend, read the backend, write
// the client, and epoll_wait for a batch of them) and allocates nothing.
//
// A loop never blocks a thread: the epoll descriptor is itself registered
// with Go's poller, and the loop parks on it like any goroutine on a
// socket, so a quiet router costs no thread and net/http (which serves
// what is handed over) keeps its scheduling.
//
// Why not net/http's ReverseProxy, or fasthttp: measured here on one core
// against nginx, ReverseProxy reaches 0.4–0.46× and fasthttp 0.85–0.9×;
// both pay for a goroutine per connection and a read that fails with
// EAGAIN before each park. bench/README.md has the numbers.

const (
	sweepEvery     = 100 * time.Millisecond // timeouts are checked this often
	idleTimeout    = 120 * time.Second      // a client's keep-alive connection, as rt.Server's IdleTimeout
	dialTimeout    = 5 * time.Second        // a backend's connection, as the Transport's
	lingerFor      = 500 * time.Millisecond // a closing connection's wait for the client's EOF, as net/http's
	backendIdle    = 90 * time.Second       // a pooled backend connection, as the Transport's IdleConnTimeout
	maxIdlePerBack = 1000                   // pooled connections per backend and loop
	clientBufSize  = 4 << 10
	backendBufSize = 32 << 10
)

type fastPath struct {
	rt       *Router
	ln       net.Listener
	lfd      int
	hand     *handoffListener
	loops    []*loop
	wg       sync.WaitGroup
	draining atomic.Bool
	closing  atomic.Bool
	once     sync.Once
}

// startFast starts the loops on ln, a TCP listener.
func startFast(rt *Router, ln net.Listener, hand *handoffListener) (*fastPath, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, errNoFastPath
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	// A duplicate of the socket, that Go's poller does not know: the loops
	// accept on it; ln stays open (its address, and Close at shutdown).
	lfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { lfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	fp := &fastPath{rt: rt, ln: ln, lfd: lfd, hand: hand}
	for range runtime.GOMAXPROCS(0) {
		l, err := newLoop(fp)
		if err != nil {
			for _, l := range fp.loops {
				l.ef.Close()
			}
			unix.Close(lfd)
			return nil, err
		}
		fp.loops = append(fp.loops, l)
	}
	for _, l := range fp.loops {
		fp.wg.Add(1)
		go l.run()
	}
	return fp, nil
}

// stopAccepting takes the listening socket out of every loop and closes it.
func (fp *fastPath) stopAccepting() {
	fp.once.Do(func() {
		for _, l := range fp.loops {
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fp.lfd, nil)
		}
		unix.Close(fp.lfd)
		fp.ln.Close()
	})
}

func (fp *fastPath) served() (n uint64) {
	for _, l := range fp.loops {
		n += l.served.Load()
	}
	return n
}

func (fp *fastPath) wake() {
	for _, l := range fp.loops {
		l.ef.SetReadDeadline(time.Now())
	}
}

func (fp *fastPath) shutdown(ctx context.Context) error {
	fp.draining.Store(true)
	fp.stopAccepting()
	fp.wake()
	done := make(chan struct{})
	go func() { fp.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		fp.close()
		<-done
		return ctx.Err()
	}
}

func (fp *fastPath) close() {
	fp.draining.Store(true)
	fp.closing.Store(true)
	fp.stopAccepting()
	fp.wake()
	fp.wg.Wait()
}

// handler is what a loop knows a descriptor as.
type handler interface{ event(l *loop, ev uint32) }

type loop struct {
	fp     *fastPath
	rt     *Router
	epfd   int
	ef     *os.File // epfd, for Go's poller
	rc     syscall.RawConn
	events []unix.EpollEvent
	n      int // events ready
	werr   error
	conns  []handler // by descriptor
	idle   map[netip.AddrPort][]*bconn
	nconn  int // clients
	base   time.Time
	now    int64 // ns since base, at the last wake-up
	h      head  // the head being parsed
	out    []byte
	// served counts the requests proxied (for tests): the loop's own, so
	// that loops on other cores share no cache line per request.
	served atomic.Uint64
}

func newLoop(fp *fastPath) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ef := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ef.SyscallConn()
	if err != nil {
		ef.Close()
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(fp.lfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fp.lfd, &ev); err != nil {
		ef.Close()
		return nil, err
	}
	return &loop{
		fp: fp, rt: fp.rt, epfd: epfd, ef: ef, rc: rc,
		events: make([]unix.EpollEvent, 256),
		idle:   map[netip.AddrPort][]*bconn{},
		base:   time.Now(),
		out:    make([]byte, 0, 4096),
	}, nil
}

func (l *loop) run() {
	defer l.fp.wg.Done()
	defer l.shut()
	poll := func(fd uintptr) bool {
		n, err := unix.EpollWait(int(fd), l.events, 0)
		switch {
		case err == unix.EINTR:
			return false
		case err != nil:
			l.werr = err
			return true
		}
		l.n = n
		return n > 0
	}
	next := int64(sweepEvery)
	l.ef.SetReadDeadline(time.Now().Add(sweepEvery))
	for {
		l.n = 0
		err := l.rc.Read(poll)
		if l.werr != nil || err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.rt.log.Error("router event loop stopped", "err", errors.Join(l.werr, err))
			return
		}
		l.now = int64(time.Since(l.base))
		for _, ev := range l.events[:l.n] {
			fd := int(ev.Fd)
			if fd == l.fp.lfd && !l.fp.draining.Load() {
				l.accept()
				continue
			}
			if fd < len(l.conns) && l.conns[fd] != nil {
				l.conns[fd].event(l, ev.Events)
			}
		}
		if err != nil || l.now >= next {
			if l.sweep() {
				return
			}
			next = l.now + int64(sweepEvery)
			l.ef.SetReadDeadline(time.Now().Add(sweepEvery))
		}
	}
}

func (l *loop) set(fd int, h handler) {
	for fd >= len(l.conns) {
		l.conns = append(l.conns, make([]handler, len(l.conns)+64)...)
	}
	l.conns[fd] = h
}

func (l *loop) add(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

func (l *loop) accept() {
	for range 64 {
		fd, sa, err := unix.Accept4(l.fp.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch err {
			case unix.EINTR, unix.ECONNABORTED:
				continue
			case unix.EAGAIN:
			case unix.EMFILE, unix.ENFILE:
				l.rt.log.Error("router cannot accept connections: out of file descriptors", "err", err)
			}
			return
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		// The header timeout runs from the start, as net/http's.
		c := &client{fd: fd, in: make([]byte, clientBufSize), since: l.now, started: true}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			c.addr = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			c.addr = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
		}
		c.ip = c.addr.Addr().String()
		c.trusted = l.rt.trustsAddr(c.addr.Addr())
		if err := l.add(fd); err != nil {
			unix.Close(fd)
			continue
		}
		l.set(fd, c)
		l.nconn++
	}
}

// sweep enforces timeouts and shutdown; it returns true when the loop is
// to end.
func (l *loop) sweep() bool {
	closing, draining := l.fp.closing.Load(), l.fp.draining.Load()
	for _, h := range l.conns {
		switch x := h.(type) {
		case *client:
			switch {
			case closing:
				l.closeClient(x)
			case x.state == cIdle && len(x.out) == 0:
				switch {
				case x.started && l.now-x.since > int64(l.rt.readHeaderTimeout),
					!x.started && (draining || l.now-x.since > int64(idleTimeout)):
					l.closeClient(x)
				}
			case x.state == cLinger && l.now-x.since > int64(lingerFor):
				l.closeClient(x)
			case x.state == cClosing && l.now-x.since > int64(idleTimeout):
				l.closeClient(x) // a client that does not read its last answer
			case x.state == cProxy && x.b != nil:
				b := x.b
				switch {
				case b.connecting && l.now > b.deadline:
					l.dialFailed(b, unix.ETIMEDOUT)
				case x.req.deadline != 0 && b.rs == rHead && l.now > x.req.deadline:
					l.timedOut(x)
				}
			}
		case *bconn:
			if x.c == nil && (closing || draining || l.now-x.since > int64(backendIdle)) {
				l.dropIdle(x)
			}
		}
	}
	return closing || draining && l.nconn == 0
}

// shut closes what is left when the loop ends.
func (l *loop) shut() {
	for _, h := range l.conns {
		switch x := h.(type) {
		case *client:
			l.closeClient(x)
		case *bconn:
			l.closeBackend(x)
		}
	}
	l.ef.Close()
}

// Client connections.

const (
	cIdle    = iota // reading a request head (or waiting for one)
	cProxy          // a request is with a backend
	cClosing        // the last answer is being written; then linger
	cLinger         // half-closed after the last answer: dropping input until EOF, or lingerFor
)

type client struct {
	fd                      int
	addr                    netip.AddrPort
	ip                      string // for X-Forwarded-For
	trusted                 bool   // a trusted proxy (Config.TrustedProxies)
	in                      []byte
	r, w                    int // unconsumed input: in[r:w]
	out                     []byte
	state                   uint8
	started                 bool  // cIdle: part of a head came
	since                   int64 // cIdle: when the connection went idle, or the head began
	readable, writable, hup bool
	closeAfter              bool
	b                       *bconn
	req                     fastReq
}

// fastReq is the request a client has with a backend.
type fastReq struct {
	app        string
	be         *backend
	start      time.Time
	deadline   int64 // for the answer's head (the app's timeout); 0: none
	timeout    time.Duration
	bodyLeft   int64 // body bytes still to come from the client
	idempotent bool  // and without a body: may be sent again
	head       bool  // HEAD: the answer has no body
	retried    bool
	answered   bool // a byte of the answer went to the client
	status     int
	id         []byte
	idBuf      [32]byte
	// For the access log, when it is on.
	method, host, path string
}

func (c *client) event(l *loop, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.hup = true
	}
	if ev&unix.EPOLLOUT != 0 {
		c.writable = true
	}
	l.clientProgress(c)
}

func (l *loop) clientProgress(c *client) {
	if len(c.out) > 0 {
		if !c.writable {
			return
		}
		if !l.flushClient(c) {
			return
		}
		if len(c.out) > 0 {
			return
		}
		if c.state == cClosing {
			l.linger(c)
			return
		}
		if c.b != nil && c.b.paused {
			c.b.paused = false
			l.backendProgress(c.b)
			return
		}
	}
	switch c.state {
	case cIdle:
		l.readRequest(c)
	case cProxy:
		if c.req.bodyLeft > 0 {
			l.pumpBody(c)
		} else if c.hup && c.r == c.w {
			// The client went away (or half-closed) with its request
			// out: as net/http, give up on it.
			if !c.drainClosed(l) {
				return
			}
			l.record(c, 499) // nginx's word for it
			l.closeBackend(c.b)
			l.closeClient(c)
		}
	case cClosing:
		if len(c.out) == 0 {
			l.linger(c)
		}
	case cLinger:
		l.discard(c)
	}
}

// linger closes a connection after its last answer as nginx's lingering
// close does: half-close, then read and drop what the client still sends
// (pipelined requests it will not get answers to) for a moment, so that
// closing with unread data does not send a reset that could destroy the
// answer before the client has read it.
func (l *loop) linger(c *client) {
	if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
		l.closeClient(c)
		return
	}
	c.state, c.since = cLinger, l.now
	c.r, c.w = 0, 0
	l.discard(c)
}

func (l *loop) discard(c *client) {
	for c.readable {
		n, err := unix.Read(c.fd, c.in)
		switch {
		case n > 0:
		case err == unix.EAGAIN:
			c.readable = false
		case err == unix.EINTR:
		default: // EOF or an error: the client has closed
			l.closeClient(c)
			return
		}
	}
}

// drainClosed reads what the client sent; it says whether the client has
// really closed (EOF), rather than sent more (pipelined) requests.
func (c *client) drainClosed(l *loop) bool {
	for c.readable {
		if c.w == len(c.in) {
			return false // pipelined data: keep it for later
		}
		n, err := unix.Read(c.fd, c.in[c.w:])
		switch {
		case n > 0:
			c.w += n
			c.hup = false // data, not a close: it is read again next time
			return false
		case n == 0 && err == nil:
			return true
		case err == unix.EAGAIN:
			c.readable, c.hup = false, false
			return false
		case err == unix.EINTR:
		default:
			return true
		}
	}
	return false
}

// readRequest reads and parses until a request head is complete, and
// starts it, or hands the connection to net/http.
func (l *loop) readRequest(c *client) {
	for {
		if c.r < c.w {
			switch err := parseRequest(c.in[c.r:c.w], &l.h); err {
			case nil:
				l.startRequest(c, &l.h)
				return
			case errNotFast:
				l.handoff(c)
				return
			}
			if !c.started {
				c.started, c.since = true, l.now
			}
		}
		if !c.readable {
			return
		}
		if c.w == len(c.in) {
			if c.r > 0 {
				c.w = copy(c.in, c.in[c.r:c.w])
				c.r = 0
			} else {
				c.in = append(c.in, make([]byte, len(c.in))...)
			}
		}
		n, err := unix.Read(c.fd, c.in[c.w:])
		switch {
		case n > 0:
			if c.w += n; c.w < len(c.in) && !c.hup {
				// A short read drained the socket: the next edge says when
				// there is more. Not so for a close already signalled,
				// which gets no new edge: read on to the EOF.
				c.readable = false
			}
		case n == 0 && err == nil:
			l.closeClient(c)
			return
		case err == unix.EAGAIN:
			c.readable = false
		case err == unix.EINTR:
		default:
			l.closeClient(c)
			return
		}
	}
}

// handoff gives the connection, with what it sent that is not served yet,
// to net/http.
func (l *loop) handoff(c *client) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	l.conns[c.fd] = nil
	l.nconn--
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.rt.log.Warn("router could not hand a connection to net/http", "err", err)
		return
	}
	l.fp.hand.deliver(&prefixConn{Conn: nc, buf: bytes.Clone(c.in[c.r:c.w])})
}

func (l *loop) closeClient(c *client) {
	if l.conns[c.fd] != c {
		return
	}
	if c.b != nil {
		l.closeBackend(c.b)
		c.b = nil
	}
	l.conns[c.fd] = nil
	unix.Close(c.fd)
	l.nconn--
}

// startRequest routes the request whose head h is at c.in[c.r:]: to a
// backend, or to net/http when it is not plain proxying.
func (l *loop) startRequest(c *client, h *head) {
	buf := c.in[c.r:]
	rt := l.rt
	t := rt.table.Load()
	host := h.host.of(buf)
	if i := bytes.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	var lower [256]byte
	if len(host) > len(lower) {
		l.handoff(c)
		return
	}
	hb := lower[:len(host)]
	for i, x := range host {
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		hb[i] = x
	}
	hb = bytes.TrimSuffix(hb, []byte{'.'})
	app, ok := resolveBytes(rt, t, hb)
	if !ok {
		l.handoff(c) // the API, an unknown host, an IP address: net/http's
		return
	}
	rte := t.apps[app]
	if rte == nil || len(rte.backends) == 0 || rte.https&flagRedirect != 0 {
		l.handoff(c)
		return
	}
	cfg := rt.settingsOf(t, rte, app)
	if cfg != nil {
		if cfg.maintenance || cfg.bodyLimit > 0 && h.contentLength > cfg.bodyLimit ||
			cfg.allow != nil && (c.trusted || !cfg.allows(c.addr.Addr())) {
			l.handoff(c) // net/http answers these (and reads X-Forwarded-For)
			return
		}
	}
	target := h.target.of(buf)
	if bytes.HasPrefix(target, []byte(ACMEChallengePath)) {
		l.handoff(c)
		return
	}
	be := rte.pick()
	if !be.ap.IsValid() {
		l.handoff(c) // a backend by name: net/http resolves it
		return
	}

	method := h.method.of(buf)
	r := &c.req
	*r = fastReq{app: app, be: be}
	if rt.metrics != nil || rt.access != nil {
		r.start = time.Now() // only record reads it
	}
	r.head = string(method) == "HEAD"
	r.idempotent = h.contentLength <= 0 && (r.head || string(method) == "GET" || string(method) == "OPTIONS" || string(method) == "TRACE")
	if cfg != nil && cfg.timeout > 0 {
		r.timeout = cfg.timeout
		r.deadline = l.now + int64(cfg.timeout)
	}
	if rt.access != nil {
		path := target
		if i := bytes.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		r.method, r.host, r.path = string(method), string(h.host.of(buf)), string(path)
	}
	c.closeAfter = h.close

	// The request as the backend gets it, into the loop's scratch buffer.
	o := append(l.out[:0], h.first.of(buf)...)
	o = append(o, "\r\n"...)
	var xff [4]span
	nxff := 0
	var xfproto, xfhost span
	ids := 0
	for i := range h.nl {
		ln := &h.lines[i]
		switch ln.kind {
		case hOther:
			if h.nconn > 0 && h.named(buf, ln) {
				continue
			}
			fallthrough
		case hHost, hContentLength:
			o = append(o, ln.all.of(buf)...)
			o = append(o, "\r\n"...)
		case hXFF:
			if c.trusted {
				if nxff == len(xff) {
					l.handoff(c)
					return
				}
				xff[nxff] = ln.value
				nxff++
			}
		case hXFProto:
			if v := ln.value.of(buf); c.trusted && xfproto.end == 0 && (string(v) == "http" || string(v) == "https") {
				xfproto = ln.value
			}
		case hXFHost:
			if c.trusted && xfhost.end == 0 && ln.value.end > ln.value.start {
				xfhost = ln.value
			}
		case hRequestID:
			if c.trusted {
				if ids++; validRequestID(string(ln.value.of(buf))) {
					r.id = append(r.idBuf[:0:0], ln.value.of(buf)...)
				}
			}
		}
		// Everything else is hop-by-hop or the router's to set.
	}
	if ids != 1 || r.id == nil {
		r.id = newRequestIDInto(&r.idBuf)
	}
	o = append(o, "X-Forwarded-For: "...)
	for i := range nxff {
		o = append(o, xff[i].of(buf)...)
		o = append(o, ", "...)
	}
	o = append(o, c.ip...)
	o = append(o, "\r\nX-Forwarded-Host: "...)
	if xfhost.end != 0 {
		o = append(o, xfhost.of(buf)...)
	} else {
		o = append(o, h.host.of(buf)...)
	}
	o = append(o, "\r\nX-Forwarded-Proto: "...)
	if xfproto.end != 0 {
		o = append(o, xfproto.of(buf)...)
	} else {
		o = append(o, "http"...)
	}
	o = append(o, "\r\nX-Request-Id: "...)
	o = append(o, r.id...)
	o = append(o, "\r\n\r\n"...)
	// The body's first bytes, those read with the head.
	c.r += h.n
	if h.contentLength > 0 {
		k := min(int64(c.w-c.r), h.contentLength)
		o = append(o, c.in[c.r:c.r+int(k)]...)
		c.r += int(k)
		r.bodyLeft = h.contentLength - k
	}
	l.out = o
	c.state = cProxy
	c.started = false
	l.send(c, be, o)
}

// send gives the request bytes p to a connection to be: a pooled one or a
// new one. A backend that refuses the connection is ejected and another
// one of the app tried: it never saw the request, whatever its method.
func (l *loop) send(c *client, be *backend, p []byte) {
	for {
		b := l.takeIdle(be)
		if b == nil {
			var err error
			b, err = l.dial(be)
			if err != nil {
				if !l.retryElsewhere(c, be, err) {
					return
				}
				be = c.req.be
				continue
			}
		}
		b.out = append(b.out[:0], p...)
		b.off = 0
		b.c, c.b = c, b
		b.rs, b.got, b.keep = rHead, false, false
		l.backendProgress(b)
		return
	}
}

// retryElsewhere handles a backend that refused a connection: eject it,
// and pick another ready backend of the app for c's request. false: none,
// and the client got a 502.
func (l *loop) retryElsewhere(c *client, be *backend, err error) bool {
	l.rt.eject(c.req.app, be)
	if !c.req.retried {
		c.req.retried = true
		if rte := l.rt.table.Load().apps[c.req.app]; rte != nil {
			if nb := rte.pickUp(rte.next.Add(1), be.addr); nb != nil && nb.ap.IsValid() {
				c.req.be = nb
				return true
			}
		}
	}
	l.badGateway(c, err)
	return false
}

// pumpBody forwards the rest of a request body from the client to its
// backend, as fast as the backend takes it.
func (l *loop) pumpBody(c *client) {
	for c.req.bodyLeft > 0 && c.b != nil {
		b := c.b
		if b.connecting || b.off < len(b.out) {
			return // the backend has not taken the last piece yet
		}
		if c.r < c.w {
			k := int(min(int64(c.w-c.r), c.req.bodyLeft))
			b.out = append(b.out[:0], c.in[c.r:c.r+k]...)
			b.off = 0
			c.r += k
			c.req.bodyLeft -= int64(k)
			if !l.flushBackend(b) {
				return
			}
			continue
		}
		if !c.readable {
			return
		}
		c.r, c.w = 0, 0
		n, err := unix.Read(c.fd, c.in)
		switch {
		case n > 0:
			c.w = n
			if n < len(c.in) && !c.hup {
				c.readable = false
			}
		case n == 0 && err == nil, err != nil && err != unix.EAGAIN && err != unix.EINTR:
			// The client left in the middle of its body.
			l.closeClient(c)
			return
		case err == unix.EAGAIN:
			c.readable = false
		}
	}
}

func (l *loop) flushClient(c *client) bool {
	for len(c.out) > 0 {
		n, err := unix.Write(c.fd, c.out)
		if n > 0 {
			c.out = c.out[:copy(c.out, c.out[n:])]
			continue
		}
		switch err {
		case unix.EAGAIN:
			c.writable = false
			return true
		case unix.EINTR:
		default:
			l.closeClient(c)
			return false
		}
	}
	return true
}

// write sends p to the client, keeping what the socket does not take. It
// returns false if the client is gone (and closed).
func (l *loop) write(c *client, p []byte) bool {
	c.req.answered = true
	if len(c.out) > 0 {
		c.out = append(c.out, p...)
		return true
	}
	for len(p) > 0 {
		n, err := unix.Write(c.fd, p)
		if n > 0 {
			p = p[n:]
			continue
		}
		switch err {
		case unix.EAGAIN:
			c.writable = false
			c.out = append(c.out[:0], p...)
			return true
		case unix.EINTR:
		default:
			l.closeClient(c)
			return false
		}
	}
	return true
}

// Backend connections.

const (
	rHead    = iota // reading the answer's head
	rLength         // a body of known length
	rChunked        // a chunked body
	rClose          // a body up to the backend's close
	rNone           // no body
)

type bconn struct {
	fd         int
	be         *backend
	key        netip.AddrPort
	c          *client // nil: idle, in the pool
	since      int64   // idle since
	deadline   int64   // of the connection, while connecting
	connecting bool
	reused     bool
	readable   bool
	writable   bool
	paused     bool // the client's socket is full: not reading
	hup        bool // the backend closed its side (or failed): read to the end
	short      bool // the buffered head is incomplete: read before parsing again
	out        []byte
	off        int // out[:off] is written
	in         []byte
	r, w       int
	rs         uint8
	left       int64
	ch         chunks
	got        bool // a byte of the answer came
	keep       bool // may serve another request after this answer
}

func (l *loop) dial(be *backend) (*bconn, error) {
	a := be.ap.Addr()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(be.ap.Port()), Addr: a.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(be.ap.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	b := &bconn{fd: fd, be: be, key: be.ap, in: make([]byte, backendBufSize), writable: true}
	switch err := unix.Connect(fd, sa); err {
	case nil:
	case unix.EINPROGRESS:
		b.connecting, b.writable = true, false
		b.deadline = l.now + int64(dialTimeout)
	default:
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(be.ap), Err: os.NewSyscallError("connect", err)}
	}
	if err := l.add(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	l.set(fd, b)
	return b, nil
}

func (l *loop) takeIdle(be *backend) *bconn {
	p := l.idle[be.ap]
	if len(p) == 0 {
		return nil
	}
	b := p[len(p)-1]
	l.idle[be.ap] = p[:len(p)-1]
	b.be, b.reused = be, true
	return b
}

// release puts b back in the pool, or closes it.
func (l *loop) release(b *bconn) {
	b.c = nil
	p := l.idle[b.key]
	if len(p) >= maxIdlePerBack || l.fp.draining.Load() {
		l.closeBackend(b)
		return
	}
	b.since = l.now
	b.r, b.w = 0, 0
	l.idle[b.key] = append(p, b)
}

// dropIdle closes a pooled connection: the backend closed it, or sent
// something unasked, or it idled too long.
func (l *loop) dropIdle(b *bconn) {
	p := l.idle[b.key]
	for i, x := range p {
		if x == b {
			p[i] = p[len(p)-1]
			p[len(p)-1] = nil
			l.idle[b.key] = p[:len(p)-1]
			break
		}
	}
	l.closeBackend(b)
}

func (l *loop) closeBackend(b *bconn) {
	if b == nil || l.conns[b.fd] != b {
		return
	}
	if b.c != nil && b.c.b == b {
		b.c.b = nil
	}
	b.c = nil
	l.conns[b.fd] = nil
	unix.Close(b.fd)
}

func (b *bconn) event(l *loop, ev uint32) {
	if ev&unix.EPOLLOUT != 0 {
		b.writable = true
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		b.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		b.hup = true
	}
	if b.c == nil {
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.dropIdle(b)
		}
		return
	}
	if b.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		soerr, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			l.dialFailed(b, unix.Errno(soerr))
			return
		}
		b.connecting = false
	}
	l.backendProgress(b)
}

// dialFailed: the connection to b's backend failed; it never saw the request.
func (l *loop) dialFailed(b *bconn, errno unix.Errno) {
	c := b.c
	p := bytes.Clone(b.out)
	be := b.be
	l.closeBackend(b)
	if c == nil {
		return
	}
	err := &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(be.ap), Err: os.NewSyscallError("connect", errno)}
	if errno == unix.ETIMEDOUT || !l.retryElsewhere(c, be, err) {
		if errno == unix.ETIMEDOUT {
			l.badGateway(c, err)
		}
		return
	}
	l.send(c, c.req.be, p)
}

func (l *loop) flushBackend(b *bconn) bool {
	for b.off < len(b.out) {
		n, err := unix.Write(b.fd, b.out[b.off:])
		if n > 0 {
			b.off += n
			continue
		}
		switch err {
		case unix.EAGAIN:
			b.writable = false
			return false
		case unix.EINTR:
		default:
			l.backendFailed(b, err)
			return false
		}
	}
	return true
}

func (l *loop) backendProgress(b *bconn) {
	c := b.c
	if c == nil || b.connecting {
		return
	}
	if b.off < len(b.out) && b.writable {
		if !l.flushBackend(b) {
			if b.c == nil {
				return // failed
			}
		} else if c.req.bodyLeft > 0 {
			l.pumpBody(c)
		}
	}
	if b.c != nil {
		l.readAnswer(b)
	}
}

// readAnswer reads the backend's answer and passes it on as it comes.
func (l *loop) readAnswer(b *bconn) {
	for {
		c := b.c
		if c == nil || b.paused {
			return
		}
		if len(c.out) > 0 {
			// The client has not taken the last piece: hold the rest in
			// the backend's socket until it has (clientProgress resumes).
			b.paused = true
			return
		}
		if b.r < b.w && !b.short {
			if !l.consume(b) {
				return
			}
			continue
		}
		b.short = false
		if !b.readable {
			return
		}
		if b.r == b.w {
			b.r, b.w = 0, 0
		}
		if b.w == len(b.in) {
			// A head longer than the buffer: grow up to the limit.
			if len(b.in) >= maxFastHead {
				l.answerFailed(b, errBadResponse)
				return
			}
			b.in = append(b.in, make([]byte, len(b.in))...)
		}
		n, err := unix.Read(b.fd, b.in[b.w:])
		switch {
		case n > 0:
			b.got = true
			if b.w += n; b.w < len(b.in) && !b.hup {
				b.readable = false
			}
		case n == 0 && err == nil:
			l.backendEOF(b, nil)
			return
		case err == unix.EAGAIN:
			b.readable = false
			return
		case err == unix.EINTR:
		default:
			l.backendEOF(b, err)
			return
		}
	}
}

// consume passes on what is in b.in[b.r:b.w] as its state says. false:
// nothing more can be done until more comes (or the request ended).
func (l *loop) consume(b *bconn) bool {
	c := b.c
	switch b.rs {
	case rHead:
		h := &l.h
		switch err := parseResponse(b.in[b.r:b.w], h); err {
		case nil:
		case errIncomplete:
			if b.r > 0 {
				b.w = copy(b.in, b.in[b.r:b.w])
				b.r = 0
			}
			b.short = true // read more before parsing again
			return b.readable
		default:
			l.answerFailed(b, err)
			return false
		}
		src := b.in[b.r:]
		if h.status == 101 {
			l.answerFailed(b, errBadResponse) // never asked for an upgrade
			return false
		}
		informational := h.status < 200
		o := l.answerHead(c, h, src, informational)
		b.r += h.n
		if informational {
			if !l.write(c, o) {
				return false
			}
			return true
		}
		c.req.status = h.status
		b.keep = !h.close && (!h.http10 || h.keep)
		switch {
		case c.req.head || h.status == 204 || h.status == 304:
			b.rs = rNone
		case h.chunked:
			b.rs, b.ch = rChunked, chunks{}
		case h.contentLength >= 0:
			b.rs, b.left = rLength, h.contentLength
		default:
			b.rs, b.keep = rClose, false
			c.closeAfter = true // the body ends with the connection
		}
		l.out = o
		// The head and what came of the body, in one write.
		k, end, err := b.bodyPart(b.in[b.r:b.w])
		if err != nil {
			l.answerFailed(b, err)
			return false
		}
		l.out = append(l.out, b.in[b.r:b.r+k]...)
		b.r += k
		if end {
			l.served.Add(1) // before the last bytes go: see answered
		}
		if !l.write(c, l.out) {
			return false
		}
		if end {
			l.answered(b)
			return false
		}
		return true
	default:
		k, end, err := b.bodyPart(b.in[b.r:b.w])
		if err != nil {
			l.closeBackend(b)
			l.closeClient(c)
			return false
		}
		p := b.in[b.r : b.r+k]
		b.r += k
		if end {
			l.served.Add(1) // before the last bytes go: see answered
		}
		if k > 0 && !l.write(c, p) {
			return false
		}
		if end {
			l.answered(b)
			return false
		}
		return true
	}
}

// bodyPart says how much of p is body, and whether the body ends there.
func (b *bconn) bodyPart(p []byte) (int, bool, error) {
	switch b.rs {
	case rNone:
		return 0, true, nil
	case rLength:
		k := int(min(int64(len(p)), b.left))
		b.left -= int64(k)
		return k, b.left == 0, nil
	case rChunked:
		return b.ch.feed(p)
	default: // rClose
		return len(p), false, nil
	}
}

// answerHead writes the client's copy of an answer's head into the loop's
// scratch buffer: the backend's fields but the hop-by-hop ones, and the
// request's ID.
func (l *loop) answerHead(c *client, h *head, src []byte, informational bool) []byte {
	o := append(l.out[:0], "HTTP/1.1"...)
	o = append(o, src[8:h.first.end]...)
	o = append(o, "\r\n"...)
	for i := range h.nl {
		ln := &h.lines[i]
		switch ln.kind {
		case hOther:
			if h.nconn > 0 && h.named(src, ln) {
				continue
			}
			fallthrough
		case hContentLength, hTransferEncoding, hTrailer, hHost, hXFF, hXFProto, hXFHost, hForwarded, hExpect:
			o = append(o, src[ln.all.start:ln.all.end]...)
			o = append(o, "\r\n"...)
		}
		// Connection, Keep-Alive and the like are hop-by-hop; the app's
		// X-Request-Id is replaced by the request's.
	}
	if !informational {
		o = append(o, "X-Request-Id: "...)
		o = append(o, c.req.id...)
		o = append(o, "\r\n"...)
		if c.closeAfter || l.fp.draining.Load() || !h.chunked && h.contentLength < 0 && !c.req.head && h.status != 204 && h.status != 304 {
			o = append(o, "Connection: close\r\n"...)
		}
	}
	return append(o, "\r\n"...)
}

// answered ends a request whose answer was passed on whole. Its callers
// count it in served before the answer's last bytes are written, so that
// a client holding its whole answer finds it counted (the tests read the
// count then).
func (l *loop) answered(b *bconn) {
	c := b.c
	l.record(c, c.req.status)
	c.b, b.c = nil, nil
	if b.keep && b.r == b.w && c.req.bodyLeft == 0 {
		l.release(b)
	} else {
		l.closeBackend(b)
	}
	l.next(c)
}

// next readies c for its next request, or closes it.
func (l *loop) next(c *client) {
	if c.req.bodyLeft > 0 || c.closeAfter || l.fp.draining.Load() {
		c.state, c.since = cClosing, l.now
		if len(c.out) == 0 {
			l.linger(c)
		}
		return
	}
	c.state, c.since, c.started = cIdle, l.now, false
	if len(c.out) == 0 && (c.r < c.w || c.readable) {
		l.readRequest(c)
	}
}

func (l *loop) record(c *client, status int) {
	if l.rt.metrics == nil && l.rt.access == nil {
		return
	}
	remote := ""
	if l.rt.access != nil {
		remote = c.addr.String()
	}
	l.rt.record(context.Background(), c.req.app, status, time.Since(c.req.start), c.req.method, c.req.host, c.req.path, remote, string(c.req.id))
}

// backendEOF: the backend closed its side (err nil) or failed.
func (l *loop) backendEOF(b *bconn, err error) {
	if b.rs == rClose && err == nil {
		// The client reads this answer until the close that follows.
		l.served.Add(1)
		l.answered(b)
		return
	}
	if !b.got && b.rs == rHead {
		l.backendFailed(b, err)
		return
	}
	// Cut off in the middle of an answer.
	if err == nil {
		err = errors.New("the app closed the connection in the middle of its answer")
	}
	l.answerFailed(b, err)
}

// backendFailed: writing to the backend, or reading its first byte, failed.
// A pooled connection the backend had closed is retried once on a new
// connection if the request may be sent twice; otherwise 502.
func (l *loop) backendFailed(b *bconn, err error) {
	c := b.c
	reused := b.reused && !b.got
	p := bytes.Clone(b.out)
	be := b.be
	l.closeBackend(b)
	if c == nil {
		return
	}
	if reused && c.req.idempotent && !c.req.answered {
		nb, derr := l.dial(be)
		if derr == nil {
			nb.out = append(nb.out[:0], p...)
			nb.c, c.b = c, nb
			l.backendProgress(nb)
			return
		}
		err = derr
	}
	if err == nil {
		err = errors.New("the app closed the connection without answering")
	}
	l.badGateway(c, err)
}

// answerFailed: the answer cannot be passed on. Before any of it reached
// the client, that is a 502; after, the client's connection is cut, as the
// only way to tell it the answer is incomplete.
func (l *loop) answerFailed(b *bconn, err error) {
	c := b.c
	l.closeBackend(b)
	if c == nil {
		return
	}
	if c.req.answered {
		l.rt.log.Warn("backend error", "app", c.req.app, "request_id", string(c.req.id), "err", err)
		l.record(c, c.req.status)
		l.closeClient(c)
		return
	}
	l.badGateway(c, err)
}

func (l *loop) badGateway(c *client, err error) {
	l.rt.log.Warn("backend error", "app", c.req.app, "request_id", string(c.req.id), "err", err)
	l.errorPage(c, 502, "Bad Gateway", badGatewayPage, nil)
}

var (
	badGatewayPage = pageHTML("The app did not answer", "This app's process could not be reached or broke off its answer.")
	timeoutPages   sync.Map // time.Duration → string
)

// timedOut: the app did not start its answer within its timeout.
func (l *loop) timedOut(c *client) {
	l.closeBackend(c.b)
	l.rt.log.Warn("app did not answer in time", "app", c.req.app, "request_id", string(c.req.id), "timeout", c.req.timeout)
	p, ok := timeoutPages.Load(c.req.timeout)
	if !ok {
		p, _ = timeoutPages.LoadOrStore(c.req.timeout, pageHTML("The app did not answer in time", "This app took longer than "+c.req.timeout.String()+" to start its answer."))
	}
	l.errorPage(c, 504, "Gateway Timeout", p.(string), nil)
}

// errorPage answers the request with one of the router's pages.
func (l *loop) errorPage(c *client, code int, text, body string, _ []byte) {
	c.b = nil
	c.req.status = code
	o := append(l.out[:0], "HTTP/1.1 "...)
	o = strconv.AppendInt(o, int64(code), 10)
	o = append(o, ' ')
	o = append(o, text...)
	o = append(o, "\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Request-Id: "...)
	o = append(o, c.req.id...)
	o = append(o, "\r\nContent-Length: "...)
	o = strconv.AppendInt(o, int64(len(body)), 10)
	if c.req.bodyLeft > 0 || c.closeAfter || l.fp.draining.Load() {
		o = append(o, "\r\nConnection: close"...)
	}
	o = append(o, "\r\n\r\n"...)
	o = append(o, body...)
	l.out = o
	if !l.write(c, o) {
		return
	}
	l.record(c, code)
	l.next(c)
}

// resolveBytes is Router.resolve for a host in bytes, without allocating.
func resolveBytes(rt *Router, t *table, host []byte) (string, bool) {
	if app, ok := t.exact[string(host)]; ok {
		return app, true
	}
	i := bytes.IndexByte(host, '.')
	if i < 0 {
		return "", false
	}
	label, rest := host[:i], host[i+1:]
	if string(rest) == rt.domain {
		if string(label) == "pier" {
			return "", false // the API's host
		}
		return appName(t, label)
	}
	app, ok := t.wild[string(rest)]
	return app, ok
}

// appName returns the table's own string for label, so that the request
// path does not allocate one; an app without a route is net/http's to
// answer (404 or 503).
func appName(t *table, label []byte) (string, bool) {
	r, ok := t.apps[string(label)]
	if !ok {
		return "", false
	}
	return r.app, true
}

// newRequestIDInto is newRequestID into buf.
func newRequestIDInto(buf *[32]byte) []byte {
	const digits = "0123456789abcdef"
	for half, v := range [2]uint64{rand.Uint64(), rand.Uint64()} {
		for i := range 16 {
			buf[half*16+i] = digits[v>>(60-4*i)&0xf]
		}
	}
	return buf[:]
}
