package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/pierpaas/pier"
)

// Health checks GET /healthz, which needs no credentials.
func (c *Client) Health(ctx context.Context) error {
	var out struct {
		Status string `json:"status"`
	}
	return c.Do(ctx, http.MethodGet, "/healthz", nil, nil, &out)
}

// Readiness is the answer of GET /readyz: Status "ok", or "unavailable"
// with the failing checks (database, migrations, scheduler) saying why.
type Readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// Ready reports whether the controller is ready to serve
// (GET /readyz, which needs no credentials). A 503 is an answer, not an
// error: ok is false and the Readiness names the failing checks.
func (c *Client) Ready(ctx context.Context) (r *Readiness, ok bool, err error) {
	resp, done, err := c.roundTrip(ctx, http.MethodGet, "/readyz", nil, nil)
	if err != nil {
		return nil, false, err
	}
	defer done()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, false, decodeError(resp, c.URL())
	}
	r = &Readiness{}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	if err == nil {
		err = json.Unmarshal(data, r)
	}
	if err != nil || r.Status == "" {
		return nil, false, fmt.Errorf("%s answered /readyz with %s and a body that is not Pier's readiness (is this the URL of a Pier API?)", c.URL(), resp.Status)
	}
	return r, resp.StatusCode == http.StatusOK, nil
}

// RegisterRequest creates a user. The first user needs BootstrapToken;
// later ones need an admin's token (the client's) unless registration is open.
type RegisterRequest struct {
	Username       string `json:"username"`
	Password       string `json:"password"`
	Email          string `json:"email,omitempty"`
	BootstrapToken string `json:"bootstrap_token,omitempty"`
}

// Register creates a user. It does not log in.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (*pier.User, error) {
	return send[pier.User](ctx, c, http.MethodPost, "/v1/auth/register", req)
}

// Login exchanges a username and password for a session.
func (c *Client) Login(ctx context.Context, username, password string) (*pier.Session, error) {
	req := struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}{username, password}
	return send[pier.Session](ctx, c, http.MethodPost, "/v1/auth/login", req)
}

// Logout revokes the session token the client holds.
func (c *Client) Logout(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, "/v1/auth/logout", nil, nil, nil)
}

// Whoami returns the user the token belongs to.
func (c *Client) Whoami(ctx context.Context) (*pier.User, error) {
	return get[pier.User](ctx, c, "/v1/auth/whoami", nil)
}

// ListUsers lists one page of users (admins only).
func (c *Client) ListUsers(ctx context.Context, p pier.Page) (*pier.List[pier.User], error) {
	return get[pier.List[pier.User]](ctx, c, "/v1/users", pageQuery(p))
}

// Settings returns the platform settings (admins only).
func (c *Client) Settings(ctx context.Context) (*pier.Settings, error) {
	return get[pier.Settings](ctx, c, "/v1/settings", nil)
}

// UpdateSettings changes the platform settings (admins only).
func (c *Client) UpdateSettings(ctx context.Context, s pier.Settings) (*pier.Settings, error) {
	return send[pier.Settings](ctx, c, http.MethodPatch, "/v1/settings", s)
}

// CreateToken creates a long-lived API token; its Token is shown only here.
// expiresInDays 0 means it never expires.
func (c *Client) CreateToken(ctx context.Context, description string, expiresInDays int) (*pier.NewAPIToken, error) {
	req := struct {
		Description   string `json:"description"`
		ExpiresInDays int    `json:"expires_in_days,omitempty"`
	}{description, expiresInDays}
	return send[pier.NewAPIToken](ctx, c, http.MethodPost, "/v1/tokens", req)
}

// ListTokens lists the caller's API tokens (never the tokens themselves).
func (c *Client) ListTokens(ctx context.Context) (*pier.List[pier.APIToken], error) {
	return get[pier.List[pier.APIToken]](ctx, c, "/v1/tokens", nil)
}

// RevokeToken revokes one of the caller's API tokens.
func (c *Client) RevokeToken(ctx context.Context, id int64) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tokens"+seg(strconv.FormatInt(id, 10)), nil, nil, nil)
}

// AddKey adds an SSH public key (authorized_keys format). An empty name
// lets the server choose one (the key's comment).
func (c *Client) AddKey(ctx context.Context, name, publicKey string) (*pier.Key, error) {
	req := struct {
		Name      string `json:"name,omitempty"`
		PublicKey string `json:"public_key"`
	}{name, publicKey}
	return send[pier.Key](ctx, c, http.MethodPost, "/v1/keys", req)
}

// ListKeys lists the caller's SSH keys.
func (c *Client) ListKeys(ctx context.Context) (*pier.List[pier.Key], error) {
	return get[pier.List[pier.Key]](ctx, c, "/v1/keys", nil)
}

// RemoveKey removes one of the caller's keys by name or fingerprint.
func (c *Client) RemoveKey(ctx context.Context, nameOrFingerprint string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/keys"+seg(nameOrFingerprint), nil, nil, nil)
}

// CreateApp creates an app; an empty name lets the server generate one.
func (c *Client) CreateApp(ctx context.Context, name string) (*pier.AppInfo, error) {
	req := struct {
		Name string `json:"name,omitempty"`
	}{name}
	return send[pier.AppInfo](ctx, c, http.MethodPost, "/v1/apps", req)
}

// ListApps lists one page of the apps the caller can see.
func (c *Client) ListApps(ctx context.Context, p pier.Page) (*pier.List[pier.App], error) {
	return get[pier.List[pier.App]](ctx, c, "/v1/apps", pageQuery(p))
}

// App returns an app with its release, formation, domains and members.
func (c *Client) App(ctx context.Context, app string) (*pier.AppInfo, error) {
	return get[pier.AppInfo](ctx, c, appPath(app), nil)
}

// DestroyApp destroys an app (owner or admin only).
func (c *Client) DestroyApp(ctx context.Context, app string) error {
	return c.Do(ctx, http.MethodDelete, appPath(app), nil, nil, nil)
}

// Config returns an app's config vars.
func (c *Client) Config(ctx context.Context, app string) (pier.Config, error) {
	cfg, err := get[pier.Config](ctx, c, appPath(app)+"/config", nil)
	if err != nil {
		return nil, err
	}
	return *cfg, nil
}

// ConfigGet returns one config var's value.
func (c *Client) ConfigGet(ctx context.Context, app, key string) (string, error) {
	kv, err := get[struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}](ctx, c, appPath(app)+"/config"+seg(key), nil)
	if err != nil {
		return "", err
	}
	return kv.Value, nil
}

// SetConfig sets and unsets config vars in one request, and so in one new
// release, which it returns. Unset keys are sent as JSON null. If the
// release's processes do not come up, the release is marked failed, the
// previous one restored, and the error has code pier.EROLLOUT.
func (c *Client) SetConfig(ctx context.Context, app string, set map[string]string, unset []string) (*pier.Release, error) {
	body := make(map[string]*string, len(set)+len(unset))
	for k, v := range set {
		body[k] = &v
	}
	for _, k := range unset {
		body[k] = nil
	}
	return send[pier.Release](ctx, c, http.MethodPatch, appPath(app)+"/config", body)
}

// Releases lists one page of an app's releases, newest first, without
// their config.
func (c *Client) Releases(ctx context.Context, app string, p pier.Page) (*pier.List[pier.Release], error) {
	return get[pier.List[pier.Release]](ctx, c, appPath(app)+"/releases", pageQuery(p))
}

// Release returns one release, with its config.
func (c *Client) Release(ctx context.Context, app string, version int) (*pier.Release, error) {
	return get[pier.Release](ctx, c, appPath(app)+"/releases"+seg("v"+strconv.Itoa(version)), nil)
}

// Rollback adds a release copying version's build and config; version 0
// means the release before the current one.
func (c *Client) Rollback(ctx context.Context, app string, version int) (*pier.Release, error) {
	req := struct {
		Version int `json:"version,omitempty"`
	}{version}
	return send[pier.Release](ctx, c, http.MethodPost, appPath(app)+"/releases/rollback", req)
}

// Formation returns how many processes of each type should run.
func (c *Client) Formation(ctx context.Context, app string) (pier.Formation, error) {
	f, err := get[pier.Formation](ctx, c, appPath(app)+"/formation", nil)
	if err != nil {
		return nil, err
	}
	return *f, nil
}

// Scale sets the given quantities and returns the whole formation.
func (c *Client) Scale(ctx context.Context, app string, f pier.Formation) (pier.Formation, error) {
	out, err := send[pier.Formation](ctx, c, http.MethodPatch, appPath(app)+"/formation", f)
	if err != nil {
		return nil, err
	}
	return *out, nil
}

// Limits returns the memory and CPU limits of the app's process types that
// have any.
func (c *Client) Limits(ctx context.Context, app string) (map[string]pier.Limits, error) {
	l, err := get[map[string]pier.Limits](ctx, c, appPath(app)+"/limits", nil)
	if err != nil {
		return nil, err
	}
	return *l, nil
}

// SetLimits sets and unsets limits (no new release) and returns all of
// them. A rollout failure (the processes did not come up with the new
// limits) is an error of code pier.EROLLOUT; the limits stay set.
func (c *Client) SetLimits(ctx context.Context, app string, change pier.LimitsChange) (map[string]pier.Limits, error) {
	l, err := send[map[string]pier.Limits](ctx, c, http.MethodPatch, appPath(app)+"/limits", change)
	if err != nil {
		return nil, err
	}
	return *l, nil
}

// Domains lists an app's domains.
func (c *Client) Domains(ctx context.Context, app string) (*pier.List[pier.Domain], error) {
	return get[pier.List[pier.Domain]](ctx, c, appPath(app)+"/domains", nil)
}

// AddDomain routes hostname to the app.
func (c *Client) AddDomain(ctx context.Context, app, hostname string) (*pier.Domain, error) {
	req := struct {
		Hostname string `json:"hostname"`
	}{hostname}
	return send[pier.Domain](ctx, c, http.MethodPost, appPath(app)+"/domains", req)
}

// RemoveDomain stops routing hostname to the app.
func (c *Client) RemoveDomain(ctx context.Context, app, hostname string) error {
	return c.Do(ctx, http.MethodDelete, appPath(app)+"/domains"+seg(hostname), nil, nil, nil)
}

// Perms lists an app's members.
func (c *Client) Perms(ctx context.Context, app string) (*pier.List[pier.Member], error) {
	return get[pier.List[pier.Member]](ctx, c, appPath(app)+"/perms", nil)
}

// AddPerm makes username a collaborator of the app (owner or admin only).
func (c *Client) AddPerm(ctx context.Context, app, username string) (*pier.Member, error) {
	req := struct {
		Username string `json:"username"`
	}{username}
	return send[pier.Member](ctx, c, http.MethodPost, appPath(app)+"/perms", req)
}

// RemovePerm takes username's access to the app away (owner or admin only).
func (c *Client) RemovePerm(ctx context.Context, app, username string) error {
	return c.Do(ctx, http.MethodDelete, appPath(app)+"/perms"+seg(username), nil, nil, nil)
}

// Events lists one page of an app's audit log, newest first.
func (c *Client) Events(ctx context.Context, app string, p pier.Page) (*pier.List[pier.Event], error) {
	return get[pier.List[pier.Event]](ctx, c, appPath(app)+"/events", pageQuery(p))
}

// Builds lists one page of an app's builds, newest first, without their
// logs.
func (c *Client) Builds(ctx context.Context, app string, p pier.Page) (*pier.List[pier.Build], error) {
	return get[pier.List[pier.Build]](ctx, c, appPath(app)+"/builds", pageQuery(p))
}

// Build returns one build, with its log.
func (c *Client) Build(ctx context.Context, app string, id int64) (*pier.Build, error) {
	return get[pier.Build](ctx, c, appPath(app)+"/builds"+seg(strconv.FormatInt(id, 10)), nil)
}

// CreateBuild deploys an existing image (`pier builds:create`): a build of
// strategy "image" and the release of it, returned once its processes
// serve. procfile is the text of a Procfile ("" runs the image's own
// entrypoint as web). If the processes do not come up, nothing is
// released and the error has code pier.EROLLOUT.
func (c *Client) CreateBuild(ctx context.Context, app, image, procfile string) (*pier.Release, error) {
	req := struct {
		Image    string `json:"image"`
		Procfile string `json:"procfile,omitempty"`
	}{image, procfile}
	return send[pier.Release](ctx, c, http.MethodPost, appPath(app)+"/builds", req)
}

// LatestBuild returns the app's newest build, with its log.
func (c *Client) LatestBuild(ctx context.Context, app string) (*pier.Build, error) {
	return get[pier.Build](ctx, c, appPath(app)+"/builds/latest", nil)
}

// Processes lists the app's running processes.
func (c *Client) Processes(ctx context.Context, app string) (*pier.List[pier.Process], error) {
	return get[pier.List[pier.Process]](ctx, c, appPath(app)+"/ps", nil)
}

// Restart restarts the app's processes of one type, or all of them when
// processType is "".
func (c *Client) Restart(ctx context.Context, app, processType string) error {
	req := struct {
		Type string `json:"type,omitempty"`
	}{processType}
	return c.Do(ctx, http.MethodPost, appPath(app)+"/ps/restart", nil, req, nil)
}

// Logs calls fn with the app's last log lines (opts.Lines, 0 for the
// server's default; only opts.Type if set), and with opts.Follow, then with
// new lines as they come, until ctx ends or fn returns an error.
func (c *Client) Logs(ctx context.Context, app string, opts pier.LogOptions, fn func(pier.LogLine) error) error {
	q := url.Values{}
	if opts.Lines != 0 {
		q.Set("lines", strconv.Itoa(opts.Lines))
	}
	if opts.Type != "" {
		q.Set("type", opts.Type)
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	err := c.Stream(ctx, http.MethodGet, appPath(app)+"/logs", q, nil, func(line []byte) error {
		var f struct {
			pier.LogLine
			Error *pier.Error `json:"error"`
		}
		if err := json.Unmarshal(line, &f); err != nil {
			return fmt.Errorf("a log line from %s is not the expected JSON: %v", c.URL(), err)
		}
		if f.Error != nil {
			return f.Error
		}
		return fn(f.LogLine)
	})
	if opts.Follow && ctx.Err() != nil {
		return nil // following ends when the caller stops it
	}
	return err
}

// Run runs a one-off process of the app's current release: command is its
// argv, run as given, never through a shell (pass "sh", "-c", "..." for
// one). Its output is copied to stdout and stderr (nil discards) as it
// comes, and Run returns its exit status. Stdin is not supported: the
// process reads end-of-file.
func (c *Client) Run(ctx context.Context, app string, command []string, stdout, stderr io.Writer) (int, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	req := struct {
		Command []string `json:"command"`
	}{command}
	var exit *int
	err := c.Stream(ctx, http.MethodPost, appPath(app)+"/run", nil, req, func(line []byte) error {
		var f pier.RunFrame
		if err := json.Unmarshal(line, &f); err != nil {
			return fmt.Errorf("a line of the run from %s is not the expected JSON: %v", c.URL(), err)
		}
		switch {
		case f.Error != nil:
			return f.Error
		case f.Exit != nil:
			exit = f.Exit
		case f.Stream == pier.StreamStdout:
			_, err := io.WriteString(stdout, f.Data)
			return err
		case f.Stream == pier.StreamStderr:
			_, err := io.WriteString(stderr, f.Data)
			return err
		}
		return nil
	})
	if err != nil {
		return -1, err
	}
	if exit == nil {
		return -1, fmt.Errorf("the answer of %s ended before the command's exit status: the connection was cut, and the command may still have run", c.URL())
	}
	return *exit, nil
}

func appPath(app string) string { return "/v1/apps" + seg(app) }

// Builder returns the CNB builder image the app is built with by the pack
// strategy: its own choice, and the platform's default.
func (c *Client) Builder(ctx context.Context, app string) (*pier.BuilderSetting, error) {
	return get[pier.BuilderSetting](ctx, c, appPath(app)+"/builder", nil)
}

// SetBuilder chooses the app's CNB builder image ("" for the platform's
// default); the next push is built with it.
func (c *Client) SetBuilder(ctx context.Context, app, builder string) (*pier.BuilderSetting, error) {
	return send[pier.BuilderSetting](ctx, c, http.MethodPut, appPath(app)+"/builder", pier.BuilderSetting{Builder: builder})
}

// RouterSettings returns how the router treats the app's requests:
// maintenance, allowlist, body limit, timeout.
func (c *Client) RouterSettings(ctx context.Context, app string) (*pier.RouterSettings, error) {
	return get[pier.RouterSettings](ctx, c, appPath(app)+"/router", nil)
}

// SetRouterSettings applies change (unset settings go back to the
// platform's defaults) and returns all of the app's router settings.
// Routers apply them to the next request; nothing restarts.
func (c *Client) SetRouterSettings(ctx context.Context, app string, change pier.RouterChange) (*pier.RouterSettings, error) {
	return send[pier.RouterSettings](ctx, c, http.MethodPatch, appPath(app)+"/router", change)
}
