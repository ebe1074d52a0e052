package registryauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// memSettings is Store.InitSetting in memory.
type memSettings struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memSettings) InitSetting(_ context.Context, key, value string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	s.m[key] = value
	return value, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	a    *Authority
	clk  *clock
	logs *bytes.Buffer
}

func newFixture(t *testing.T, settings *memSettings) *fixture {
	t.Helper()
	clk := &clock{t: time.Now()}
	logs := &bytes.Buffer{}
	a, err := New(context.Background(), Config{
		Settings: settings, Service: "registry.example", Prefix: "pier",
		PlatformUsername: "platform", PlatformPassword: "platform-pass-canary",
		Now: clk.now, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{a: a, clk: clk, logs: logs}
}

// token calls the realm; it returns the status and, on 200, the verified claims.
func (f *fixture) token(t *testing.T, user, pass, service string, scopes ...string) (int, *Claims, http.Header) {
	t.Helper()
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	req := httptest.NewRequest("GET", TokenPath+"?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	rec := httptest.NewRecorder()
	f.a.ServeHTTP(rec, req)
	if rec.Code != 200 {
		return rec.Code, nil, rec.Header()
	}
	var body struct {
		Token     string `json:"token"`
		Access    string `json:"access_token"`
		ExpiresIn int    `json:"expires_in"`
		IssuedAt  string `json:"issued_at"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Token == "" || body.Access != body.Token || body.ExpiresIn != int(DefaultTokenTTL/time.Second) || body.IssuedAt == "" {
		t.Fatalf("realm answer: %s", rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("a token answer may be cached")
	}
	return 200, f.verify(t, body.Token), rec.Header()
}

// verify checks the token as the registry does: the kid names the root
// certificate's key by its JWK thumbprint, computed as distribution v3
// computes it (unpadded big-endian coordinates); the signature is ES256 by
// that key; iss and aud are the configured ones.
func (f *fixture) verify(t *testing.T, raw string) *Claims {
	t.Helper()
	block, _ := pem.Decode(f.a.Certificate())
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := cert.PublicKey.(*ecdsa.PublicKey)
	enc := base64.RawURLEncoding.EncodeToString
	//lint:ignore SA1019 distribution reads the deprecated fields too
	sum := sha256.Sum256(fmt.Appendf(nil, `{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, pub.Params().Name, enc(pub.X.Bytes()), enc(pub.Y.Bytes())))
	wantKid := enc(sum[:])
	var c Claims
	tok, err := jwt.ParseWithClaims(raw, &c, func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != wantKid {
			return nil, fmt.Errorf("kid %v, want the thumbprint %s", tok.Header["kid"], wantKid)
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("pier"), jwt.WithAudience("registry.example"), jwt.WithTimeFunc(f.clk.now))
	if err != nil || !tok.Valid {
		t.Fatalf("token does not verify: %v", err)
	}
	if _, ok := tok.Header["x5c"]; ok {
		t.Error("x5c header: the registry would verify a chain instead of the kid")
	}
	exp, iat, nbf := c.ExpiresAt.Time, c.IssuedAt.Time, c.NotBefore.Time
	if exp.Sub(iat) != DefaultTokenTTL || !nbf.Equal(iat) || len(c.ID) != 32 || c.Subject == "" {
		t.Errorf("claims: %+v", c.RegisteredClaims)
	}
	return &c
}

func TestRealmScopes(t *testing.T) {
	f := newFixture(t, &memSettings{})
	bu, bp, release, err := f.a.BuildCredentials("app-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pu, pp, err := f.a.PullCredentials("app-a")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(bu, "build.") || pu != "pull.app-a" || len(bp) < 40 || len(pp) < 40 {
		t.Fatalf("credentials %q %q", bu, pu)
	}
	cases := []struct {
		name       string
		user, pass string
		scopes     []string
		want       []Access
	}{
		{"build: push and pull on its app", bu, bp, []string{"repository:pier/app-a:pull,push"},
			[]Access{{"repository", "pier/app-a", []string{"pull", "push"}}}},
		{"build: not another app's", bu, bp, []string{"repository:pier/app-b:pull,push", "repository:pier/app-a:pull"},
			[]Access{{"repository", "pier/app-a", []string{"pull"}}}},
		{"build: not delete, not *", bu, bp, []string{"repository:pier/app-a:delete,*"}, []Access{}},
		{"build: not the catalog", bu, bp, []string{"registry:catalog:*"}, []Access{}},
		{"build: not outside the prefix", bu, bp, []string{"repository:app-a:pull", "repository:other/app-a:push"}, []Access{}},
		{"build: scopes in one parameter", bu, bp, []string{"repository:pier/app-a:push repository:pier/app-c:pull"},
			[]Access{{"repository", "pier/app-a", []string{"push"}}}},
		{"pull: pull only", pu, pp, []string{"repository:pier/app-a:pull,push"},
			[]Access{{"repository", "pier/app-a", []string{"pull"}}}},
		{"pull: not another app's", pu, pp, []string{"repository:pier/app-b:pull"}, []Access{}},
		{"platform: anything asked", "platform", "platform-pass-canary", []string{"repository:pier/app-b:pull,push", "repository(plugin):other/x:delete"},
			[]Access{{"repository", "other/x", []string{"delete"}}, {"repository", "pier/app-b", []string{"pull", "push"}}}},
		{"login: no scope", bu, bp, nil, []Access{}},
		{"malformed scopes are ignored", bu, bp, []string{"repository", "repository:pier/app-a", ":pier/app-a:pull"}, []Access{}},
	}
	for _, tc := range cases {
		code, c, _ := f.token(t, tc.user, tc.pass, "registry.example", tc.scopes...)
		if code != 200 {
			t.Errorf("%s: status %d", tc.name, code)
			continue
		}
		if !reflect.DeepEqual(c.Access, tc.want) {
			t.Errorf("%s: access %+v, want %+v", tc.name, c.Access, tc.want)
		}
		if c.Subject != tc.user {
			t.Errorf("%s: sub %q", tc.name, c.Subject)
		}
	}
	// No service parameter: the configured one.
	if code, _, _ := f.token(t, bu, bp, "", "repository:pier/app-a:pull"); code != 200 {
		t.Errorf("without service: %d", code)
	}

	// Refusals.
	refuse := []struct {
		name, user, pass, service string
		code                      int
	}{
		{"no credentials", "", "", "registry.example", 401},
		{"wrong build password", bu, bp + "x", "registry.example", 401},
		{"unknown build", "build.0123456789abcdef01234567", bp, "registry.example", 401},
		{"pull password of another app", "pull.app-b", pp, "registry.example", 401},
		{"pull user with a path", "pull.app-a/../app-b", pp, "registry.example", 401},
		{"wrong platform password", "platform", "nope", "registry.example", 401},
		{"another service", bu, bp, "other.example", 400},
	}
	for _, tc := range refuse {
		code, _, h := f.token(t, tc.user, tc.pass, tc.service, "repository:pier/app-a:pull")
		if code != tc.code {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.code)
		}
		if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, h.Get("WWW-Authenticate"))
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", TokenPath, strings.NewReader("grant_type=password"))
	f.a.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}

	// A build's credentials end with it...
	release()
	release() // twice is harmless
	if code, _, _ := f.token(t, bu, bp, "registry.example", "repository:pier/app-a:pull"); code != 401 {
		t.Errorf("ended build's credentials: %d", code)
	}
	// ...or at their deadline.
	bu2, bp2, _, _ := f.a.BuildCredentials("app-a", time.Minute)
	if code, _, _ := f.token(t, bu2, bp2, "registry.example"); code != 200 {
		t.Errorf("fresh build: %d", code)
	}
	f.clk.add(time.Minute)
	if code, _, _ := f.token(t, bu2, bp2, "registry.example"); code != 401 {
		t.Errorf("expired build's credentials: %d", code)
	}

	// Secrets never reach the log.
	for _, s := range []string{bp, bp2, pp, "platform-pass-canary"} {
		if strings.Contains(f.logs.String(), s) {
			t.Fatalf("a password in the log:\n%s", f.logs)
		}
	}
	if !strings.Contains(f.logs.String(), "registry token") {
		t.Errorf("no debug log of the grants:\n%s", f.logs)
	}
}

// The key is made once and kept: a second Authority on the same settings
// (another pierd, a restart) signs with it and derives the same pull
// credentials; another key derives others.
func TestKeyKept(t *testing.T) {
	settings := &memSettings{}
	f1, f2 := newFixture(t, settings), newFixture(t, settings)
	if f1.a.KeyID() != f2.a.KeyID() || f1.a.KeyID() == "" {
		t.Fatalf("kid %q then %q", f1.a.KeyID(), f2.a.KeyID())
	}
	if !strings.Contains(settings.m[KeySetting], "EC PRIVATE KEY") {
		t.Fatal("the key is not in the settings")
	}
	u1, p1, _ := f1.a.PullCredentials("app-a")
	u2, p2, _ := f2.a.PullCredentials("app-a")
	_, pb, _ := f2.a.PullCredentials("app-b")
	if u1 != u2 || p1 != p2 || p1 == pb {
		t.Error("pull credentials are not stable per app, or not distinct between apps")
	}
	// A token of one verifies against the other's certificate.
	bu, bp, _, _ := f1.a.BuildCredentials("app-a", time.Hour)
	q := url.Values{"service": {"registry.example"}, "scope": {"repository:pier/app-a:push"}}
	req := httptest.NewRequest("GET", TokenPath+"?"+q.Encode(), nil)
	req.SetBasicAuth(bu, bp)
	rec := httptest.NewRecorder()
	f1.a.ServeHTTP(rec, req)
	var body struct{ Token string }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	f2.verify(t, body.Token)

	f3 := newFixture(t, &memSettings{})
	if _, p3, _ := f3.a.PullCredentials("app-a"); p3 == p1 || f3.a.KeyID() == f1.a.KeyID() {
		t.Error("two keys, same credentials")
	}

	// The certificate endpoint.
	rec = httptest.NewRecorder()
	f1.a.ServeHTTP(rec, httptest.NewRequest("GET", CertificatePath, nil))
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), f1.a.Certificate()) || !strings.HasPrefix(rec.Body.String(), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("certificate: %d %s", rec.Code, rec.Body)
	}
	// A stored key the registry could not match is refused, not used.
	bad := &memSettings{m: map[string]string{KeySetting: "garbage"}}
	if _, err := New(context.Background(), Config{Settings: bad, Service: "s"}); err == nil {
		t.Error("a malformed stored key was accepted")
	}
}

func TestConfigRefusals(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"no settings":            {Service: "s"},
		"no service":             {Settings: &memSettings{}},
		"user without password":  {Settings: &memSettings{}, Service: "s", PlatformUsername: "u"},
		"user like a build user": {Settings: &memSettings{}, Service: "s", PlatformUsername: "build.x", PlatformPassword: "p"},
		"user like a pull user":  {Settings: &memSettings{}, Service: "s", PlatformUsername: "pull.x", PlatformPassword: "p"},
	} {
		if _, err := New(ctx, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := (&Authority{}).PullCredentials("a/b"); err == nil {
		t.Error("pull credentials for a bad app name")
	}
}

func TestParseScope(t *testing.T) {
	for in, want := range map[string][3]string{
		"repository:pier/app:pull,push":      {"repository", "pier/app", "pull,push"},
		"repository(plugin):pier/app:pull":   {"repository", "pier/app", "pull"},
		"repository:host:5000/pier/app:pull": {"repository", "host:5000/pier/app", "pull"},
		"registry:catalog:*":                 {"registry", "catalog", "*"},
		"repository:pier/app: pull , push ,": {"repository", "pier/app", "pull,push"},
	} {
		typ, name, acts, ok := parseScope(in)
		if !ok || typ != want[0] || name != want[1] || strings.Join(acts, ",") != want[2] {
			t.Errorf("%q: %q %q %q %v", in, typ, name, acts, ok)
		}
	}
	for _, in := range []string{"", "repository", "repository:pull", ":name:pull", "repository::pull"} {
		if _, _, _, ok := parseScope(in); ok {
			t.Errorf("%q parsed", in)
		}
	}
}
