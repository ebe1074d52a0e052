// Package client is a typed Go client of Pier's REST API (controller/API.md).
// The CLI uses it, and so do tests and components that run as separate
// processes. Every method takes a context; every request also gets the
// client's own timeout, so a hung server cannot hang the caller forever.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pierpaas/pier"
)

// Version is the version reported in the default User-Agent. Release builds
// set it with -ldflags "-X github.com/pierpaas/pier/client.Version=...".
var Version = "dev"

// DefaultTimeout bounds each request unless WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// Bounds on what we read back: a list page of 500 releases is far below the
// success bound; an error body is a short JSON object.
const (
	maxResponseBytes = 64 << 20
	maxErrorBytes    = 1 << 20
)

// Client talks to one Pier API with one token (which may be empty, for the
// public endpoints). It is safe for concurrent use.
type Client struct {
	base      *url.URL
	baseErr   error
	token     string
	http      *http.Client
	userAgent string
	timeout   time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client (and so the localhost-aware
// transport); tests use it to talk to in-process servers.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithTimeout sets the per-request timeout; 0 or less means none beyond the
// caller's context.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithUserAgent sets the User-Agent header, e.g. "pier-builder/1.0".
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the API at baseURL (e.g. "http://pier.localhost:8080"),
// sending token as a Bearer credential when it is not empty. A malformed
// baseURL is reported by the first request, so that New never fails.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{
		token:     token,
		http:      &http.Client{Transport: NewTransport()},
		userAgent: "pier-cli/" + Version,
		timeout:   DefaultTimeout,
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	switch {
	case err != nil:
		c.baseErr = fmt.Errorf("API URL %q is invalid: %v", baseURL, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		c.baseErr = fmt.Errorf("API URL %q is invalid: use http://host[:port] or https://host[:port]", baseURL)
	default:
		c.base = u
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// URL returns the API's base URL as given to New.
func (c *Client) URL() string {
	if c.base == nil {
		return ""
	}
	return c.base.String()
}

// NewTransport returns an HTTP transport that dials "localhost" and every
// "*.localhost" name on 127.0.0.1 (RFC 6761 makes them loopback). Browsers
// and curl do this themselves, but Go's resolver answers "no such host" for
// "myapp.pier.localhost", which is the embedded default's platform domain.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = DialContext(d)
	proxy := t.Proxy
	t.Proxy = func(r *http.Request) (*url.URL, error) {
		// A proxy could not reach our loopback anyway; and Go only exempts
		// the bare name "localhost" from HTTP_PROXY, not its subdomains.
		if IsLocalhost(r.URL.Hostname()) {
			return nil, nil
		}
		return proxy(r)
	}
	return t
}

// DialContext wraps d so that loopback names are dialled on 127.0.0.1,
// keeping the port. Other addresses are dialled as given.
func DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && IsLocalhost(host) {
			addr = net.JoinHostPort("127.0.0.1", port)
			if network == "tcp6" {
				network = "tcp4"
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

// IsLocalhost reports whether host is "localhost" or a name under it.
func IsLocalhost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// StatusError is an error answer that is not the API's JSON error shape,
// such as an HTML page from a proxy or a load balancer in front of Pier.
type StatusError struct {
	StatusCode int
	Status     string // e.g. "502 Bad Gateway"
	URL        string
	Snippet    string // the start of the body, for the curious
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s answered %s without a Pier error body", e.URL, e.Status)
	if e.StatusCode == http.StatusNotFound {
		msg += " (is this the URL of a Pier API?)"
	}
	return msg
}

// Do sends one request: in (if not nil) as a JSON body, and the answer
// decoded into out (if not nil; a *json.RawMessage keeps it verbatim).
// path is relative to the base URL and must already be escaped. Error
// answers become *pier.Error (API errors) or *StatusError (anything else).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, done, err := c.roundTrip(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer done()
	defer resp.Body.Close()

	if resp.StatusCode >= 400 {
		return decodeError(resp, c.URL())
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBytes)) // reuse the connection
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", c.URL(), err)
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("the answer of %s is over %d bytes", c.URL(), maxResponseBytes)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s answered %s with a body that is not the expected JSON (is this the URL of a Pier API?): %v", c.URL(), resp.Status, err)
	}
	return nil
}

// roundTrip sends a JSON request and returns the answer, whatever its
// status; done ends the client's timeout once the body has been read.
func (c *Client) roundTrip(ctx context.Context, method, path string, query url.Values, in any) (_ *http.Response, done func(), _ error) {
	if c.baseErr != nil {
		return nil, nil, c.baseErr
	}
	parent := ctx
	cancel := func() {}
	if c.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	req, err := c.newRequest(ctx, method, path, query, in, "application/json")
	if err != nil {
		cancel()
		return nil, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		defer cancel()
		// Our own timeout fired (not the caller's deadline or cancellation).
		if c.timeout > 0 && ctx.Err() != nil && parent.Err() == nil {
			return nil, nil, &TimeoutError{URL: c.URL(), Timeout: c.timeout, err: err}
		}
		return nil, nil, err // a *url.Error naming method and URL (never the token)
	}
	return resp, cancel, nil
}

// newRequest makes a request of path (relative to the base URL, already
// escaped) with in, if not nil, as its JSON body.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, in any, accept string) (*http.Request, error) {
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = query.Encode()

	var body io.Reader
	if in != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(in); err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
		body = &buf
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", c.userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// maxStreamLine bounds one line of a stream: a log line is at most 16 KiB
// and a run frame holds at most 32 KiB of output, escaped.
const maxStreamLine = 4 << 20

// Stream sends one request whose answer is a stream of JSON values, one
// per line (application/x-ndjson), and calls fn with each line, in order,
// as it arrives. The client's timeout bounds the wait for the answer to
// begin, not the stream, which lasts until the server ends it, fn fails or
// ctx ends. An error answer is returned as Do returns it.
func (c *Client) Stream(ctx context.Context, method, path string, query url.Values, in any, fn func(line []byte) error) error {
	if c.baseErr != nil {
		return c.baseErr
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(c.timeout, cancel)
	}
	req, err := c.newRequest(ctx, method, path, query, in, "application/x-ndjson")
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	timedOut := timer != nil && !timer.Stop()
	if timedOut && parent.Err() == nil {
		if resp != nil {
			resp.Body.Close()
		}
		return &TimeoutError{URL: c.URL(), Timeout: c.timeout, err: context.DeadlineExceeded}
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return decodeError(resp, c.URL())
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-ndjson") {
		return fmt.Errorf("%s answered %s with %q, not a stream of JSON lines (is this the URL of a Pier API?)", c.URL(), resp.Status, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxStreamLine)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if perr := parent.Err(); perr != nil {
			return perr
		}
		return fmt.Errorf("reading the stream of %s: %w", c.URL(), err)
	}
	return nil
}

// TimeoutError says that the server did not answer within the client's
// timeout. It unwraps to context.DeadlineExceeded.
type TimeoutError struct {
	URL     string
	Timeout time.Duration
	err     error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s did not answer within %s", e.URL, e.Timeout)
}
func (e *TimeoutError) Unwrap() error { return e.err }

// decodeError turns an error answer into *pier.Error when it has the API's
// shape, so that callers can switch on pier.ErrorCode.
func decodeError(resp *http.Response, base string) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error != nil && body.Error.Code != "" {
		msg := body.Error.Message
		if msg == "" {
			msg = fmt.Sprintf("%s (HTTP %s)", body.Error.Code, resp.Status)
		}
		return &pier.Error{Code: body.Error.Code, Message: msg}
	}
	snippet := strings.TrimSpace(string(data))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	return &StatusError{StatusCode: resp.StatusCode, Status: resp.Status, URL: base, Snippet: snippet}
}

// seg escapes one path segment: names of keys (fingerprints hold '/' and
// '+'), hostnames and usernames are user input.
func seg(s string) string { return "/" + url.PathEscape(s) }

func pageQuery(p pier.Page) url.Values {
	q := url.Values{}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.After != "" {
		q.Set("after", p.After)
	}
	return q
}

func get[T any](ctx context.Context, c *Client, path string, q url.Values) (*T, error) {
	var out T
	if err := c.Do(ctx, http.MethodGet, path, q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func send[T any](ctx context.Context, c *Client, method, path string, in any) (*T, error) {
	var out T
	if err := c.Do(ctx, method, path, nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
