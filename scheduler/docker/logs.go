package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pierpaas/pier"
)

// lineMax bounds one log line: a process that never writes a newline must
// not make us buffer without limit.
const lineMax = 16 << 10

// Logs reads what the app's containers wrote, from the daemon's log of each
// (so it outlives pierd): the last opts.Lines lines of all of them merged
// by time, then, with opts.Follow, new lines as they come until ctx ends,
// from containers started later too (new releases, scaling, restarts).
func (s *Scheduler) Logs(ctx context.Context, app string, opts pier.LogOptions, fn func(pier.LogLine) error) error {
	if err := pier.ValidateAppName(app); err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	n := opts.Lines
	if n == 0 {
		n = pier.LogLinesDefault
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var started <-chan events.Message
	var evErrs <-chan error
	if opts.Follow {
		// Before the list: a container started in between is not missed.
		started, evErrs = s.cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", LabelManagedBy+"="+managedBy),
			filters.Arg("label", LabelInstance+"="+s.cfg.Instance),
			filters.Arg("label", LabelApp+"="+app),
			filters.Arg("event", string(events.ActionStart)),
		)})
	}
	cutoff := time.Now()
	list, err := s.listManaged(ctx, app)
	if err != nil {
		return err
	}
	type source struct {
		id, proc string
		last     time.Time // of the last line read; the next read starts after it
		reading  bool
	}
	sources := map[string]*source{}
	for _, sum := range list {
		c, ok := ctrFromLabels(sum.ID, summaryName(sum), sum.Labels)
		if !ok || sum.Labels[LabelOneOff] != "" || (opts.Type != "" && c.typ != opts.Type) {
			continue
		}
		sources[sum.ID] = &source{id: sum.ID, proc: c.procName(), last: cutoff}
	}

	// The tail: the last n lines of each container before cutoff, merged.
	var tail []pier.LogLine
	for _, src := range sources {
		lines, err := s.readLogs(ctx, app, src.id, src.proc, container.LogsOptions{Tail: fmt.Sprint(n), Until: stamp(cutoff)})
		if err != nil {
			return err
		}
		tail = append(tail, lines...)
	}
	sort.SliceStable(tail, func(i, j int) bool { return tail[i].Time.Before(tail[j].Time) })
	if len(tail) > n {
		tail = tail[len(tail)-n:]
	}
	for _, l := range tail {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}

	// Following: one stream per container; a stream ends when its
	// container stops, and starts again when Docker restarts it.
	type ended struct {
		id   string
		last time.Time
	}
	lines := make(chan pier.LogLine, 256)
	done := make(chan ended, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	open := func(src *source) {
		src.reading = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := s.streamLogs(ctx, app, src.id, src.proc, src.last.Add(time.Nanosecond), lines)
			select {
			case done <- ended{src.id, last}:
			case <-ctx.Done():
			}
		}()
	}
	for _, src := range sources {
		open(src)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-lines:
			if err := fn(l); err != nil {
				return err
			}
		case e := <-done:
			if src := sources[e.id]; src != nil {
				src.reading = false
				if e.last.After(src.last) {
					src.last = e.last
				}
			}
		case m := <-started:
			src := sources[m.Actor.ID]
			if src == nil {
				c, ok := ctrFromLabels(m.Actor.ID, "", m.Actor.Attributes)
				if !ok || m.Actor.Attributes[LabelOneOff] != "" || (opts.Type != "" && c.typ != opts.Type) {
					continue
				}
				src = &source{id: m.Actor.ID, proc: c.procName(), last: cutoff}
				sources[src.id] = src
			}
			if !src.reading {
				open(src)
			}
		case err := <-evErrs:
			if ctx.Err() != nil {
				return nil
			}
			return daemonError(err, "following the containers of %s", app)
		}
	}
}

// stamp is t as the Engine API takes it in since and until.
func stamp(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

// readLogs reads a container's log as lines (not following).
func (s *Scheduler) readLogs(ctx context.Context, app, id, proc string, opts container.LogsOptions) ([]pier.LogLine, error) {
	opts.ShowStdout, opts.ShowStderr, opts.Timestamps = true, true, true
	rc, err := s.cli.ContainerLogs(ctx, id, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, nil // removed meanwhile, or a log driver that cannot be read
	}
	defer rc.Close()
	var out []pier.LogLine
	w := newLineWriter(app, proc, func(l pier.LogLine) { out = append(out, l) })
	e := newLineWriter(app, proc, func(l pier.LogLine) { out = append(out, l) })
	stdcopy.StdCopy(w, e, rc)
	w.flush()
	e.flush()
	return out, nil
}

// streamLogs follows a container's log from since into lines until the
// container stops or ctx ends, and returns the time of the last line.
func (s *Scheduler) streamLogs(ctx context.Context, app, id, proc string, since time.Time, lines chan<- pier.LogLine) time.Time {
	last := since
	rc, err := s.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: true, Since: stamp(since)})
	if err != nil {
		return last
	}
	defer rc.Close()
	var mu sync.Mutex // stdcopy writes from one goroutine; guards last anyway
	send := func(l pier.LogLine) {
		mu.Lock()
		if l.Time.After(last) {
			last = l.Time
		}
		mu.Unlock()
		select {
		case lines <- l:
		case <-ctx.Done():
		}
	}
	w, e := newLineWriter(app, proc, send), newLineWriter(app, proc, send)
	stdcopy.StdCopy(w, e, rc)
	w.flush()
	e.flush()
	mu.Lock()
	defer mu.Unlock()
	return last
}

// lineWriter splits a stream of "<RFC3339Nano> <text>\n" lines, as the
// daemon writes them with timestamps, into log lines.
type lineWriter struct {
	app, proc string
	emit      func(pier.LogLine)
	buf       bytes.Buffer
}

func newLineWriter(app, proc string, emit func(pier.LogLine)) *lineWriter {
	return &lineWriter{app: app, proc: proc, emit: emit}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := lineMax - w.buf.Len()
			if len(p) > room {
				p = p[:max(room, 0)]
			}
			w.buf.Write(p)
			break
		}
		if room := lineMax - w.buf.Len(); i > room {
			w.buf.Write(p[:max(room, 0)])
		} else {
			w.buf.Write(p[:i])
		}
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	if w.buf.Len() == 0 {
		return
	}
	s := strings.TrimSuffix(w.buf.String(), "\r")
	w.buf.Reset()
	ts, text, _ := strings.Cut(s, " ")
	t, err := parseTime(ts)
	if err != nil {
		t, text = time.Now().UTC(), s
	}
	w.emit(pier.LogLine{Time: t, App: w.app, Process: w.proc, Text: text})
}

// parseTime reads the daemon's timestamps; the zero time ("0001-...") is
// returned as a zero time.Time.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	if t.Year() <= 1 {
		return time.Time{}, nil
	}
	return t.UTC(), nil
}

var _ io.Writer = (*lineWriter)(nil)
