package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pierpaas/pier"
)

// sseHeartbeat is how often a quiet log stream sends a comment, so that a
// browser that left is noticed and proxies do not time the stream out.
const sseHeartbeat = 15 * time.Second

// logStream follows the app's log as Server-Sent Events: the same stream
// as `pier logs -t` (GET /v1/apps/{app}/logs?follow=true), one event per
// line, data being the LogLine as JSON. ?type= keeps one process type.
func (h *Handler) logStream(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	typ := r.URL.Query().Get("type")
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// Check access (and the type) before the stream begins, so that a
	// refusal is an ordinary error status.
	if _, err := s.api.App(ctx, app); err != nil {
		http.Error(w, message(err), statusOf(err))
		return
	}
	if err := (pier.LogOptions{Type: typ}).Validate(); err != nil {
		http.Error(w, message(err), statusOf(err))
		return
	}
	rc := http.NewResponseController(w)
	// A stream lasts as long as the page is open: no server deadlines.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	write := func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		if _, err := fmt.Fprint(w, s); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write("retry: 3000\n\n"); err != nil {
		return
	}
	go func() {
		t := time.NewTicker(sseHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if write(": keep-alive\n\n") != nil {
					cancel()
					return
				}
			}
		}
	}()
	err := s.api.Logs(ctx, app, pier.LogOptions{Lines: 100, Type: typ, Follow: true}, func(l pier.LogLine) error {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		return write("data: " + string(b) + "\n\n")
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		b, _ := json.Marshal(message(err))
		_ = write("event: failure\ndata: " + string(b) + "\n\n")
	}
}
