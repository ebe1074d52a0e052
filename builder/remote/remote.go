// Package remote is a builder's controller when the builder runs alone
// (`pierd builder`): it asks the controller's internal listener who a key
// belongs to and what its user may do (builder.Authorizer), and hands each
// pushed commit's tree to the controller to build and release
// (builder.Deployer), streaming the build's output back to the pusher.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder"
	"github.com/pierpaas/pier/builder/tarball"
	"github.com/pierpaas/pier/controller"
)

// Controller talks to the controller's internal listener with a builder
// service token.
type Controller struct {
	base  string
	token func() (string, error)
	http  *http.Client
}

// New returns the Controller at base (the internal listener's URL, such as
// http://pier-internal.pier.svc:9091). token is called for every request,
// so a rotated token file is picked up.
func New(base string, token func() (string, error)) (*Controller, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the controller's internal URL %q must be an http or https URL, such as http://127.0.0.1:9091", base)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	// The controller answers a deploy once it has unpacked the source.
	t.ResponseHeaderTimeout = 5 * time.Minute
	return &Controller{base: strings.TrimSuffix(base, "/"), token: token, http: &http.Client{Transport: t}}, nil
}

// Ping checks that the controller answers and takes the token.
func (c *Controller) Ping(ctx context.Context) error {
	// An unknown key is the controller's 404; anything else is a refusal
	// of the token, or no controller.
	_, err := c.UserForKey(ctx, "SHA256:ping")
	if err == nil || pier.ErrorCode(err) == pier.ENOTFOUND {
		return nil
	}
	return err
}

// UserForKey implements builder.Authorizer.
func (c *Controller) UserForKey(ctx context.Context, fingerprint string) (*pier.User, error) {
	var u pier.User
	if err := c.get(ctx, controller.BuilderUserPath, url.Values{"fingerprint": {fingerprint}}, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// AppAccess implements builder.Authorizer.
func (c *Controller) AppAccess(ctx context.Context, app, username string) (*pier.App, string, error) {
	var a controller.BuilderAccess
	if err := c.get(ctx, controller.BuilderAccessPath, url.Values{"app": {app}, "user": {username}}, &a); err != nil {
		return nil, "", err
	}
	return &a.App, a.Role, nil
}

func (c *Controller) get(ctx context.Context, path string, q url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("the controller's answer to %s: %w", path, err)
	}
	return nil
}

// do sends a request and returns a 200 answer; any other is its error.
func (c *Controller) do(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path+"?"+q.Encode(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/gzip")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, pier.Errorf(pier.EUNAVAILABLE, "the controller cannot be reached (%v): try again in a moment", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error *pier.Error `json:"error"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e) == nil && e.Error != nil && e.Error.Code != "" {
		return nil, e.Error
	}
	return nil, pier.Errorf(pier.EUNAVAILABLE, "the controller answered %s %s with %s: try again in a moment", method, path, resp.Status)
}

// Deploy implements builder.Deployer: it checks the commit's tree out,
// sends it to the controller as a tarball, and copies the build's output
// to the pusher until the controller says how it ended.
func (c *Controller) Deploy(ctx context.Context, req builder.DeployRequest) error {
	src, remove, err := req.Checkout(ctx)
	if err != nil {
		return err
	}
	defer remove()
	start := time.Now()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(pw, src)) }()
	defer pr.Close() // ends the writer if the request stops reading
	resp, err := c.do(ctx, http.MethodPost, controller.BuilderDeployPath, url.Values{"app": {req.App}, "user": {req.User}, "commit": {req.Commit}}, pr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var f controller.BuilderFrame
		if err := dec.Decode(&f); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return pier.Errorf(pier.EUNAVAILABLE, "the controller stopped answering before the deploy ended (%v): `pier releases -a %s` shows whether it was released", err, req.App)
		}
		switch {
		case f.Log != "":
			io.WriteString(req.Log, f.Log)
		case f.Error != nil:
			return f.Error
		case f.Release != nil:
			fmt.Fprintf(req.Log, "-----> Released v%d in %.1fs: %s\n", f.Release.Version, time.Since(start).Seconds(), f.URL)
			return nil
		}
	}
}
