// Package registryauth is the token service of Pier's image registry: the
// "token" authentication scheme of the distribution registry, with Pier as
// the token issuer, so that registry credentials reach one app's
// repository only.
//
// The registry answers an unauthenticated request with 401 and
// "WWW-Authenticate: Bearer realm=...,service=...,scope=...". The client
// calls the realm (TokenPath, served by the controller) with Basic
// credentials and ?service=&scope=, and gets a short-lived JWT, signed with
// an ES256 key that Pier generates once and keeps in its database, listing
// the actions granted on each repository. The registry verifies the
// signature and the claims and never calls Pier: it trusts the key through
// its auth.token.rootcertbundle, a certificate Pier serves at CertificatePath.
// The token header names the key by "kid": the JWK thumbprint of the
// public key, which is how distribution v3 matches a token to a root
// certificate's key.
//
// Three kinds of Basic credentials are accepted:
//   - the platform's account (pierd's --registry-username and password):
//     every action on every repository, for pierd's own pushes and pulls;
//   - a build's: user "build.<id>", a random password, valid until the
//     build ends (Authority.BuildCredentials): pull and push on
//     <prefix>/<app> only;
//   - an app's pull credentials: user "pull.<app>", a password derived from
//     Pier's key (Authority.PullCredentials): pull on <prefix>/<app> only.
//
// A scope the credentials do not cover is left out of the token (the
// registry then refuses the request), as the token specification says.
package registryauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Paths the controller serves the Authority at.
const (
	// TokenPath is the realm: the registry's auth.token.realm is the
	// controller's public URL followed by this path.
	TokenPath = "/v1/registry/token"
	// CertificatePath serves the PEM certificate of the signing key: the
	// registry's auth.token.rootcertbundle.
	CertificatePath = "/v1/registry/certificate"
)

// KeySetting is the setting (Store.InitSetting) that keeps the signing key.
const KeySetting = "registry_token_key"

// DefaultIssuer is the iss claim, the registry's auth.token.issuer.
const DefaultIssuer = "pier"

// DefaultTokenTTL is how long a token is valid (the registry allows a
// minute more for clock skew). A client fetches a new one from the realm
// when it expires, so credentials that end stop working within this time.
const DefaultTokenTTL = 5 * time.Minute

// Username prefixes of the scoped credentials. App names hold lowercase
// letters, digits and dashes only, so neither can be confused with the
// other, nor contain ':' (which Basic authentication splits at).
const (
	buildUserPrefix = "build."
	pullUserPrefix  = "pull."
)

// Settings keeps the signing key: pier.Store does (InitSetting stores the
// value unless the key already has one, and returns the stored value).
type Settings interface {
	InitSetting(ctx context.Context, key, value string) (string, error)
}

// Config configures an Authority.
type Config struct {
	Settings Settings
	// Service is the registry's auth.token.service: the aud claim, and
	// the only service tokens are issued for.
	Service string
	// Issuer is the iss claim, the registry's auth.token.issuer
	// (DefaultIssuer when empty).
	Issuer string
	// Prefix: each app's repository is <Prefix>/<app> ("pier" when empty).
	Prefix string
	// PlatformUsername and PlatformPassword are the platform's account,
	// granted every action on every repository. No platform account when
	// PlatformUsername is empty.
	PlatformUsername, PlatformPassword string
	TokenTTL                           time.Duration // DefaultTokenTTL when zero
	Now                                func() time.Time
	Logger                             *slog.Logger
}

// Authority issues registry tokens and the credentials that obtain them.
type Authority struct {
	cfg     Config
	key     *ecdsa.PrivateKey
	kid     string
	cert    []byte // PEM
	pullKey []byte

	mu     sync.Mutex
	builds map[string]*buildCredential // by username
}

type buildCredential struct {
	app     string
	hash    [32]byte // of the password
	expires time.Time
}

// New loads the signing key from cfg.Settings, or generates and stores it
// on first start, so that every pierd on one database signs with one key.
func New(ctx context.Context, cfg Config) (*Authority, error) {
	if cfg.Settings == nil {
		return nil, errors.New("registry token service: no settings store")
	}
	if cfg.Service == "" {
		return nil, errors.New("registry token service: no service name (the registry's auth.token.service)")
	}
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "pier"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PlatformUsername != "" && cfg.PlatformPassword == "" {
		return nil, errors.New("registry token service: the platform's registry user has no password")
	}
	if strings.HasPrefix(cfg.PlatformUsername, buildUserPrefix) || strings.HasPrefix(cfg.PlatformUsername, pullUserPrefix) {
		return nil, fmt.Errorf("registry token service: the platform's registry user may not start with %q or %q", buildUserPrefix, pullUserPrefix)
	}
	fresh, err := newKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(fresh)
	if err != nil {
		return nil, err
	}
	stored, err := cfg.Settings.InitSetting(ctx, KeySetting, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	if err != nil {
		return nil, fmt.Errorf("registry token service: load the signing key: %w", err)
	}
	block, _ := pem.Decode([]byte(stored))
	if block == nil {
		return nil, errors.New("registry token service: the stored signing key is malformed")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil || key.Curve != elliptic.P256() {
		return nil, errors.New("registry token service: the stored signing key is malformed")
	}
	a := &Authority{cfg: cfg, key: key, builds: map[string]*buildCredential{}}
	if a.kid, err = thumbprint(&key.PublicKey); err != nil {
		return nil, fmt.Errorf("registry token service: %w", err)
	}
	if a.cert, err = certificate(key); err != nil {
		return nil, fmt.Errorf("registry token service: %w", err)
	}
	sum := sha256.Sum256(append([]byte("pier registry pull credentials\x00"), block.Bytes...))
	a.pullKey = sum[:]
	return a, nil
}

// newKey generates a P-256 key whose coordinates have no leading zero
// byte: distribution v3 computes the JWK thumbprint of a root certificate's
// key from the coordinates without padding them to 32 bytes (RFC 7638 pads),
// and with such a key both agree.
func newKey() (*ecdsa.PrivateKey, error) {
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		x, y := coordinates(&k.PublicKey)
		if x[0] != 0 && y[0] != 0 {
			return k, nil
		}
	}
}

// coordinates are the public key's X and Y, 32 bytes each.
func coordinates(pub *ecdsa.PublicKey) (x, y []byte) {
	raw, err := pub.Bytes() // 0x04 || X || Y
	if err != nil || len(raw) != 65 {
		return make([]byte, 32), make([]byte, 32)
	}
	return raw[1:33], raw[33:]
}

// thumbprint is the key's RFC 7638 JWK thumbprint (SHA-256,
// base64url): the kid the registry looks trusted keys up by.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	x, y := coordinates(pub)
	if x[0] == 0 || y[0] == 0 {
		return "", errors.New("the signing key has a coordinate with a leading zero byte, which the registry's thumbprint of it would not match: delete the setting " + KeySetting + " to make a new key")
	}
	enc := base64.RawURLEncoding.EncodeToString
	sum := sha256.Sum256(fmt.Appendf(nil, `{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, enc(x), enc(y)))
	return enc(sum[:]), nil
}

// certificate is a self-signed certificate of the key. The registry takes
// the key from it (matched by kid), not its validity period; it is long
// anyway, so that x509 tools do not call it expired.
func certificate(key *ecdsa.PrivateKey) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Pier registry token issuer"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Certificate is the PEM certificate of the signing key, for the
// registry's auth.token.rootcertbundle.
func (a *Authority) Certificate() []byte { return append([]byte(nil), a.cert...) }

// KeyID is the kid of Pier's tokens.
func (a *Authority) KeyID() string { return a.kid }

// Repository is the app's repository path in the registry (without host).
func (a *Authority) Repository(app string) string { return a.cfg.Prefix + "/" + app }

// BuildCredentials makes credentials for one build of app: pull and push on
// the app's repository, until release is called or ttl has passed.
// The password is random and known only to the caller.
func (a *Authority) BuildCredentials(app string, ttl time.Duration) (username, password string, release func(), err error) {
	id := make([]byte, 12)
	pw := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return "", "", nil, err
	}
	if _, err := rand.Read(pw); err != nil {
		return "", "", nil, err
	}
	username = buildUserPrefix + hex.EncodeToString(id)
	password = base64.RawURLEncoding.EncodeToString(pw)
	a.mu.Lock()
	now := a.cfg.Now()
	for u, c := range a.builds { // forget what has expired
		if !now.Before(c.expires) {
			delete(a.builds, u)
		}
	}
	a.builds[username] = &buildCredential{app: app, hash: sha256.Sum256([]byte(password)), expires: now.Add(ttl)}
	a.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			a.mu.Lock()
			delete(a.builds, username)
			a.mu.Unlock()
		})
	}
	return username, password, release, nil
}

// PullCredentials are app's pull credentials: pull on the app's
// repository, for its pods' image pulls. They are derived from the
// signing key, so they stay the same across restarts and pierds.
func (a *Authority) PullCredentials(app string) (username, password string, err error) {
	if app == "" || strings.ContainsAny(app, ":/ ") {
		return "", "", fmt.Errorf("registry pull credentials: bad app name %q", app)
	}
	return pullUserPrefix + app, a.pullPassword(app), nil
}

func (a *Authority) pullPassword(app string) string {
	m := hmac.New(sha256.New, a.pullKey)
	m.Write([]byte("pull\x00" + app))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// grant is what one set of credentials may do.
type grant struct {
	subject  string
	platform bool   // every action on every repository
	repo     string // else: this repository only
	actions  map[string]bool
}

func (g *grant) allow(typ, name string, actions []string) []string {
	if typ != "repository" {
		return nil
	}
	if !g.platform && name != g.repo {
		return nil
	}
	var ok []string
	for _, act := range actions {
		if g.platform || g.actions[act] {
			ok = append(ok, act)
		}
	}
	return ok
}

// authenticate checks Basic credentials. It returns nil for any failure,
// without saying which check failed.
func (a *Authority) authenticate(user, pass string) *grant {
	switch {
	case strings.HasPrefix(user, buildUserPrefix):
		sum := sha256.Sum256([]byte(pass))
		a.mu.Lock()
		c, ok := a.builds[user]
		a.mu.Unlock()
		if !ok || subtle.ConstantTimeCompare(sum[:], c.hash[:]) != 1 || !a.cfg.Now().Before(c.expires) {
			return nil
		}
		return &grant{subject: user, repo: a.Repository(c.app), actions: map[string]bool{"pull": true, "push": true}}
	case strings.HasPrefix(user, pullUserPrefix):
		app := strings.TrimPrefix(user, pullUserPrefix)
		if app == "" || strings.ContainsAny(app, ":/ ") {
			return nil
		}
		if subtle.ConstantTimeCompare([]byte(pass), []byte(a.pullPassword(app))) != 1 {
			return nil
		}
		return &grant{subject: user, repo: a.Repository(app), actions: map[string]bool{"pull": true}}
	case a.cfg.PlatformUsername != "":
		u := subtle.ConstantTimeCompare([]byte(user), []byte(a.cfg.PlatformUsername))
		p := subtle.ConstantTimeCompare([]byte(pass), []byte(a.cfg.PlatformPassword))
		if u&p != 1 {
			return nil
		}
		return &grant{subject: user, platform: true}
	}
	return nil
}

// Access is one entry of a token's access claim.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Claims are a registry token's claims (distribution's token
// specification).
type Claims struct {
	jwt.RegisteredClaims
	Access []Access `json:"access"`
}

// scope parses one "type[(class)]:name:actions" scope. The name may hold
// ':' (a port), so the type ends at the first ':' and the actions start
// after the last.
func parseScope(s string) (typ, name string, actions []string, ok bool) {
	first, last := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if first < 0 || first == last {
		return "", "", nil, false
	}
	typ, name = s[:first], s[first+1:last]
	if i := strings.Index(typ, "("); i >= 0 {
		typ = typ[:i]
	}
	for _, act := range strings.Split(s[last+1:], ",") {
		if act = strings.TrimSpace(act); act != "" {
			actions = append(actions, act)
		}
	}
	return typ, name, actions, typ != "" && name != ""
}

// issue signs a token granting g what it allows of scopes.
func (a *Authority) issue(g *grant, scopes []string) (string, time.Time, []Access, error) {
	granted := map[[2]string]map[string]bool{}
	for _, param := range scopes {
		for _, sc := range strings.Fields(param) {
			typ, name, actions, ok := parseScope(sc)
			if !ok {
				continue
			}
			for _, act := range g.allow(typ, name, actions) {
				k := [2]string{typ, name}
				if granted[k] == nil {
					granted[k] = map[string]bool{}
				}
				granted[k][act] = true
			}
		}
	}
	access := []Access{}
	for k, acts := range granted {
		e := Access{Type: k[0], Name: k[1]}
		for act := range acts {
			e.Actions = append(e.Actions, act)
		}
		sort.Strings(e.Actions)
		access = append(access, e)
	}
	sort.Slice(access, func(i, j int) bool { return access[i].Name < access[j].Name })
	now := a.cfg.Now().Truncate(time.Second)
	exp := now.Add(a.cfg.TokenTTL)
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, nil, err
	}
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    a.cfg.Issuer,
			Subject:   g.subject,
			Audience:  jwt.ClaimStrings{a.cfg.Service},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        hex.EncodeToString(jti),
		},
		Access: access,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = a.kid
	s, err := t.SignedString(a.key)
	return s, exp, access, err
}

// tokenResponse is the realm's answer (distribution's token specification).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// ServeHTTP serves the realm (TokenPath) and the certificate
// (CertificatePath).
func (a *Authority) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case TokenPath:
		a.serveToken(w, r)
	case CertificatePath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "use GET")
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(a.cert)
	default:
		registryError(w, http.StatusNotFound, "NOT_FOUND", "no such registry endpoint: the realm is "+TokenPath)
	}
}

func (a *Authority) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "use GET with Basic credentials (the OAuth2 POST form is not supported)")
		return
	}
	q := r.URL.Query()
	if svc := q.Get("service"); svc != "" && svc != a.cfg.Service {
		registryError(w, http.StatusBadRequest, "INVALID_REQUEST", "unknown service: this realm issues tokens for the registry service configured in pierd (--registry-token-service)")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="pier registry"`)
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "registry credentials are required")
		return
	}
	g := a.authenticate(user, pass)
	if g == nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="pier registry"`)
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the registry credentials are unknown, wrong or expired")
		return
	}
	tok, exp, access, err := a.issue(g, q["scope"])
	if err != nil {
		a.cfg.Logger.Error("registry token", "err", err)
		registryError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
		return
	}
	a.cfg.Logger.Debug("registry token", "subject", g.subject, "access", fmt.Sprint(access))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(tokenResponse{
		Token: tok, AccessToken: tok, ExpiresIn: int(a.cfg.TokenTTL / time.Second),
		IssuedAt: exp.Add(-a.cfg.TokenTTL).UTC().Format(time.RFC3339),
	})
}

// registryError answers as the registry API does: {"errors": [...]}.
func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
