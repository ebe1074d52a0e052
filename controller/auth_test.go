package controller_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pierpaas/pier"
)

// TestJWTRejected: every kind of bad session token gets a 401, and a token
// made exactly like the server's (the control) is accepted, so the failures
// are due to what each case changes.
func TestJWTRejected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	stored, ok, err := e.db.GetSetting(ctx, "jwt_signing_key")
	if err != nil || !ok {
		t.Fatalf("signing key: %v %v", ok, err)
	}
	key, _ := base64.StdEncoding.DecodeString(stored)
	alice, err := e.db.FindUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(mod func(*jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": "pier", "sub": strconv.FormatInt(alice.ID, 10), "jti": "test-" + strconv.FormatInt(now.UnixNano(), 36),
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, k any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	control := sign(jwt.SigningMethodHS256, key, claims(nil))
	var u pier.User
	e.must("GET", "/v1/auth/whoami", control, nil, 200, &u)
	if u.Username != "alice" {
		t.Fatalf("control token is %+v", u)
	}

	cases := map[string]string{
		"alg none":        sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)),
		"wrong signature": sign(jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), claims(nil)),
		"HS512, same key": sign(jwt.SigningMethodHS512, key, claims(nil)),
		"RS256":           sign(jwt.SigningMethodRS256, rsaKey, claims(nil)),
		"expired":         sign(jwt.SigningMethodHS256, key, claims(func(c *jwt.MapClaims) { (*c)["exp"] = now.Add(-time.Minute).Unix() })),
		"missing exp":     sign(jwt.SigningMethodHS256, key, claims(func(c *jwt.MapClaims) { delete(*c, "exp") })),
		"missing jti":     sign(jwt.SigningMethodHS256, key, claims(func(c *jwt.MapClaims) { delete(*c, "jti") })),
		"other issuer":    sign(jwt.SigningMethodHS256, key, claims(func(c *jwt.MapClaims) { (*c)["iss"] = "heroku" })),
		"issued later":    sign(jwt.SigningMethodHS256, key, claims(func(c *jwt.MapClaims) { (*c)["iat"] = now.Add(time.Hour).Unix() })),
		"unknown user":    sign(jwt.SigningMethodHS256, key, claims(func(c *jwt.MapClaims) { (*c)["sub"] = "999999" })),
		"garbage":         "not.a.jwt",
		"tampered":        control[:len(control)-2] + "xx",
		"oversized":       "eyJ" + strings.Repeat("A", 8000),
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			e.t = t
			e.apiError("GET", "/v1/auth/whoami", token, nil, 401, pier.EUNAUTHORIZED, "")
			e.apiError("GET", "/v1/apps", token, nil, 401, pier.EUNAUTHORIZED, "")
		})
	}
	e.t = t

	// Revoked: a real session, logged out, no longer works.
	s := e.login("alice", "alice's password")
	e.must("GET", "/v1/auth/whoami", s, nil, 200, nil)
	e.must("POST", "/v1/auth/logout", s, nil, 204, nil)
	e.apiError("GET", "/v1/auth/whoami", s, nil, 401, pier.EUNAUTHORIZED, "login")
	// Other sessions of the same user are unaffected.
	e.must("GET", "/v1/auth/whoami", e.alice, nil, 200, nil)

	// No token, and the wrong scheme.
	e.apiError("GET", "/v1/apps", "", nil, 401, pier.EUNAUTHORIZED, "login")
}

func TestAuthorizationHeaderScheme(t *testing.T) {
	e := newEnv(t)
	req := func(h string) int {
		code, _ := e.doHeader("GET", "/v1/auth/whoami", h)
		return code
	}
	for _, h := range []string{"Basic YWxpY2U6cHc=", "Bearer", "Bearer ", e.alice, "Token " + e.alice} {
		if c := req(h); c != 401 {
			t.Errorf("Authorization %.20q: status %d, want 401", h, c)
		}
	}
	if c := req("bearer " + e.alice); c != 200 {
		t.Errorf("lower-case scheme: status %d, want 200", c)
	}
}

// TestLoginThrottle: after five wrong passwords in a row, logins as that
// user must wait, on every controller of the database; a later success
// resets the count.
func TestLoginThrottle(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 5; i++ {
		e.apiError("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "guess " + strconv.Itoa(i)}, 401, pier.EUNAUTHORIZED, "wrong")
	}
	// Even the right password waits now, so guessing gains nothing.
	e.apiError("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "alice's password"}, 429, pier.ETOOMANY, "try again in")
	// Unknown users are throttled alike: no way to tell who exists.
	for i := 0; i < 6; i++ {
		e.do("POST", "/v1/auth/login", "", map[string]string{"username": "ghost", "password": "guess " + strconv.Itoa(i)})
	}
	e.apiError("POST", "/v1/auth/login", "", map[string]string{"username": "ghost", "password": "guess"}, 429, pier.ETOOMANY, "try again in")

	// A second controller on the same database, whose clock is past the
	// one-second delay, lets the right password in and resets the count.
	later := controllerAt(t, e, time.Now().Add(3*time.Second))
	later.must("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "alice's password"}, 200, nil)
	n, _, err := e.db.LoginFailures(context.Background(), "alice")
	if err != nil || n != 0 {
		t.Fatalf("failures after a good login: %d, %v", n, err)
	}
}
