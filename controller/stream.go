package controller

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/pierpaas/pier"
)

// written is what a handler returns when it has answered by itself, as a
// streaming handler does: endpoint then writes nothing more.
type written struct{}

// ndjson[T] is the out of a route whose answer is a stream of JSON values
// of type T, one per line (application/x-ndjson). It documents the route in
// the OpenAPI document; the handler writes the stream with an ndjsonStream
// and returns written{}.
type ndjson[T any] struct{}

func (ndjson[T]) streamItem() reflect.Type { return reflect.TypeFor[T]() }

// streamed is implemented by ndjson[T].
type streamed interface{ streamItem() reflect.Type }

// errorFrame is the last line of a stream that failed after it began.
type errorFrame struct {
	Error *pier.Error `json:"error"`
}

const (
	// streamCommitAfter is how long a stream may stay silent before its
	// status and headers are sent anyway, so that clients and proxies see
	// an answer. Until then, a failure is answered as an ordinary error
	// with its own status.
	streamCommitAfter = time.Second
	// streamWriteTimeout bounds each write of a stream: a client that
	// stops reading for this long is cut off. It stands in for the
	// server's WriteTimeout, which would end every stream at its age.
	streamWriteTimeout = time.Minute
)

// ndjsonStream writes one JSON value per line and flushes each, from any
// goroutine (a one-off process's stdout and stderr). Nothing is written
// after end.
type ndjsonStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctx     context.Context
	log     *slog.Logger
	enc     *json.Encoder
	timer   *time.Timer
	started bool  // status and headers sent
	done    bool  // end was called
	err     error // the first write error: the client is gone
}

var errStreamEnded = errors.New("the stream has ended")

// newStream prepares w for a stream. The server's read and write timeouts
// are cleared for this request: they bound ordinary requests, while a
// stream lasts as long as its client wants (a left read deadline would
// also end it, as the server takes the expiry for the client leaving).
func newStream(w http.ResponseWriter, r *http.Request, log *slog.Logger) *ndjsonStream {
	s := &ndjsonStream{w: w, rc: http.NewResponseController(w), ctx: r.Context(), log: log}
	s.enc = json.NewEncoder(w)
	for _, err := range []error{s.rc.SetReadDeadline(time.Time{}), s.rc.SetWriteDeadline(time.Time{})} {
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			log.WarnContext(r.Context(), "stream deadline", "path", r.URL.Path, "err", err)
		}
	}
	s.timer = time.AfterFunc(streamCommitAfter, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.done && s.err == nil {
			s.startLocked()
			s.flushLocked()
		}
	})
	return s
}

func (s *ndjsonStream) startLocked() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // ask proxies in front not to buffer
	s.w.WriteHeader(http.StatusOK)
}

func (s *ndjsonStream) flushLocked() {
	if s.err != nil {
		return
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
	}
}

// send writes v as one line and flushes it. It fails once the client is
// gone, which tells the producer to stop.
func (s *ndjsonStream) send(v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sendLocked(v)
}

func (s *ndjsonStream) sendLocked(v any) error {
	switch {
	case s.err != nil:
		return s.err
	case s.done:
		return errStreamEnded
	}
	s.startLocked()
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if err := s.enc.Encode(v); err != nil {
		s.err = err
		return err
	}
	s.flushLocked()
	return s.err
}

// end finishes the stream: with last as its final line if the producer
// succeeded, else with err. An error before anything was sent is returned
// for endpoint to answer with its status; one after is sent as an
// errorFrame line. The handler returns what end returns.
func (s *ndjsonStream) end(err error, last any) (any, error) {
	s.timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.done = true }()
	gone := s.err != nil || s.ctx.Err() != nil
	switch {
	case err != nil && gone:
		// The client left (or stopped reading): no one to tell.
		return written{}, nil
	case err != nil && !s.started:
		return nil, err
	case err != nil:
		if pier.ErrorCode(err) == pier.EINTERNAL {
			s.log.ErrorContext(s.ctx, "stream failed", "err", err)
		}
		_ = s.sendLocked(errorFrame{&pier.Error{Code: pier.ErrorCode(err), Message: pier.ErrorMessage(err)}})
	case last != nil:
		_ = s.sendLocked(last)
	default:
		s.startLocked()
	}
	return written{}, nil
}
