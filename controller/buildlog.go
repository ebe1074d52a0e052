package controller

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// buildLog keeps what a build writes, in at most max bytes: its start and
// its end, and between them a line saying how much was cut. A build that
// prints without end costs max bytes of memory, never more. It is safe for
// concurrent writes (a build's stdout and stderr).
type buildLog struct {
	mu      sync.Mutex
	headMax int
	head    []byte
	ring    []byte // the last bytes, circular once full
	ringLen int
	pos     int   // where the next byte goes in ring
	cut     int64 // bytes overwritten or skipped between head and ring
}

// markerRoom is kept free for the "[... N bytes cut ...]" line.
const markerRoom = 64

// lineSnap is how far the cut moves to fall between two lines.
const lineSnap = 4 << 10

func newBuildLog(max int) *buildLog {
	half := (max - markerRoom) / 2
	return &buildLog{headMax: half, ring: make([]byte, 0, half)}
}

func (l *buildLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if room := l.headMax - len(l.head); room > 0 {
		k := min(room, len(p))
		l.head = append(l.head, p[:k]...)
		p = p[k:]
	}
	size := cap(l.ring)
	if len(p) == 0 || size == 0 {
		l.cut += int64(len(p))
		return n, nil
	}
	if skip := len(p) - size; skip > 0 {
		l.cut += int64(skip)
		p = p[skip:]
	}
	if len(l.ring) < size {
		l.ring = l.ring[:size] // allocated once, filled as bytes come
	}
	for len(p) > 0 {
		k := copy(l.ring[l.pos:], p)
		if over := l.ringLen + k - size; over > 0 {
			l.cut += int64(over)
		}
		l.ringLen = min(size, l.ringLen+k)
		l.pos = (l.pos + k) % size
		p = p[k:]
	}
	return n, nil
}

// String returns the log: everything written if it fit, else its start,
// the marker line and its end, cut between lines where a line ends near
// the cut, and never inside a UTF-8 sequence.
func (l *buildLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var tail []byte
	if l.ringLen < cap(l.ring) {
		tail = l.ring[:l.ringLen]
	} else {
		tail = append(append([]byte(nil), l.ring[l.pos:]...), l.ring[:l.pos]...)
	}
	if l.cut == 0 {
		return string(l.head) + string(tail)
	}
	head := l.head
	if i := bytes.LastIndexByte(head, '\n'); i >= 0 && len(head)-i-1 <= lineSnap {
		head = head[:i+1]
	} else {
		head = trimPartialRune(head)
	}
	t := tail
	if i := bytes.IndexByte(t, '\n'); i >= 0 && i < lineSnap {
		t = t[i+1:]
	} else {
		for k := 0; k < utf8.UTFMax && len(t) > 0 && !utf8.RuneStart(t[0]); k++ {
			t = t[1:]
		}
	}
	cut := l.cut + int64(len(l.head)-len(head)) + int64(len(tail)-len(t))
	var b bytes.Buffer
	b.Grow(len(head) + len(t) + markerRoom)
	b.Write(head)
	if len(head) > 0 && head[len(head)-1] != '\n' {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "[... %d bytes cut ...]\n", cut)
	b.Write(t)
	return b.String()
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of b.
func trimPartialRune(b []byte) []byte {
	for k := 1; k <= utf8.UTFMax && k <= len(b); k++ {
		c := b[len(b)-k]
		if !utf8.RuneStart(c) {
			continue
		}
		if !utf8.FullRune(b[len(b)-k:]) {
			return b[:len(b)-k]
		}
		break
	}
	return b
}

// teeLog writes to the build log, which never fails, then to the pusher's
// terminal, whose error (the pusher went away) is the build's to see.
type teeLog struct {
	log *buildLog
	out io.Writer
}

func (t teeLog) Write(p []byte) (int, error) {
	t.log.Write(p)
	return t.out.Write(p)
}
