package local

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pierpaas/pier"
)

const (
	// ringSize is how many lines of each app are kept in memory for `pier logs`.
	ringSize = 1000
	// lineMax bounds one log line: a process that never writes a newline must
	// not make us buffer without limit.
	lineMax = 16 << 10
	// subscriberBuffer is how far a follower may lag before lines are
	// dropped for it; a slow reader must never block the app's output.
	subscriberBuffer = 512
	// seedBytes is how much of an existing log file is read back to refill
	// the ring after a restart of pierd.
	seedBytes = 512 << 10
)

// appLog is one app's log: a ring of recent lines, an append-only file and
// the followers streaming new lines.
type appLog struct {
	app  string
	path string
	log  *slog.Logger

	mu      sync.Mutex
	ring    []pier.LogLine // circular once full
	next    int
	full    bool
	file    *os.File
	fileErr bool // reported once, not on every line
	subs    map[*subscriber]struct{}
}

type subscriber struct {
	ch      chan pier.LogLine
	typ     string
	dropped int
}

func newAppLog(dir, app string, log *slog.Logger) *appLog {
	l := &appLog{app: app, path: filepath.Join(dir, app+".log"), log: log, ring: make([]pier.LogLine, 0, ringSize), subs: map[*subscriber]struct{}{}}
	l.seed()
	return l
}

// seed refills the ring from the end of the log file, so that `pier logs`
// right after a restart of pierd still shows what happened before it.
func (l *appLog) seed() {
	f, err := os.Open(l.path)
	if err != nil {
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > seedBytes {
		if _, err := f.Seek(st.Size()-seedBytes, io.SeekStart); err != nil {
			return
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), lineMax*4)
	for sc.Scan() {
		if line, ok := parseLogLine(l.app, sc.Text()); ok {
			l.push(line)
		}
	}
}

// formatLogLine is the file format: "<RFC3339Nano> <process> <text>".
func formatLogLine(line pier.LogLine) string {
	return line.Time.UTC().Format(time.RFC3339Nano) + " " + line.Process + " " + line.Text + "\n"
}

func parseLogLine(app, s string) (pier.LogLine, bool) {
	ts, rest, ok := strings.Cut(s, " ")
	if !ok {
		return pier.LogLine{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return pier.LogLine{}, false
	}
	proc, text, _ := strings.Cut(rest, " ")
	return pier.LogLine{Time: t, App: app, Process: proc, Text: text}, true
}

func (l *appLog) push(line pier.LogLine) {
	if !l.full {
		l.ring = append(l.ring, line)
		if len(l.ring) == ringSize {
			l.full = true
		}
		return
	}
	l.ring[l.next] = line
	l.next = (l.next + 1) % ringSize
}

// write records one line. It never blocks on a reader.
func (l *appLog) write(process, text string) {
	line := pier.LogLine{Time: time.Now().UTC(), App: l.app, Process: process, Text: text}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.push(line)
	if l.file == nil && !l.fileErr {
		f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			l.fileErr = true
			l.log.Warn("cannot open app log file; lines are kept in memory only", "app", l.app, "err", err)
		} else {
			l.file = f
		}
	}
	if l.file != nil {
		if _, err := l.file.WriteString(formatLogLine(line)); err != nil && !l.fileErr {
			l.fileErr = true
			l.log.Warn("cannot write app log file", "app", l.app, "err", err)
		}
	}
	for s := range l.subs {
		if !matchType(line.Process, s.typ) {
			continue
		}
		select {
		case s.ch <- line:
		default:
			s.dropped++
		}
	}
}

func matchType(process, typ string) bool {
	if typ == "" {
		return true
	}
	t, _, _ := strings.Cut(process, ".")
	return t == typ
}

// tail returns the last n lines of type typ, oldest first.
func (l *appLog) tail(n int, typ string) []pier.LogLine {
	ordered := make([]pier.LogLine, 0, len(l.ring))
	if l.full {
		ordered = append(ordered, l.ring[l.next:]...)
		ordered = append(ordered, l.ring[:l.next]...)
	} else {
		ordered = append(ordered, l.ring...)
	}
	var out []pier.LogLine
	for i := len(ordered) - 1; i >= 0 && len(out) < n; i-- {
		if matchType(ordered[i].Process, typ) {
			out = append(out, ordered[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// read serves Scheduler.Logs.
func (l *appLog) read(ctx context.Context, opts pier.LogOptions, fn func(pier.LogLine) error) error {
	n := opts.Lines
	if n <= 0 {
		n = 100
	}
	l.mu.Lock()
	lines := l.tail(n, opts.Type)
	var sub *subscriber
	if opts.Follow {
		// Subscribing under the same lock as the snapshot: no line is lost or
		// shown twice between the two.
		sub = &subscriber{ch: make(chan pier.LogLine, subscriberBuffer), typ: opts.Type}
		l.subs[sub] = struct{}{}
	}
	l.mu.Unlock()
	if sub != nil {
		defer func() {
			l.mu.Lock()
			delete(l.subs, sub)
			l.mu.Unlock()
		}()
	}
	for _, line := range lines {
		if err := fn(line); err != nil {
			return err
		}
	}
	if sub == nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case line := <-sub.ch:
			l.mu.Lock()
			dropped := sub.dropped
			sub.dropped = 0
			l.mu.Unlock()
			if dropped > 0 {
				msg := pier.LogLine{Time: time.Now().UTC(), App: l.app, Process: "pier", Text: fmt.Sprintf("%d log lines dropped: this reader was too slow", dropped)}
				if err := fn(msg); err != nil {
					return err
				}
			}
			if err := fn(line); err != nil {
				return err
			}
		}
	}
}

func (l *appLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Close()
		l.file = nil
	}
}

// copyLines reads r line by line into the log as process, and keeps the
// last lines in tail too (for the error message of a crash on boot). Lines
// longer than lineMax are cut, the rest of them discarded.
func copyLines(r io.Reader, l *appLog, process string, tail *tailBuf) {
	br := bufio.NewReaderSize(r, 4096)
	var buf []byte
	skipping := false // inside the discarded rest of an over-long line
	for {
		chunk, err := br.ReadSlice('\n')
		complete := len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
		switch {
		case skipping:
			skipping = !complete
		case len(chunk) > lineMax-len(buf):
			buf = append(buf, chunk[:lineMax-len(buf)]...)
			emit(l, process, tail, buf, true)
			buf, skipping = buf[:0], !complete
		default:
			buf = append(buf, chunk...)
			if complete {
				emit(l, process, tail, buf, false)
				buf = buf[:0]
			}
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				continue
			}
			if len(buf) > 0 {
				emit(l, process, tail, buf, false)
			}
			return
		}
	}
}

func emit(l *appLog, process string, tail *tailBuf, b []byte, cut bool) {
	text := string(bytes.TrimRight(b, "\r\n"))
	if cut {
		text += " [line cut at 16 KiB]"
	}
	l.write(process, text)
	tail.add(text)
}

// tailBuf keeps the last few output lines of one process.
type tailBuf struct {
	mu    sync.Mutex
	lines []string
}

const tailLines = 10

func (t *tailBuf) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, s)
}

func (t *tailBuf) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
