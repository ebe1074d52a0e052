package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/argon2"

	"github.com/pierpaas/pier"
)

// Settings keys this package owns.
const (
	settingSigningKey    = "jwt_signing_key"
	settingBootstrapHash = "bootstrap_token_hash"
	settingRegistration  = "registration"
)

// APITokenPrefix starts every long-lived API token, so that the
// authenticator (and secret scanners) can tell one from a session JWT.
const APITokenPrefix = "pier_"

// maxAuthHeader bounds the Authorization header: our tokens are a few
// hundred bytes, and parsing an attacker's megabyte of base64 is waste.
const maxAuthHeader = 4096

// sessionClaims are the claims of a session token. sub is the user's ID.
type sessionClaims struct {
	jwt.RegisteredClaims
}

// tokenIssuer signs and verifies session tokens with one HMAC key shared
// through the Store, so that every controller accepts every other's tokens.
type tokenIssuer struct {
	key    []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
}

const jwtIssuer = "pier"

func newTokenIssuer(ctx context.Context, store pier.Store, ttl time.Duration, now func() time.Time) (*tokenIssuer, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	stored, err := store.InitSetting(ctx, settingSigningKey, base64.StdEncoding.EncodeToString(fresh))
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(stored)
	if err != nil || len(key) < 32 {
		return nil, errors.New("load signing key: the stored key is malformed")
	}
	return &tokenIssuer{
		key: key, ttl: ttl, now: now,
		// The algorithm is pinned: a token that names "none", RS256 or
		// anything but HS256 is refused before its signature is looked at.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(jwtIssuer),
			jwt.WithTimeFunc(now),
			jwt.WithLeeway(5*time.Second),
		),
	}, nil
}

func (t *tokenIssuer) issue(u *pier.User) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl)
	claims := sessionClaims{jwt.RegisteredClaims{
		Issuer:    jwtIssuer,
		Subject:   strconv.FormatInt(u.ID, 10),
		ID:        randomString(16),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.key)
	return s, exp, err
}

func (t *tokenIssuer) verify(token string) (*sessionClaims, error) {
	var c sessionClaims
	_, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return nil, pier.Errorf(pier.EUNAUTHORIZED, "your session has expired: run `pier login` again")
		}
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the token is invalid: run `pier login` to get a new one")
	}
	if c.ID == "" || c.Subject == "" {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the token is invalid: run `pier login` to get a new one")
	}
	return &c, nil
}

// authenticate reads the Bearer token. It returns nil, nil when none was sent.
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, nil
	}
	if len(h) > maxAuthHeader {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the Authorization header is over %d bytes: send a Pier token", maxAuthHeader)
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the Authorization header must be 'Bearer <token>'")
	}
	if strings.HasPrefix(token, pier.ServiceTokenPrefix) {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "a service token works only on the controller's internal listener (pierd router uses it there): call the API as a user, with `pier login` or an API token")
	}
	if strings.HasPrefix(token, APITokenPrefix) {
		u, err := s.store.UserForAPIToken(r.Context(), hashToken(token))
		if err != nil {
			return nil, asUnauthorized(err, "the API token is unknown, revoked or expired: create one with `pier tokens:create`")
		}
		return &caller{user: u}, nil
	}
	claims, err := s.tokens.verify(token)
	if err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the token is invalid: run `pier login` to get a new one")
	}
	u, err := s.store.UserForSession(r.Context(), id, claims.ID)
	if err != nil {
		return nil, asUnauthorized(err, "your session has ended: run `pier login` again")
	}
	return &caller{user: u, session: claims}, nil
}

// asUnauthorized keeps internal errors internal and turns every "no" from
// the store into one 401 message that does not say which check failed.
func asUnauthorized(err error, msg string) error {
	switch pier.ErrorCode(err) {
	case pier.EUNAUTHORIZED, pier.ENOTFOUND:
		return pier.Errorf(pier.EUNAUTHORIZED, "%s", msg)
	}
	return err
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken hashes a high-entropy token for storage; a slow hash is not
// needed because the token is 256 random bits, not a password.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Password hashing: argon2id with OWASP's minimum parameters, encoded in
// the PHC string format so the parameters can be raised later.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// kdfSlots bounds how many argon2id computations run at once. Each takes
// argonMemory KiB and tens of milliseconds of CPU: without a bound, a burst
// of logins (hostile or not) could take gigabytes of memory.
var kdfSlots = make(chan struct{}, 2*runtime.GOMAXPROCS(0))

func withKDFSlot[T any](ctx context.Context, f func() T) (T, error) {
	select {
	case kdfSlots <- struct{}{}:
		defer func() { <-kdfSlots }()
		return f(), nil
	case <-ctx.Done():
		var zero T
		return zero, pier.Errorf(pier.EUNAUTHORIZED, "the server is busy checking passwords: try again")
	}
}

func hashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

func checkPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// EnsureBootstrapToken makes the one-time token that registering the first
// user requires. It returns the token if this call created it, and "" if
// there are users already or another controller made the token first.
func EnsureBootstrapToken(ctx context.Context, store pier.Store) (string, error) {
	has, err := store.HasUsers(ctx)
	if err != nil || has {
		return "", err
	}
	token := "pierboot_" + randomString(24)
	stored, err := store.InitSetting(ctx, settingBootstrapHash, hashToken(token))
	if err != nil {
		return "", err
	}
	if stored != hashToken(token) {
		return "", nil
	}
	return token, nil
}

type registerRequest struct {
	Username       string `json:"username"`
	Password       string `json:"password"`
	Email          string `json:"email,omitempty"`
	BootstrapToken string `json:"bootstrap_token,omitempty"`
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) (any, error) {
	var req registerRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if err := pier.ValidateUsername(req.Username); err != nil {
		return nil, err
	}
	if err := pier.ValidatePassword(req.Password); err != nil {
		return nil, err
	}
	if len(req.Email) > 254 || (req.Email != "" && !strings.Contains(req.Email, "@")) {
		return nil, pier.Errorf(pier.EINVALID, "email %q is invalid: use an address such as ada@example.com", clipPath(req.Email))
	}
	hash, err := withKDFSlot(r.Context(), func() string {
		h, err := hashPassword(req.Password)
		if err != nil {
			return ""
		}
		return h
	})
	if err != nil {
		return nil, err
	}
	if hash == "" {
		return nil, errors.New("hash password: crypto/rand failed")
	}
	u := &pier.User{Username: req.Username, Email: req.Email}
	ctx := r.Context()
	has, err := s.store.HasUsers(ctx)
	if err != nil {
		return nil, err
	}
	if !has {
		if req.BootstrapToken == "" {
			return nil, pier.Errorf(pier.EFORBIDDEN, "the first user needs the bootstrap token that pierd printed at its first start (kept in its data dir as bootstrap-token): pass --bootstrap-token")
		}
		if err := s.store.RegisterFirstUser(ctx, u, hash, hashToken(req.BootstrapToken)); err != nil {
			if pier.ErrorCode(err) == pier.EFORBIDDEN {
				return nil, pier.Errorf(pier.EFORBIDDEN, "the bootstrap token is wrong or already used: use the one pierd printed at its first start")
			}
			return nil, err
		}
		s.event(ctx, pier.Event{Actor: u.Username, Action: "user.register", Detail: "first user, admin"})
		return u, nil
	}
	if c := callerOf(ctx); c == nil || !c.user.Admin {
		mode, _, err := s.store.GetSetting(ctx, settingRegistration)
		if err != nil {
			return nil, err
		}
		if mode != pier.RegistrationOpen {
			return nil, pier.Errorf(pier.EFORBIDDEN, "registration is closed: ask an admin to create your account with `pier register`, or to open registration")
		}
	}
	if err := s.store.CreateUser(ctx, u, hash); err != nil {
		if pier.ErrorCode(err) == pier.ECONFLICT {
			return nil, pier.Errorf(pier.ECONFLICT, "username %q is taken: choose another", u.Username)
		}
		return nil, err
	}
	actor := u.Username
	if c := callerOf(ctx); c != nil {
		actor = c.user.Username
	}
	s.event(ctx, pier.Event{Actor: actor, Action: "user.register", Detail: u.Username})
	return u, nil
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) (any, error) {
	var req loginRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	wrong := pier.Errorf(pier.EUNAUTHORIZED, "wrong username or password")
	if req.Username == "" || req.Password == "" {
		return nil, pier.Errorf(pier.EINVALID, "username and password are required")
	}
	if len(req.Username) > pier.UsernameMax || len(req.Password) > pier.PasswordMax {
		return nil, wrong
	}
	if err := s.loginThrottle(r.Context(), req.Username); err != nil {
		return nil, err
	}
	u, hash, err := s.store.UserPassword(r.Context(), req.Username)
	if pier.ErrorCode(err) == pier.ENOTFOUND {
		u, hash = nil, s.dummyPwd // same time as a real check: no user enumeration
	} else if err != nil {
		return nil, err
	}
	ok, err := withKDFSlot(r.Context(), func() bool { return checkPassword(hash, req.Password) })
	if err != nil {
		return nil, err
	}
	if !ok || u == nil {
		if err := s.store.RecordLoginFailure(r.Context(), req.Username); err != nil {
			return nil, err
		}
		return nil, wrong
	}
	if err := s.store.ClearLoginFailures(r.Context(), req.Username); err != nil {
		return nil, err
	}
	token, exp, err := s.tokens.issue(u)
	if err != nil {
		return nil, err
	}
	s.event(r.Context(), pier.Event{Actor: u.Username, Action: "user.login"})
	return pier.Session{Token: token, ExpiresAt: exp, User: *u}, nil
}

// Login throttling: the first freeLoginFailures failures in a row cost
// nothing; after that each attempt must wait twice as long as the one
// before since the last failure, up to maxLoginDelay. A correct password
// resets the count. Delays, not lock-outs: a guesser cannot lock a user out
// for longer than maxLoginDelay.
const (
	freeLoginFailures = 5
	maxLoginDelay     = 15 * time.Minute
)

func (s *Server) loginThrottle(ctx context.Context, username string) error {
	n, last, err := s.store.LoginFailures(ctx, username)
	if err != nil || n < freeLoginFailures {
		return err
	}
	delay := maxLoginDelay
	if shift := n - freeLoginFailures; shift < 20 {
		delay = min(time.Second<<shift, maxLoginDelay)
	}
	if wait := last.Add(delay).Sub(s.now()); wait > 0 {
		return pier.Errorf(pier.ETOOMANY, "too many failed logins as %s: try again in %s", username, wait.Round(time.Second)+time.Second)
	}
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) (any, error) {
	c := callerOf(r.Context())
	if c.session == nil {
		return nil, pier.Errorf(pier.EINVALID, "you are using an API token, not a session: revoke it with `pier tokens:revoke ID`")
	}
	return nil, s.store.RevokeSession(r.Context(), c.session.ID, c.session.ExpiresAt.Time)
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) (any, error) {
	return userOf(r), nil
}

// event records an event outside any other change. Losing one is logged,
// not fatal: the change it describes has already happened.
func (s *Server) event(ctx context.Context, e pier.Event) {
	if err := s.store.RecordEvent(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "record event", "action", e.Action, "err", err)
	}
}
