package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/pierpaas/pier/client"
)

// savedConfig is ~/.config/pier/config.json: where we last logged in and
// the session token. It holds a secret, so it is written 0600 in a 0700
// directory.
type savedConfig struct {
	URL      string `json:"url,omitempty"`
	Token    string `json:"token,omitempty"`
	Username string `json:"username,omitempty"`
}

// configPath follows the XDG base directory spec, whose default is
// ~/.config.
func (c *cli) configPath() (string, error) {
	if x := c.getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "pier", "config.json"), nil
	}
	home := c.getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("cannot find your home directory to keep pier's config in: set HOME or XDG_CONFIG_HOME")
		}
	}
	return filepath.Join(home, ".config", "pier", "config.json"), nil
}

func (c *cli) loadConfig() (savedConfig, error) {
	var sc savedConfig
	path, err := c.configPath()
	if err != nil {
		return sc, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return sc, nil
	}
	if err != nil {
		return sc, err
	}
	if err := json.Unmarshal(data, &sc); err != nil {
		return sc, fmt.Errorf("%s is not valid JSON (%v): fix or delete it, then run `pier login URL`", path, err)
	}
	return sc, nil
}

// saveConfig replaces the file atomically (write a temporary file, then
// rename), so that a crash never leaves half a token behind, and the new
// file is 0600 from its first byte.
func (c *cli) saveConfig(sc savedConfig) error {
	path, err := c.configPath()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// MkdirAll leaves an existing directory's mode alone; ours holds a
	// token, so make sure no one else can list or read it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// session is who we are and where: the config file, overridden by PIER_URL
// and PIER_TOKEN (for CI, with an API token).
type session struct {
	url, token, username string
	tokenFromEnv         bool
}

func (c *cli) session() (session, error) {
	sc, err := c.loadConfig()
	if err != nil {
		return session{}, err
	}
	s := session{url: sc.URL, token: sc.Token, username: sc.Username}
	if raw := c.getenv("PIER_URL"); raw != "" {
		u, err := normalizeURL(raw)
		if err != nil {
			return session{}, fmt.Errorf("PIER_URL: %w", err)
		}
		if u != s.url {
			// Never send the token of one server to another.
			s.token, s.username = "", ""
		}
		s.url = u
	}
	if t := c.getenv("PIER_TOKEN"); t != "" {
		s.token, s.username, s.tokenFromEnv = t, "", true
	}
	c.url = s.url
	return s, nil
}

func (c *cli) notLoggedIn() error {
	return fmt.Errorf("not logged in: run `pier login %s`", c.urlOr("URL"))
}

// api returns a client of the known API, with the token if there is one.
func (c *cli) api(opts ...client.Option) (*client.Client, session, error) {
	s, err := c.session()
	if err != nil {
		return nil, s, err
	}
	if s.url == "" {
		return nil, s, c.notLoggedIn()
	}
	switch {
	case s.tokenFromEnv:
		c.authHint = "the token in PIER_TOKEN was refused: it may be revoked or expired (`pier tokens` lists yours)"
	case s.token != "":
		c.authHint = fmt.Sprintf("your session may have expired: run `pier login %s`", s.url)
	}
	return client.New(s.url, s.token, opts...), s, nil
}

// authed is api for commands that need a user: it fails early, without a
// request, when there is no token.
func (c *cli) authed(opts ...client.Option) (*client.Client, error) {
	api, s, err := c.api(opts...)
	if err != nil {
		return nil, err
	}
	if s.token == "" {
		return nil, c.notLoggedIn()
	}
	return api, nil
}

// appAPI resolves the app a command is about (from -a or the git remote)
// and a client with the user's credentials: what every app command needs.
func (c *cli) appAPI(ctx context.Context, flag string, opts ...client.Option) (string, *client.Client, error) {
	app, err := c.appName(ctx, flag)
	if err != nil {
		return "", nil, err
	}
	api, err := c.authed(opts...)
	if err != nil {
		return "", nil, err
	}
	return app, api, nil
}

// normalizeURL accepts what people type ("pier.localhost:8080",
// "https://pier.example.com/") and returns "scheme://host[:port][/path]".
// Without a scheme, loopback names get http (the embedded default has no
// TLS) and others https.
func normalizeURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("the URL is empty: give one such as http://pier.localhost:8080")
	}
	if !strings.Contains(s, "://") {
		host := s
		if i := strings.IndexByte(host, '/'); i >= 0 {
			host = host[:i]
		}
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		scheme := "https://"
		if ip := net.ParseIP(host); client.IsLocalhost(host) || ip != nil && ip.IsLoopback() {
			scheme = "http://"
		}
		s = scheme + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q is not a URL such as http://pier.localhost:8080", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// User info could be a password on argv and in the config file.
		return "", fmt.Errorf("the URL must not hold a user, query or fragment: give one such as https://pier.example.com")
	}
	u.Host = strings.ToLower(u.Host)
	return strings.TrimRight(u.String(), "/"), nil
}
