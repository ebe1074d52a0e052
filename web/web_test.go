package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/web"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newAPI is a controller (with its dashboard) on a fresh database, with
// the admin root and the user alice registered.
func newAPI(t *testing.T) http.Handler {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	api, err := controller.New(ctx, controller.Config{Store: db, PublicURL: "http://pier.localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := controller.EnsureBootstrapToken(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, h: api, host: "pier.localhost:8080"}
	b.apiCall("POST", "/v1/auth/register", "", `{"username":"root","password":"correct horse","bootstrap_token":"`+boot+`"}`, 201)
	root := b.token("root", "correct horse")
	b.apiCall("POST", "/v1/auth/register", root, `{"username":"alice","password":"alice's password"}`, 201)
	return api
}

// browser keeps cookies the way a browser would for one host, and sends
// forms as one does. (Go's cookie jar would not send Secure cookies over
// plain HTTP, which browsers do on localhost.)
type browser struct {
	t       *testing.T
	h       http.Handler
	host    string
	cookies map[string]*http.Cookie
	set     []*http.Cookie // the Set-Cookie headers of the last answer
}

func newBrowser(t *testing.T, h http.Handler, host string) *browser {
	return &browser{t: t, h: h, host: host, cookies: map[string]*http.Cookie{}}
}

func (b *browser) apiCall(method, path, token, body string, want int) string {
	b.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = b.host
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.t.Fatalf("%s %s: %d, want %d: %s", method, path, rec.Code, want, rec.Body)
	}
	return rec.Body.String()
}

func (b *browser) token(user, pw string) string {
	b.t.Helper()
	var s struct{ Token string }
	json.Unmarshal([]byte(b.apiCall("POST", "/v1/auth/login", "", `{"username":"`+user+`","password":"`+pw+`"}`, 200)), &s)
	return s.Token
}

func (b *browser) do(method, path string, form url.Values, origin string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, path, body)
	req.Host = b.host
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	res := rec.Result()
	b.set = res.Cookies()
	for _, c := range b.set {
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return res, rec.Body.String()
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%.2000s", page)
	}
	return m[1]
}

// login signs in through the login form.
func (b *browser) login(user, pw string) {
	b.t.Helper()
	_, page := b.do("GET", "/login", nil, "")
	res, body := b.do("POST", "/login", url.Values{"csrf": {csrfOf(b.t, page)}, "username": {user}, "password": {pw}}, "")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/apps" {
		b.t.Fatalf("login as %s: %d %s\n%.1000s", user, res.StatusCode, res.Header.Get("Location"), body)
	}
}

func cookieNamed(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestCookies: the session cookie is __Host-, HttpOnly, SameSite=Strict,
// Secure and host-only (Path=/, no Domain) on the embedded default's host.
func TestCookies(t *testing.T) {
	api := newAPI(t)
	b := newBrowser(t, api, "pier.localhost:8080")
	_, page := b.do("GET", "/login", nil, "")
	if lc := cookieNamed(b.set, "__Host-pier_login"); lc == nil || !lc.HttpOnly || !lc.Secure || lc.SameSite != http.SameSiteStrictMode || lc.Path != "/" || lc.Domain != "" {
		t.Fatalf("login cookie: %+v", b.set)
	}
	res, _ := b.do("POST", "/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"alice"}, "password": {"alice's password"}}, "http://pier.localhost:8080")
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", res.StatusCode)
	}
	sc := cookieNamed(b.set, "__Host-pier_session")
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Domain != "" || sc.Expires.IsZero() {
		t.Fatalf("session cookie: %+v", b.set)
	}
	for _, h := range res.Header.Values("Set-Cookie") {
		if strings.HasPrefix(h, "__Host-pier_session=") && (!strings.Contains(h, "HttpOnly") || !strings.Contains(h, "SameSite=Strict") || !strings.Contains(h, "Secure")) {
			t.Fatalf("Set-Cookie: %s", h)
		}
	}
	if res, body := b.do("GET", "/apps", nil, ""); res.StatusCode != 200 || !strings.Contains(body, "alice") {
		t.Fatalf("apps after login: %d\n%.500s", res.StatusCode, body)
	}
	// Logging out ends the session on the server, not only the cookie.
	stolen := b.cookies["__Host-pier_session"].Value
	_, page = b.do("GET", "/apps", nil, "")
	if res, _ := b.do("POST", "/logout", url.Values{"csrf": {csrfOf(t, page)}}, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if b.cookies["__Host-pier_session"] != nil {
		t.Fatal("the session cookie survived logout")
	}
	b.cookies["__Host-pier_session"] = &http.Cookie{Name: "__Host-pier_session", Value: stolen}
	if res, _ := b.do("GET", "/apps", nil, ""); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Fatalf("a logged-out session still opens /apps: %d", res.StatusCode)
	}

	// Plain HTTP on a host that is not loopback: browsers refuse Secure
	// cookies there, so the cookies drop the __Host- prefix and Secure,
	// and keep HttpOnly and SameSite=Strict.
	other := newBrowser(t, api, "pier.example.com")
	other.do("GET", "/login", nil, "")
	if lc := cookieNamed(other.set, "pier_login"); lc == nil || lc.Secure || !lc.HttpOnly || lc.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login cookie over plain HTTP on pier.example.com: %+v", other.set)
	}
}

// TestCSRF: a form post without this session's token, with another
// session's token, or from another origin changes nothing and is a 403.
func TestCSRF(t *testing.T) {
	api := newAPI(t)
	b := newBrowser(t, api, "pier.localhost:8080")
	// The login form too.
	b.do("GET", "/login", nil, "")
	if res, body := b.do("POST", "/login", url.Values{"username": {"alice"}, "password": {"alice's password"}}, ""); res.StatusCode != 403 || !strings.Contains(body, "This form was refused") {
		t.Fatalf("login without a token: %d\n%.500s", res.StatusCode, body)
	}
	b.login("alice", "alice's password")
	_, page := b.do("GET", "/apps", nil, "")
	good := csrfOf(t, page)

	other := newBrowser(t, api, "pier.localhost:8080")
	other.login("root", "correct horse")
	_, otherPage := other.do("GET", "/apps", nil, "")

	for name, c := range map[string]struct {
		form   url.Values
		origin string
	}{
		"no token":              {url.Values{"name": {"forged"}}, ""},
		"empty token":           {url.Values{"name": {"forged"}, "csrf": {""}}, ""},
		"another session's":     {url.Values{"name": {"forged"}, "csrf": {csrfOf(t, otherPage)}}, ""},
		"good token, elsewhere": {url.Values{"name": {"forged"}, "csrf": {good}}, "https://evil.example"},
	} {
		res, body := b.do("POST", "/apps", c.form, c.origin)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "reload the page") {
			t.Errorf("%s: %d\n%.500s", name, res.StatusCode, body)
		}
	}
	if _, body := b.do("GET", "/apps", nil, ""); strings.Contains(body, "forged") {
		t.Fatal("a forged form created an app")
	}
	res, body := b.do("POST", "/apps", url.Values{"name": {"real-app"}, "csrf": {good}}, "http://pier.localhost:8080")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/apps/real-app" {
		t.Fatalf("create with the token: %d %s\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
}

// TestMembersOnly: a user who is not a member of an app gets a 403 page
// for each of its pages and posts, and does not see it listed; an admin
// sees every app.
func TestMembersOnly(t *testing.T) {
	api := newAPI(t)
	root := newBrowser(t, api, "pier.localhost:8080")
	root.login("root", "correct horse")
	_, page := root.do("GET", "/apps", nil, "")
	if res, _ := root.do("POST", "/apps", url.Values{"name": {"roots-app"}, "csrf": {csrfOf(t, page)}}, ""); res.StatusCode != 303 {
		t.Fatalf("create: %d", res.StatusCode)
	}
	alice := newBrowser(t, api, "pier.localhost:8080")
	alice.login("alice", "alice's password")
	_, page = alice.do("GET", "/apps", nil, "")
	if strings.Contains(page, "roots-app") {
		t.Fatal("alice sees root's app in her list")
	}
	if res, _ := alice.do("POST", "/apps", url.Values{"name": {"alices-app"}, "csrf": {csrfOf(t, page)}}, ""); res.StatusCode != 303 {
		t.Fatalf("create: %d", res.StatusCode)
	}
	for _, p := range []string{"", "/releases", "/config", "/config?reveal=*", "/domains", "/builds", "/logs", "/logs/stream", "/access", "/activity", "/destroy", "/releases/v1/rollback"} {
		res, body := alice.do("GET", "/apps/roots-app"+p, nil, "")
		if res.StatusCode != http.StatusForbidden || (p != "/logs/stream" && !strings.Contains(body, "You do not have access")) {
			t.Errorf("GET /apps/roots-app%s as alice: %d\n%.300s", p, res.StatusCode, body)
		}
	}
	csrf := csrfOf(t, page)
	for _, p := range []string{"/config", "/scale", "/destroy", "/domains"} {
		res, _ := alice.do("POST", "/apps/roots-app"+p, url.Values{"csrf": {csrf}, "key": {"X"}, "value": {"1"}, "type": {"web"}, "quantity": {"1"}, "confirm": {"roots-app"}, "hostname": {"x.example.com"}}, "")
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("POST /apps/roots-app%s as alice: %d", p, res.StatusCode)
		}
	}
	_, page = root.do("GET", "/apps", nil, "")
	if !strings.Contains(page, "alices-app") || !strings.Contains(page, "roots-app") {
		t.Fatalf("the admin's list lacks an app:\n%.2000s", page)
	}
	if res, _ := root.do("GET", "/apps/alices-app/config", nil, ""); res.StatusCode != 200 {
		t.Fatalf("admin on alice's app: %d", res.StatusCode)
	}
	// Not logged in: to the login page, coming back after.
	anon := newBrowser(t, api, "pier.localhost:8080")
	if res, _ := anon.do("GET", "/apps/roots-app", nil, ""); res.StatusCode != 303 || res.Header.Get("Location") != "/login?next=%2Fapps%2Froots-app" {
		t.Fatalf("anonymous: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// TestConfigMasked: values are not in the page until revealed; set, edit
// and remove each make a release; errors show on the page, in words.
func TestConfigMasked(t *testing.T) {
	api := newAPI(t)
	b := newBrowser(t, api, "pier.localhost:8080")
	b.login("alice", "alice's password")
	_, page := b.do("GET", "/apps", nil, "")
	csrf := csrfOf(t, page)
	b.do("POST", "/apps", url.Values{"name": {"cfg-app"}, "csrf": {csrf}}, "")
	const secret = "canary-s3cret-value"
	res, _ := b.do("POST", "/apps/cfg-app/config", url.Values{"csrf": {csrf}, "key": {"TOKEN"}, "value": {secret}}, "")
	if res.StatusCode != 303 {
		t.Fatalf("set: %d", res.StatusCode)
	}
	_, page = b.do("GET", "/apps/cfg-app/config", nil, "")
	if !strings.Contains(page, "Set TOKEN: released v2") || !strings.Contains(page, "TOKEN") {
		t.Fatalf("config page after set:\n%.3000s", page)
	}
	if strings.Contains(page, secret) {
		t.Fatal("a config value is in the page before it is revealed")
	}
	if _, page = b.do("GET", "/apps/cfg-app/config?reveal=TOKEN", nil, ""); !strings.Contains(page, secret) {
		t.Fatal("reveal does not show the value")
	}
	if _, page = b.do("GET", "/apps/cfg-app/config?edit=TOKEN", nil, ""); !strings.Contains(page, ">"+secret+"</textarea>") {
		t.Fatal("edit does not offer the value")
	}
	b.do("POST", "/apps/cfg-app/config", url.Values{"csrf": {csrf}, "key": {"TOKEN"}, "value": {"other"}}, "")
	b.do("POST", "/apps/cfg-app/config/unset", url.Values{"csrf": {csrf}, "key": {"TOKEN"}}, "")
	_, page = b.do("GET", "/apps/cfg-app/releases", nil, "")
	for _, want := range []string{"v4", "Unset TOKEN", "v3", "Set TOKEN", "v1", "Initial release"} {
		if !strings.Contains(page, want) {
			t.Fatalf("releases page lacks %q:\n%.3000s", want, page)
		}
	}
	// An invalid key: the config page again, with the API's words, and the
	// value typed kept in the form.
	res, page = b.do("POST", "/apps/cfg-app/config", url.Values{"csrf": {csrf}, "key": {"1BAD"}, "value": {"v"}}, "")
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "config key &#34;1BAD&#34; is invalid") || !strings.Contains(page, `value="1BAD"`) {
		t.Fatalf("invalid key: %d\n%.3000s", res.StatusCode, page)
	}
	// Destroy asks for the name.
	res, page = b.do("POST", "/apps/cfg-app/destroy", url.Values{"csrf": {csrf}, "confirm": {"cfg"}}, "")
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "Nothing was destroyed") {
		t.Fatalf("destroy with the wrong name: %d", res.StatusCode)
	}
	if res, _ = b.do("POST", "/apps/cfg-app/destroy", url.Values{"csrf": {csrf}, "confirm": {"cfg-app"}}, ""); res.StatusCode != 303 {
		t.Fatalf("destroy: %d", res.StatusCode)
	}
	if res, _ = b.do("GET", "/apps/cfg-app", nil, ""); res.StatusCode != 404 {
		t.Fatalf("destroyed app's page: %d", res.StatusCode)
	}
}

// TestPagesSmall: every page stays far below 100 KB, assets included.
func TestPagesSmall(t *testing.T) {
	api := newAPI(t)
	b := newBrowser(t, api, "pier.localhost:8080")
	b.login("alice", "alice's password")
	_, page := b.do("GET", "/apps", nil, "")
	b.do("POST", "/apps", url.Values{"name": {"small"}, "csrf": {csrfOf(t, page)}}, "")
	assets := 0
	for _, p := range []string{"/assets/style.css", "/assets/logs.js"} {
		res, body := b.do("GET", p, nil, "")
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", p, res.StatusCode)
		}
		assets += len(body)
	}
	for _, p := range []string{"/login", "/apps", "/account", "/apps/small", "/apps/small/releases", "/apps/small/config", "/apps/small/domains", "/apps/small/builds", "/apps/small/logs", "/apps/small/access", "/apps/small/activity", "/apps/small/destroy"} {
		res, body := b.do("GET", p, nil, "")
		if res.StatusCode != 200 {
			t.Errorf("%s: %d\n%.500s", p, res.StatusCode, body)
		}
		if total := len(body) + assets; total > 100<<10 {
			t.Errorf("%s: %d bytes with its assets", p, total)
		}
		if !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") || res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", p, res.Header)
		}
	}
}

var _ = web.Paths
