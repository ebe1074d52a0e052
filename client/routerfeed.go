package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pierpaas/pier"
)

// RouterFeed follows the controller's router feed (GET
// /internal/v1/router/watch on its internal listener) with a router
// service token, for a router running alone (`pierd router`): every
// snapshot of the routing state is handed to the caller as it comes. A
// lost connection is made again with backoff; the caller keeps serving
// what it last got meanwhile.
type RouterFeed struct {
	// URL is the controller's internal listener, such as
	// http://127.0.0.1:9091.
	URL string
	// Token returns the service token; it is called at every connection,
	// so that a rotated token file is picked up.
	Token func() (string, error)
	// HTTP is the client; nil: one with NewTransport and no overall
	// timeout (the stream lasts).
	HTTP   *http.Client
	Logger *slog.Logger
	// HeartbeatTimeout is how long without a frame means the connection
	// is dead; 0: 15 s (three of the controller's heartbeats).
	HeartbeatTimeout time.Duration
	// MaxBackoff bounds the wait between attempts; 0: 5 s.
	MaxBackoff time.Duration
	// OnState, if set, is told when the feed connects (err nil, after the
	// first snapshot) and when it is lost or refused (err says why).
	OnState func(connected bool, err error)
}

// Run follows the feed until ctx ends, calling apply with each snapshot,
// never concurrently. It returns ctx's error, or at once an error if URL
// is not an http(s) URL.
func (f *RouterFeed) Run(ctx context.Context, apply func(*pier.RouterState)) error {
	u, err := url.Parse(strings.TrimRight(f.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("controller internal URL %q is invalid: use http://host:port, such as http://127.0.0.1:9091", f.URL)
	}
	endpoint := u.String() + "/internal/v1/router/watch"
	hc := f.HTTP
	if hc == nil {
		hc = &http.Client{Transport: NewTransport()}
	}
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	hbTimeout := f.HeartbeatTimeout
	if hbTimeout <= 0 {
		hbTimeout = 15 * time.Second
	}
	maxBackoff := f.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	connected := false
	var lastErr string
	for ctx.Err() == nil {
		got, err := f.follow(ctx, hc, endpoint, hbTimeout, func(st *pier.RouterState) {
			if !connected {
				connected = true
				lastErr = ""
				log.Info("following the controller's router feed", "controller", u.Host)
				if f.OnState != nil {
					f.OnState(true, nil)
				}
			}
			apply(st)
		})
		if ctx.Err() != nil {
			break
		}
		if got {
			backoff = minBackoff
		}
		if connected {
			connected = false
			log.Warn("lost the controller's router feed: serving the last routing state until it is back", "controller", u.Host, "err", err)
			if f.OnState != nil {
				f.OnState(false, err)
			}
		} else if msg := err.Error(); msg != lastErr {
			// Said once, not at every attempt.
			lastErr = msg
			log.Error("cannot follow the controller's router feed; retrying", "controller", u.Host, "err", err)
			if f.OnState != nil {
				f.OnState(false, err)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return ctx.Err()
}

// follow makes one connection and reads it until it fails; got says
// whether any snapshot came.
func (f *RouterFeed) follow(ctx context.Context, hc *http.Client, endpoint string, hbTimeout time.Duration, apply func(*pier.RouterState)) (got bool, err error) {
	token, err := f.Token()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("User-Agent", "pier-router/"+Version)
	// No frame for hbTimeout: the connection is dead, whatever TCP thinks.
	errSilent := fmt.Errorf("no heartbeat from the controller for %s", hbTimeout)
	watchdog := time.AfterFunc(hbTimeout, func() { cancel(errSilent) })
	defer watchdog.Stop()
	resp, err := hc.Do(req)
	if err != nil {
		if c := context.Cause(ctx); c == errSilent {
			return false, c
		}
		return false, err // a *url.Error: method and URL, never the token
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := decodeError(resp, endpoint)
		var pe *pier.Error
		if errors.As(err, &pe) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return false, fmt.Errorf("the controller refused the service token (%s): %s", resp.Status, pe.Message)
		}
		return false, err
	}
	err = DecodeRouterFrames(resp.Body, func(fr pier.RouterFrame) error {
		watchdog.Reset(hbTimeout)
		if fr.Type == pier.RouterFrameSnapshot {
			got = true
			apply(fr.State)
		}
		return nil
	})
	if c := context.Cause(ctx); c == errSilent {
		return got, c
	}
	if err == nil {
		err = errors.New("the controller ended the stream")
	}
	return got, err
}

// DecodeRouterFrames reads newline-delimited pier.RouterFrame values from r
// and calls fn with each, until r ends (nil), fn fails or a frame is
// malformed. Frames of unknown types are skipped, so that a newer
// controller may add some; a snapshot without a state is malformed.
func DecodeRouterFrames(r io.Reader, fn func(pier.RouterFrame) error) error {
	dec := json.NewDecoder(r)
	for {
		var fr pier.RouterFrame
		if err := dec.Decode(&fr); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading the router feed: %w", err)
		}
		switch fr.Type {
		case pier.RouterFrameSnapshot:
			if fr.State == nil {
				return fmt.Errorf("reading the router feed: snapshot %d has no state", fr.Seq)
			}
		case pier.RouterFrameHeartbeat:
		default:
			continue
		}
		if err := fn(fr); err != nil {
			return err
		}
	}
}
