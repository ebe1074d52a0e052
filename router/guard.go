package router

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
)

// Listener wraps a plain-TCP listener so that the router's server refuses,
// with 400, a request that carries both Content-Length and
// Transfer-Encoding, and closes its connection.
//
// net/http accepts such a request (it drops Content-Length and reads the
// chunks) and leaves no trace of it on the *http.Request, so only the bytes
// on the wire tell. RFC 9112 §6.1 calls it a likely request-smuggling
// attempt: a proxy in front may have framed it by its Content-Length, and
// then what follows on the connection is not what it believes. So the
// connection follows the HTTP/1.1 framing of what the client sends, as
// net/http will read it, and fails the read that would complete such a
// request's headers; net/http then answers 400 and hangs up, and no
// handler (the router or the API) ever sees the request.
//
// Under TLS the listener's bytes are ciphertext and the server needs the
// *tls.Conn itself: wrap only plain-TCP listeners.
func (rt *Router) Listener(ln net.Listener) net.Listener {
	return &guardListener{Listener: ln, log: rt.log}
}

type guardListener struct {
	net.Listener
	log *slog.Logger
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, log: l.log}, nil
}

var errSmuggling = errors.New("request has both Content-Length and Transfer-Encoding")

// Framing states of a guardConn.
const (
	stStart     = iota // the request line
	stHeader           // header lines, up to an empty one
	stBody             // left bytes of a Content-Length body
	stChunkSize        // a chunk-size line
	stChunkData        // left bytes of chunk data
	stChunkEnd         // the CRLF after chunk data
	stTrailer          // trailer lines after the last chunk, up to an empty one
	stOpaque           // not HTTP/1 any more, or framing lost: pass everything
)

// lineMax is how much of a line the guard keeps: enough for a header name
// and a Content-Length value. Longer lines are still followed, not kept.
const lineMax = 96

// guardConn follows the framing of the bytes the client sends. Only Read
// touches the framing state: net/http never reads a connection from two
// goroutines at once, and hands it to one after a hijack.
type guardConn struct {
	net.Conn
	log *slog.Logger
	// opaque is set when the server switches protocols (101): the bytes
	// are a WebSocket's or another protocol's from then on.
	opaque atomic.Bool
	err    error // once set, every Read returns it

	st     uint8
	line   [lineMax]byte // the start of the current line
	n      int           // bytes kept in line
	long   bool          // the current line is longer than lineMax
	tail   [10]byte      // the end of the request line: its version
	tn     int
	http10 bool  // the request is HTTP/1.0, whose Transfer-Encoding net/http ignores
	cl, te bool  // the request's header has Content-Length, Transfer-Encoding
	clBad  bool  // its Content-Length could not be read here
	clen   int64 // its Content-Length
	left   int64 // bytes of body or chunk data still to pass
}

func (c *guardConn) Read(p []byte) (int, error) {
	if c.err != nil {
		if len(p) == 1 {
			return c.idle()
		}
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.st != stOpaque && !c.opaque.Load() {
		if k := c.scan(p[:n]); k >= 0 {
			// Hold back the end of the header, so that net/http never
			// completes the request; the error makes it answer 400.
			c.err = errSmuggling
			c.log.Info("refused a request with both Content-Length and Transfer-Encoding (request smuggling?)", "client", c.RemoteAddr().String())
			switch {
			case k > 0:
				return k, nil
			case len(p) == 1:
				return c.idle()
			}
			return 0, c.err
		}
	}
	return n, err
}

// idle answers net/http's one-byte background read, made while a handler
// serves a request pipelined before the refused one. An error there would
// cancel that request; instead the read waits, dropping what the client
// sends, until net/http ends it with a deadline when the handler is done
// (or the client goes), and the next read, for the refused request's
// header, gets the error.
func (c *guardConn) idle() (int, error) {
	var b [512]byte
	for {
		if _, err := c.Conn.Read(b[:]); err != nil {
			return 0, err
		}
	}
}

// Write notices the switch to another protocol: the 101 response starts a
// write. A large body written past the buffer could start one with the same
// bytes; at worst that stops the guard for its connection, and net/http's
// own reading of such requests stays unambiguous.
func (c *guardConn) Write(p []byte) (int, error) {
	if len(p) >= 12 && string(p[:12]) == "HTTP/1.1 101" {
		c.opaque.Store(true)
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http half-close, as it does after a 431 so that the
// client can read the answer.
func (c *guardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the kernel's fast copy (splice, sendfile) to the client.
func (c *guardConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// scan follows b through the framing and returns -1, or, when b completes
// the header of a request with both Content-Length and Transfer-Encoding,
// the offset of the header's last newline.
func (c *guardConn) scan(b []byte) int {
	for i := 0; i < len(b); {
		switch c.st {
		case stOpaque:
			return -1
		case stBody, stChunkData:
			k := min(int64(len(b)-i), c.left)
			i += int(k)
			c.left -= k
			if c.left == 0 {
				if c.st == stBody {
					c.st = stStart
				} else {
					c.st = stChunkEnd
				}
			}
			continue
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			c.keep(b[i:])
			return -1
		}
		c.keep(b[i : i+j])
		if c.endLine() {
			return i + j
		}
		i += j + 1
	}
	return -1
}

// keep adds seg to the current line.
func (c *guardConn) keep(seg []byte) {
	k := copy(c.line[c.n:], seg)
	c.n += k
	if k < len(seg) {
		c.long = true
	}
	if c.st != stStart {
		return
	}
	if len(seg) >= len(c.tail) {
		c.tn = copy(c.tail[:], seg[len(seg)-len(c.tail):])
		return
	}
	if room := len(c.tail) - len(seg); c.tn > room {
		copy(c.tail[:], c.tail[c.tn-room:c.tn])
		c.tn = room
	}
	c.tn += copy(c.tail[c.tn:], seg)
}

// endLine takes the line just ended and reports whether it completed the
// header of a request with both Content-Length and Transfer-Encoding.
func (c *guardConn) endLine() bool {
	line := bytes.TrimSuffix(c.line[:c.n], []byte("\r"))
	empty := len(line) == 0 && !c.long
	long := c.long
	c.n, c.long = 0, false
	switch c.st {
	case stStart:
		if empty {
			return false // net/http refuses it and hangs up
		}
		if bytes.HasPrefix(line, []byte("PRI * HTTP/2")) {
			c.st = stOpaque // HTTP/2 with prior knowledge, if ever enabled
			return false
		}
		c.http10 = bytes.HasSuffix(bytes.TrimSuffix(c.tail[:c.tn], []byte("\r")), []byte("HTTP/1.0"))
		c.tn = 0
		c.cl, c.te, c.clBad, c.clen = false, false, false, 0
		c.st = stHeader
	case stHeader:
		if !empty {
			c.header(line, long)
			return false
		}
		switch {
		case c.cl && c.te:
			c.st = stOpaque
			return true
		case c.te && !c.http10:
			c.st = stChunkSize
		case c.cl && c.clBad:
			c.st = stOpaque // a length net/http reads and this does not: stop following
		case c.clen > 0:
			c.st, c.left = stBody, c.clen
		default:
			c.st = stStart
		}
	case stChunkSize:
		size, ok := chunkSize(line, long)
		switch {
		case !ok:
			c.st = stOpaque // net/http refuses it and hangs up
		case size == 0:
			c.st = stTrailer
		default:
			c.st, c.left = stChunkData, size
		}
	case stChunkEnd:
		c.st = stChunkSize
	case stTrailer:
		if empty {
			c.st = stStart
		}
	}
	return false
}

// header notes a Content-Length or Transfer-Encoding header line.
func (c *guardConn) header(line []byte, long bool) {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return
	}
	switch {
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		c.te = true
	case bytes.EqualFold(name, []byte("Content-Length")):
		n, ok := decimal(bytes.Trim(value, " \t"))
		if c.cl && n != c.clen {
			ok = false // net/http refuses differing lengths and hangs up
		}
		c.cl = true
		c.clen = n
		c.clBad = c.clBad || !ok || long
	}
}

func decimal(s []byte) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range s {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// chunkSize reads a chunk-size line: hex digits, then maybe ";extensions".
func chunkSize(line []byte, long bool) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	} else if long {
		return 0, false
	}
	line = bytes.Trim(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, d := range line {
		switch {
		case '0' <= d && d <= '9':
			d -= '0'
		case 'a' <= d && d <= 'f':
			d -= 'a' - 10
		case 'A' <= d && d <= 'F':
			d -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}
