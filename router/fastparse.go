package router

import (
	"bytes"
	"errors"
)

// The fast path (fast_linux.go) proxies only requests that this file's
// strict parser accepts: HTTP/1.1, CRLF line ends, token header names,
// values without control characters, one Host, at most one
// Content-Length, no Transfer-Encoding, Upgrade or Expect. Anything else
// (HTTP/1.0, WebSockets, chunked uploads, malformed or merely unusual
// requests) is handed, bytes and all, to net/http, which serves it or
// answers 400/431 as it always has. The parser never has to be lenient,
// so no request can mean one thing to it and another to a backend.

// hdrKind names the header fields that the router acts on.
type hdrKind uint8

const (
	hOther hdrKind = iota
	hHost
	hContentLength
	hTransferEncoding
	hConnection
	hHopByHop // Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer
	hUpgrade
	hExpect
	hForwarded // Forwarded, X-Real-Ip, Proxy: claims as untrustworthy as X-Forwarded-*, or httpoxy
	hXFF
	hXFProto
	hXFHost
	hRequestID
	hTrailer // kept in responses: the chunked body, trailers included, passes through as is
)

// kindOf classifies a header name, case-insensitively, without allocating.
func kindOf(name []byte) hdrKind {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return hHopByHop
		}
	case 4:
		if eqFold(name, "host") {
			return hHost
		}
	case 5:
		if eqFold(name, "proxy") {
			return hForwarded
		}
	case 6:
		if eqFold(name, "expect") {
			return hExpect
		}
	case 7:
		if eqFold(name, "upgrade") {
			return hUpgrade
		}
		if eqFold(name, "trailer") {
			return hTrailer
		}
	case 9:
		if eqFold(name, "forwarded") {
			return hForwarded
		}
		if eqFold(name, "x-real-ip") {
			return hForwarded
		}
	case 10:
		if eqFold(name, "connection") {
			return hConnection
		}
		if eqFold(name, "keep-alive") {
			return hHopByHop
		}
	case 12:
		if eqFold(name, "x-request-id") {
			return hRequestID
		}
	case 14:
		if eqFold(name, "content-length") {
			return hContentLength
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return hXFF
		}
	case 16:
		if eqFold(name, "proxy-connection") {
			return hHopByHop
		}
		if eqFold(name, "x-forwarded-host") {
			return hXFHost
		}
	case 17:
		if eqFold(name, "transfer-encoding") {
			return hTransferEncoding
		}
		if eqFold(name, "x-forwarded-proto") {
			return hXFProto
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return hHopByHop
		}
	case 19:
		if eqFold(name, "proxy-authorization") {
			return hHopByHop
		}
	}
	return hOther
}

// eqFold compares b with lower, an ASCII lower-case string.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// isToken reports whether c may be in a header name or method (RFC 9110 tchar).
func isToken(c byte) bool { return tokenTable[c] }

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// span is a part of a buffer: [start, end).
type span struct{ start, end int32 }

func (s span) of(b []byte) []byte { return b[s.start:s.end] }

// line is one header field of a parsed head: the whole line without its
// line end, and its value with surrounding whitespace trimmed.
type line struct {
	all, value span
	kind       hdrKind
	nameLen    int32
}

// Limits of the fast path; past them a request goes to net/http.
const (
	maxFastLines = 64 // header fields
	maxConnNames = 8  // tokens in Connection
	maxFastHead  = 64 << 10
)

// head is a parsed request or response head. Spans point into the buffer
// it was parsed from.
type head struct {
	n     int // bytes of the head, final empty line included
	first span
	lines [maxFastLines]line
	nl    int
	// Connection's tokens, other than close and keep-alive: header names
	// that are hop-by-hop for this message.
	conn  [maxConnNames]span
	nconn int
	close bool // Connection: close
	keep  bool // Connection: keep-alive (an HTTP/1.0 response)

	contentLength int64 // -1: none
	chunked       bool  // responses only: Transfer-Encoding: chunked

	// Requests.
	method, target, host span
	// Responses.
	status int
	http10 bool
}

var (
	errIncomplete = errors.New("incomplete head")
	errNotFast    = errors.New("not for the fast path")
)

// parseRequest parses a request head at the start of b. It returns
// errIncomplete when b holds only part of one (and no sign that it is not
// for the fast path), and errNotFast for anything the fast path does not
// proxy.
func parseRequest(b []byte, h *head) error {
	*h = head{contentLength: -1}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		if len(b) >= maxFastHead {
			return errNotFast
		}
		// A bare LF before the end of the head: not strict HTTP.
		if i := bytes.IndexByte(b, '\n'); i >= 0 && (i == 0 || b[i-1] != '\r') {
			return errNotFast
		}
		return errIncomplete
	}
	h.n = end + 4
	if h.n > maxFastHead {
		return errNotFast
	}
	// Request line: METHOD SP origin-form SP HTTP/1.1
	eol := bytes.IndexByte(b, '\n') - 1 // b[eol] == '\r' when strict
	if eol < 1 || b[eol] != '\r' {
		return errNotFast
	}
	rl := b[:eol]
	i := 0
	for i < len(rl) && isToken(rl[i]) {
		i++
	}
	if i == 0 || i >= len(rl) || rl[i] != ' ' {
		return errNotFast
	}
	h.method = span{0, int32(i)}
	j := i + 1
	if j >= len(rl) || rl[j] != '/' {
		return errNotFast // absolute-form, authority-form (CONNECT), asterisk-form
	}
	k := j
	for k < len(rl) && rl[k] > ' ' && rl[k] < 0x7f {
		k++
	}
	if k >= len(rl) || rl[k] != ' ' || string(rl[k+1:]) != "HTTP/1.1" {
		return errNotFast
	}
	h.target = span{int32(j), int32(k)}
	h.first = span{0, int32(eol)}
	if err := parseFields(b, eol+2, end, h); err != nil {
		return err
	}
	hosts := 0
	for _, l := range h.lines[:h.nl] {
		switch l.kind {
		case hHost:
			hosts++
			h.host = l.value
		case hContentLength:
			if h.contentLength >= 0 {
				return errNotFast // even equal duplicates: net/http decides
			}
			n, ok := decimal(l.value.of(b))
			if !ok {
				return errNotFast
			}
			h.contentLength = n
		case hTransferEncoding, hUpgrade, hExpect:
			return errNotFast
		case hConnection:
			if err := h.connection(b, l.value.of(b), l.value.start); err != nil {
				return err
			}
		}
	}
	if hosts != 1 || h.host.end == h.host.start {
		return errNotFast
	}
	for _, c := range h.host.of(b) {
		if !isHostChar(c) {
			return errNotFast
		}
	}
	return nil
}

var crlfcrlf = []byte("\r\n\r\n")

func isHostChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':'
}

// parseFields parses the header fields of b[from:end] (end: the index of
// the final CRLFCRLF) into h, strictly.
func parseFields(b []byte, from, end int, h *head) error {
	for p := from; p < end+2; {
		e := bytes.IndexByte(b[p:], '\n') + p - 1
		if e < p || b[e] != '\r' {
			return errNotFast
		}
		if h.nl == maxFastLines {
			return errNotFast
		}
		l := &h.lines[h.nl]
		if err := field(b, p, e, l); err != nil {
			return err
		}
		h.nl++
		p = e + 2
	}
	return nil
}

// field parses the header field b[p:e] into l.
func field(b []byte, p, e int, l *line) error {
	i := p
	for i < e && isToken(b[i]) {
		i++
	}
	if i == p || i >= e || b[i] != ':' {
		return errNotFast // no name, space before the colon, obs-fold
	}
	vs, ve := i+1, e
	for vs < ve && (b[vs] == ' ' || b[vs] == '\t') {
		vs++
	}
	for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
		ve--
	}
	for _, c := range b[vs:ve] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return errNotFast
		}
	}
	*l = line{all: span{int32(p), int32(e)}, value: span{int32(vs), int32(ve)}, kind: kindOf(b[p:i]), nameLen: int32(i - p)}
	return nil
}

// connection reads a Connection value: close, keep-alive, and the names of
// further hop-by-hop fields. off is v's offset in b.
func (h *head) connection(b, v []byte, off int32) error {
	for len(v) > 0 {
		var tok []byte
		i := bytes.IndexByte(v, ',')
		start := off
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		off += int32(len(tok)) + 1
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok = tok[1:]
			start++
		}
		for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
			tok = tok[:len(tok)-1]
		}
		switch {
		case len(tok) == 0:
		case eqFold(tok, "close"):
			h.close = true
		case eqFold(tok, "keep-alive"):
			h.keep = true
		default:
			if h.nconn == maxConnNames {
				return errNotFast
			}
			h.conn[h.nconn] = span{start, start + int32(len(tok))}
			h.nconn++
		}
	}
	return nil
}

// named says whether the field l is named in Connection, which makes it
// hop-by-hop.
func (h *head) named(b []byte, l *line) bool {
	name := b[l.all.start : l.all.start+l.nameLen]
	for _, c := range h.conn[:h.nconn] {
		if bytes.EqualFold(name, c.of(b)) {
			return true
		}
	}
	return false
}

// Response heads come from apps, as hostile as clients, but a response
// cannot be handed elsewhere: what this parser refuses is a 502. It takes
// what net/http's client takes from a sane server (bare LF line ends
// included), and refuses what could desynchronize the connection: both
// Content-Length and Transfer-Encoding, conflicting lengths, an encoding
// other than chunked.
var errBadResponse = errors.New("the app sent a malformed response head")

// parseResponse parses a response head at the start of b, as parseRequest.
func parseResponse(b []byte, h *head) error {
	*h = head{contentLength: -1}
	end, n := headEnd(b)
	if end < 0 {
		if len(b) >= maxFastHead {
			return errBadResponse
		}
		return errIncomplete
	}
	h.n = n
	// Status line: HTTP/1.x SP 3DIGIT [SP reason]
	p := 0
	e := lineEnd(b, 0)
	sl := b[:e]
	if len(sl) < 12 || string(sl[:7]) != "HTTP/1." || (sl[7] != '1' && sl[7] != '0') || sl[8] != ' ' {
		return errBadResponse
	}
	h.http10 = sl[7] == '0'
	code := 0
	for _, c := range sl[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || len(sl) > 12 && sl[12] != ' ' {
		return errBadResponse
	}
	for _, c := range sl[12:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return errBadResponse
		}
	}
	h.status = code
	h.first = span{0, int32(e)}
	p = nextLine(b, e)
	for p < end {
		le := lineEnd(b, p)
		if h.nl == maxFastLines {
			return errBadResponse
		}
		l := &h.lines[h.nl]
		if field(b, p, le, l) != nil {
			return errBadResponse
		}
		h.nl++
		p = nextLine(b, le)
	}
	for _, l := range h.lines[:h.nl] {
		switch l.kind {
		case hContentLength:
			n, ok := decimal(l.value.of(b))
			if !ok || h.contentLength >= 0 && n != h.contentLength {
				return errBadResponse
			}
			h.contentLength = n
		case hTransferEncoding:
			if h.chunked || !eqFold(l.value.of(b), "chunked") {
				return errBadResponse
			}
			h.chunked = true
		case hConnection:
			if h.connection(b, l.value.of(b), l.value.start) != nil {
				return errBadResponse
			}
		}
	}
	if h.chunked && h.contentLength >= 0 {
		return errBadResponse
	}
	return nil
}

// headEnd finds the empty line that ends a head whose lines end in CRLF or
// LF: the index where that empty line starts, and the head's length.
func headEnd(b []byte) (end, n int) {
	for p := 0; p < len(b); {
		i := bytes.IndexByte(b[p:], '\n')
		if i < 0 {
			return -1, 0
		}
		i += p
		// The line b[p:i] (with its optional CR) is empty?
		if i == p || i == p+1 && b[p] == '\r' {
			if p == 0 {
				return -1, 0 // no status line: caller sees an empty first line as malformed
			}
			return p, i + 1
		}
		p = i + 1
	}
	return -1, 0
}

// lineEnd returns where the line starting at p ends, without its CR LF.
func lineEnd(b []byte, p int) int {
	i := bytes.IndexByte(b[p:], '\n') + p
	if i > p && b[i-1] == '\r' {
		return i - 1
	}
	return i
}

// nextLine returns where the line after the one ending at e starts.
func nextLine(b []byte, e int) int {
	if b[e] == '\r' {
		return e + 2
	}
	return e + 1
}

// chunks follows a chunked body as it streams through, to find its end. It
// checks the framing, not the content.
type chunks struct {
	state uint8
	left  int64 // bytes of data left in the chunk, or of the size line
	last  bool  // the zero-size chunk was seen: trailers follow
	n     int   // length of the current line, to bound it
}

const (
	chSize    = iota // in a size line (hex digits, maybe extensions)
	chExt            // in a size line's extensions
	chSizeLF         // after the size line's CR
	chData           // in the data
	chDataCR         // after the data: CR
	chDataLF         // after the data: LF
	chTrailer        // at the start of a trailer line (or the final empty one)
	chTrailerLine
	chTrailerLineLF
	chTrailerLF // after an empty line's CR
	chDone
)

var errBadChunk = errors.New("the app sent a malformed chunked body")

// feed consumes b, returning how many bytes belong to the body (all of b
// unless the end is in it) and whether the body ended.
func (c *chunks) feed(b []byte) (int, bool, error) {
	for i := 0; i < len(b); i++ {
		x := b[i]
		switch c.state {
		case chSize:
			switch {
			case x >= '0' && x <= '9', x >= 'a' && x <= 'f', x >= 'A' && x <= 'F':
				if c.n++; c.n > 15 {
					return 0, false, errBadChunk
				}
				c.left = c.left<<4 | int64(unhex(x))
			case x == ';' || x == ' ' || x == '\t':
				if c.n == 0 {
					return 0, false, errBadChunk
				}
				c.state = chExt
			case x == '\r':
				if c.n == 0 {
					return 0, false, errBadChunk
				}
				c.state = chSizeLF
			default:
				return 0, false, errBadChunk
			}
		case chExt:
			if x == '\r' {
				c.state = chSizeLF
			} else if x < ' ' && x != '\t' {
				return 0, false, errBadChunk
			} else if c.n++; c.n > 4096 {
				return 0, false, errBadChunk
			}
		case chSizeLF:
			if x != '\n' {
				return 0, false, errBadChunk
			}
			c.n = 0
			if c.left == 0 {
				c.state = chTrailer
			} else {
				c.state = chData
			}
		case chData:
			// Skip the chunk's data in one step.
			k := int64(len(b) - i)
			if k > c.left {
				k = c.left
			}
			c.left -= k
			i += int(k) - 1
			if c.left == 0 {
				c.state = chDataCR
			}
		case chDataCR:
			if x != '\r' {
				return 0, false, errBadChunk
			}
			c.state = chDataLF
		case chDataLF:
			if x != '\n' {
				return 0, false, errBadChunk
			}
			c.state, c.n = chSize, 0
		case chTrailer:
			if x == '\r' {
				c.state = chTrailerLF
			} else {
				c.state, c.n = chTrailerLine, 1
			}
		case chTrailerLine:
			if x == '\r' {
				c.state = chTrailerLineLF
			} else if x == '\n' {
				return 0, false, errBadChunk
			} else if c.n++; c.n > 8192 {
				return 0, false, errBadChunk
			}
		case chTrailerLineLF:
			if x != '\n' {
				return 0, false, errBadChunk
			}
			c.state = chTrailer
		case chTrailerLF:
			if x != '\n' {
				return 0, false, errBadChunk
			}
			c.state = chDone
			return i + 1, true, nil
		}
	}
	return len(b), false, nil
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
