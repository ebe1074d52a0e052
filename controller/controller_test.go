package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one controller on a fresh database, with an admin and a second,
// ordinary user logged in.
type env struct {
	t            *testing.T
	db           *postgres.DB
	dsn          string // db's
	api          *controller.Server
	rec          *controller.Reconciler // nil unless made with newEnvWith
	srv          *httptest.Server
	now          time.Time
	admin, alice string // session tokens
}

func newEnv(t *testing.T) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with a Reconciler of sched, as `pierd all` runs;
// nil sched makes a controller alone, as `pierd controller` runs.
func newEnvWith(t *testing.T, sched pier.Scheduler, mods ...func(*controller.Config)) *env {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.Database(t)
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	e := &env{t: t, db: db, dsn: dsn}
	cfg := controller.Config{Store: db, PublicURL: "http://pier.localhost:8080"}
	if sched != nil {
		e.rec = controller.NewReconciler(db, sched, nil)
		cfg.Reconciler = e.rec
	}
	for _, m := range mods {
		m(&cfg)
	}
	api, err := controller.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	e.srv = httptest.NewServer(api)
	t.Cleanup(e.srv.Close)

	boot, err := controller.EnsureBootstrapToken(ctx, db)
	if err != nil || boot == "" {
		t.Fatalf("bootstrap token: %q, %v", boot, err)
	}
	e.must("POST", "/v1/auth/register", "", map[string]string{"username": "root", "password": "correct horse", "bootstrap_token": boot}, 201, nil)
	e.admin = e.login("root", "correct horse")
	e.must("POST", "/v1/auth/register", e.admin, map[string]string{"username": "alice", "password": "alice's password"}, 201, nil)
	e.alice = e.login("alice", "alice's password")
	return e
}

// controllerAt is another controller on e's database whose clock reads now.
func controllerAt(t *testing.T, e *env, now time.Time) *env {
	api, err := controller.New(context.Background(), controller.Config{Store: e.db, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &env{t: t, db: e.db, srv: srv}
}

func (e *env) login(user, pw string) string {
	var s pier.Session
	e.must("POST", "/v1/auth/login", "", map[string]string{"username": user, "password": pw}, 200, &s)
	return s.Token
}

// do sends a request; body is JSON-encoded unless it is a string or []byte.
func (e *env) do(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

// must sends a request, checks the status and decodes the answer into out.
func (e *env) must(method, path, token string, body any, status int, out any) {
	e.t.Helper()
	got, b := e.do(method, path, token, body)
	if got != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// apiError checks that an answer is an error with the status and code, and
// a message that says something (and contains want, if given).
func (e *env) apiError(method, path, token string, body any, status int, code, want string) {
	e.t.Helper()
	got, b := e.do(method, path, token, body)
	var eb struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &eb); err != nil {
		e.t.Fatalf("%s %s: not a JSON error (%d): %s", method, path, got, b)
	}
	if got != status || eb.Error.Code != code || len(eb.Error.Message) < 10 || !strings.Contains(eb.Error.Message, want) {
		e.t.Fatalf("%s %s: got %d %s %q; want %d %s containing %q", method, path, got, eb.Error.Code, eb.Error.Message, status, code, want)
	}
}

func (e *env) releases(app string) []pier.Release {
	var l pier.List[pier.Release]
	e.must("GET", "/v1/apps/"+app+"/releases?limit=500", e.admin, nil, 200, &l)
	return l.Items
}

func TestAppLifecycle(t *testing.T) {
	e := newEnv(t)
	var info pier.AppInfo
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, &info)
	if info.Name != "myapp" || info.Owner != "alice" || info.URL != "http://myapp.pier.localhost:8080" || info.Release.Version != 1 || info.Release.Note != "Initial release" {
		t.Fatalf("created %+v (release %+v)", info, info.Release)
	}

	var rel pier.Release
	e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]any{"A": "1", "B": "x y", "MULTI": "line1\nline2=3"}, 200, &rel)
	if rel.Version != 2 || rel.Note != "Set A, B, MULTI" {
		t.Fatalf("release %+v", rel)
	}
	var cfg pier.Config
	e.must("GET", "/v1/apps/myapp/config", e.alice, nil, 200, &cfg)
	if cfg["B"] != "x y" || cfg["MULTI"] != "line1\nline2=3" || len(cfg) != 3 {
		t.Fatalf("config %v", cfg)
	}
	e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]any{"A": nil, "C": "3"}, 200, &rel)
	if rel.Version != 3 || rel.Note != "Set C; unset A" {
		t.Fatalf("release %+v", rel)
	}
	e.must("POST", "/v1/apps/myapp/releases/rollback", e.alice, map[string]int{"version": 1}, 201, &rel)
	if rel.Version != 4 || rel.Note != "Rollback to v1" {
		t.Fatalf("rollback %+v", rel)
	}
	cfg = nil // json.Unmarshal into a non-nil map keeps old keys
	e.must("GET", "/v1/apps/myapp/config", e.alice, nil, 200, &cfg)
	if len(cfg) != 0 {
		t.Fatalf("config after rollback to v1: %v", cfg)
	}
	e.must("POST", "/v1/apps/myapp/releases/rollback", e.alice, nil, 201, &rel)
	if rel.Version != 5 || rel.Note != "Rollback to v3" {
		t.Fatalf("rollback without version %+v", rel)
	}
	e.must("GET", "/v1/apps/myapp/releases/v3", e.alice, nil, 200, &rel)
	if rel.Config["C"] != "3" {
		t.Fatalf("v3 %+v", rel)
	}

	var f pier.Formation
	e.must("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"web": 2}, 200, &f)
	if f["web"] != 2 {
		t.Fatalf("formation %v", f)
	}
	if n := len(e.releases("myapp")); n != 5 {
		t.Fatalf("scaling made a release: %d releases", n)
	}

	var d pier.Domain
	e.must("POST", "/v1/apps/myapp/domains", e.alice, map[string]string{"hostname": "WWW.Example.COM."}, 201, &d)
	if d.Hostname != "www.example.com" {
		t.Fatalf("domain %+v", d)
	}
	e.apiError("POST", "/v1/apps/myapp/domains", e.alice, map[string]string{"hostname": "other.pier.localhost"}, 403, pier.EFORBIDDEN, "reserved")
	e.apiError("POST", "/v1/apps/myapp/domains", e.alice, map[string]string{"hostname": "*.example.org"}, 403, pier.EFORBIDDEN, "admin")

	e.must("GET", "/v1/apps/myapp", e.alice, nil, 200, &info)
	if info.Release.Version != 5 || info.Formation["web"] != 2 || len(info.Domains) != 1 || len(info.Members) != 1 {
		t.Fatalf("info %+v", info)
	}
	if info.Release.Config != nil {
		t.Fatalf("apps:info leaks config values: %+v", info.Release.Config)
	}

	var events pier.List[pier.Event]
	e.must("GET", "/v1/apps/myapp/events", e.alice, nil, 200, &events)
	for _, ev := range events.Items {
		if strings.Contains(ev.Detail, "x y") || strings.Contains(ev.Detail, "line1") {
			t.Fatalf("event %+v holds a config value", ev)
		}
	}
	if len(events.Items) < 6 {
		t.Fatalf("only %d events", len(events.Items))
	}

	e.must("DELETE", "/v1/apps/myapp", e.alice, nil, 204, nil)
	e.apiError("GET", "/v1/apps/myapp", e.alice, nil, 404, pier.ENOTFOUND, "myapp")
}

func TestGeneratedAppName(t *testing.T) {
	e := newEnv(t)
	var info pier.AppInfo
	e.must("POST", "/v1/apps", e.alice, map[string]string{}, 201, &info)
	if err := pier.ValidateAppName(info.Name); err != nil {
		t.Fatalf("generated name %q: %v", info.Name, err)
	}
}

// TestBadInput: every bad input gets a 4xx that says what to fix, and
// changes nothing.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	e.must("POST", "/v1/apps", e.admin, map[string]string{"name": "rootapp"}, 201, nil)

	for _, name := range []string{"-x", "a", "UPPER", "a..b", strings.Repeat("a", 64), "$(id)", "x y", "ab-", "a--b", "pier", "kube-system", "ümlaut"} {
		e.apiError("POST", "/v1/apps", e.alice, map[string]string{"name": name}, 400, pier.EINVALID, "app name")
	}
	e.apiError("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 409, pier.ECONFLICT, "already exists")
	e.apiError("POST", "/v1/apps", e.alice, `{"name": 5}`, 400, pier.EINVALID, "name")
	e.apiError("POST", "/v1/apps", e.alice, `{"nme": "typo"}`, 400, pier.EINVALID, "nme")

	for _, key := range []string{"1A", "A-B", "A B", "", "PORT", "CNB_X", "$(id)", strings.Repeat("K", 256)} {
		e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{key: "v"}, 400, pier.EINVALID, "config key")
	}
	e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, map[string]any{}, 400, pier.EINVALID, "no config change")
	e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, map[string]any{"NOPE": nil}, 400, pier.EINVALID, "not set")
	e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, map[string]any{"A": 1}, 400, pier.EINVALID, "")
	e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"BIG": strings.Repeat("x", pier.ConfigValueMax+1)}, 413, pier.ETOOLARGE, "BIG")

	// Malformed and oversized bodies.
	for _, body := range []string{`{`, `{"A": "1"`, `not json`, `["A"]`, `{"A":"1"} {"B":"2"}`, ``} {
		e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, body, 400, pier.EINVALID, "")
	}
	huge := `{"A":"` + strings.Repeat("x", controller.MaxBodyBytes) + `"}`
	e.apiError("PATCH", "/v1/apps/myapp/config", e.alice, huge, 413, pier.ETOOLARGE, "bytes")
	e.apiError("POST", "/v1/apps", e.alice, huge, 413, pier.ETOOLARGE, "bytes")

	// Unknown apps, other users' apps, bad versions and scales.
	e.apiError("GET", "/v1/apps/nosuchapp", e.alice, nil, 404, pier.ENOTFOUND, "nosuchapp")
	e.apiError("PATCH", "/v1/apps/nosuchapp/config", e.alice, map[string]string{"A": "1"}, 404, pier.ENOTFOUND, "nosuchapp")
	e.apiError("GET", "/v1/apps/rootapp", e.alice, nil, 403, pier.EFORBIDDEN, "perms:add")
	e.apiError("PATCH", "/v1/apps/rootapp/config", e.alice, map[string]string{"A": "1"}, 403, pier.EFORBIDDEN, "access")
	e.apiError("DELETE", "/v1/apps/rootapp", e.alice, nil, 403, pier.EFORBIDDEN, "access")
	e.apiError("GET", "/v1/apps/myapp/releases/vx", e.alice, nil, 400, pier.EINVALID, "version")
	e.apiError("GET", "/v1/apps/myapp/releases/v99", e.alice, nil, 404, pier.ENOTFOUND, "99")
	e.apiError("POST", "/v1/apps/myapp/releases/rollback", e.alice, map[string]int{"version": 1}, 400, pier.EINVALID, "current")
	e.apiError("POST", "/v1/apps/myapp/releases/rollback", e.alice, map[string]int{"version": 7}, 404, pier.ENOTFOUND, "7")
	e.apiError("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"web": -1}, 400, pier.EINVALID, "web")
	e.apiError("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"web": 100000}, 400, pier.EINVALID, "web")
	e.apiError("PATCH", "/v1/apps/myapp/formation", e.alice, map[string]int{"Web!": 1}, 400, pier.EINVALID, "process type")
	e.apiError("POST", "/v1/apps/myapp/domains", e.alice, map[string]string{"hostname": "bad host"}, 400, pier.EINVALID, "domain")
	e.apiError("POST", "/v1/apps/myapp/domains", e.alice, map[string]string{"hostname": "127.0.0.1"}, 400, pier.EINVALID, "IP")
	e.apiError("POST", "/v1/apps/myapp/perms", e.alice, map[string]string{"username": "nobody-here"}, 404, pier.ENOTFOUND, "nobody-here")
	e.apiError("GET", "/v1/apps?limit=0", e.alice, nil, 400, pier.EINVALID, "limit")
	e.apiError("GET", "/v1/users", e.alice, nil, 403, pier.EFORBIDDEN, "admin")
	e.apiError("GET", "/v1/no/such/thing", e.alice, nil, 404, pier.ENOTFOUND, "openapi")
	e.apiError("POST", "/v1/keys", e.alice, map[string]string{"public_key": "ssh-rsa AAAA not a key"}, 400, pier.EINVALID, ".pub")
	e.apiError("POST", "/v1/tokens", e.alice, map[string]string{"description": ""}, 400, pier.EINVALID, "description")

	// Nothing changed: one release each, no other apps, empty config.
	if n := len(e.releases("myapp")); n != 1 {
		t.Fatalf("bad input made releases: %d", n)
	}
	var apps pier.List[pier.App]
	e.must("GET", "/v1/apps", e.admin, nil, 200, &apps)
	if len(apps.Items) != 2 {
		t.Fatalf("apps after bad input: %+v", apps.Items)
	}
	var cfg pier.Config
	e.must("GET", "/v1/apps/myapp/config", e.alice, nil, 200, &cfg)
	if len(cfg) != 0 {
		t.Fatalf("config after bad input: %v", cfg)
	}
}

func TestVisibilityAndPerms(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.admin, map[string]string{"name": "shared"}, 201, nil)
	var apps pier.List[pier.App]
	e.must("GET", "/v1/apps", e.alice, nil, 200, &apps)
	if len(apps.Items) != 0 {
		t.Fatalf("alice sees %+v", apps.Items)
	}
	e.must("POST", "/v1/apps/shared/perms", e.admin, map[string]string{"username": "alice"}, 201, nil)
	e.must("GET", "/v1/apps", e.alice, nil, 200, &apps)
	if len(apps.Items) != 1 {
		t.Fatalf("alice sees %+v", apps.Items)
	}
	e.must("PATCH", "/v1/apps/shared/config", e.alice, map[string]string{"A": "1"}, 200, nil)
	e.apiError("DELETE", "/v1/apps/shared", e.alice, nil, 403, pier.EFORBIDDEN, "owner")
	e.apiError("POST", "/v1/apps/shared/perms", e.alice, map[string]string{"username": "root"}, 403, pier.EFORBIDDEN, "owner")
	e.apiError("DELETE", "/v1/apps/shared/perms/root", e.admin, nil, 400, pier.EINVALID, "owner")
	e.must("DELETE", "/v1/apps/shared/perms/alice", e.admin, nil, 204, nil)
	e.apiError("GET", "/v1/apps/shared", e.alice, nil, 403, pier.EFORBIDDEN, "access")
}

func TestRegistration(t *testing.T) {
	e := newEnv(t)
	// The bootstrap token worked once; now registration is admin-only.
	e.apiError("POST", "/v1/auth/register", "", map[string]string{"username": "mallory", "password": "12345678"}, 403, pier.EFORBIDDEN, "closed")
	e.apiError("POST", "/v1/auth/register", e.alice, map[string]string{"username": "mallory", "password": "12345678"}, 403, pier.EFORBIDDEN, "closed")
	e.apiError("POST", "/v1/auth/register", e.admin, map[string]string{"username": "alice", "password": "12345678"}, 409, pier.ECONFLICT, "taken")
	e.apiError("POST", "/v1/auth/register", e.admin, map[string]string{"username": "Bad Name", "password": "12345678"}, 400, pier.EINVALID, "username")
	e.apiError("POST", "/v1/auth/register", e.admin, map[string]string{"username": "bob", "password": "short"}, 400, pier.EINVALID, "password")
	e.apiError("PATCH", "/v1/settings", e.alice, map[string]string{"registration": "open"}, 403, pier.EFORBIDDEN, "admin")
	e.apiError("PATCH", "/v1/settings", e.admin, map[string]string{"registration": "maybe"}, 400, pier.EINVALID, "registration")
	e.must("PATCH", "/v1/settings", e.admin, map[string]string{"registration": "open"}, 200, nil)
	e.must("POST", "/v1/auth/register", "", map[string]string{"username": "mallory", "password": "12345678"}, 201, nil)
	var u pier.User
	e.must("GET", "/v1/auth/whoami", e.login("mallory", "12345678"), nil, 200, &u)
	if u.Username != "mallory" || u.Admin {
		t.Fatalf("whoami %+v", u)
	}
	e.apiError("POST", "/v1/auth/login", "", map[string]string{"username": "mallory", "password": "wrong password"}, 401, pier.EUNAUTHORIZED, "wrong username or password")
	e.apiError("POST", "/v1/auth/login", "", map[string]string{"username": "nobody", "password": "wrong password"}, 401, pier.EUNAUTHORIZED, "wrong username or password")
}

func TestBootstrapTokenIsOneTime(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	api, err := controller.New(ctx, controller.Config{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	e := &env{t: t, db: db, srv: srv}
	boot, _ := controller.EnsureBootstrapToken(ctx, db)
	again, _ := controller.EnsureBootstrapToken(ctx, db)
	if boot == "" || again != "" {
		t.Fatalf("bootstrap tokens %q then %q", boot, again)
	}
	e.apiError("POST", "/v1/auth/register", "", map[string]string{"username": "eve", "password": "12345678"}, 403, pier.EFORBIDDEN, "bootstrap")
	e.apiError("POST", "/v1/auth/register", "", map[string]string{"username": "eve", "password": "12345678", "bootstrap_token": "pierboot_guess"}, 403, pier.EFORBIDDEN, "bootstrap")
	var u pier.User
	e.must("POST", "/v1/auth/register", "", map[string]string{"username": "ada", "password": "12345678", "bootstrap_token": boot}, 201, &u)
	if !u.Admin {
		t.Fatalf("first user is not admin: %+v", u)
	}
	e.apiError("POST", "/v1/auth/register", "", map[string]string{"username": "eve", "password": "12345678", "bootstrap_token": boot}, 403, pier.EFORBIDDEN, "closed")
}

func TestAPITokens(t *testing.T) {
	e := newEnv(t)
	var nt pier.NewAPIToken
	e.must("POST", "/v1/tokens", e.alice, map[string]string{"description": "CI deploys"}, 201, &nt)
	if !strings.HasPrefix(nt.Token, controller.APITokenPrefix) || !strings.HasPrefix(nt.Token, nt.Prefix) {
		t.Fatalf("token %+v", nt)
	}
	var u pier.User
	e.must("GET", "/v1/auth/whoami", nt.Token, nil, 200, &u)
	if u.Username != "alice" {
		t.Fatalf("token user %+v", u)
	}
	var ts pier.List[pier.APIToken]
	e.must("GET", "/v1/tokens", e.alice, nil, 200, &ts)
	if len(ts.Items) != 1 || strings.Contains(fmt.Sprint(ts), nt.Token) {
		t.Fatalf("tokens %+v", ts)
	}
	e.apiError("POST", "/v1/auth/logout", nt.Token, nil, 400, pier.EINVALID, "tokens:revoke")
	e.apiError("DELETE", fmt.Sprintf("/v1/tokens/%d", nt.ID), e.admin, nil, 404, pier.ENOTFOUND, "")
	e.must("DELETE", fmt.Sprintf("/v1/tokens/%d", nt.ID), e.alice, nil, 204, nil)
	e.apiError("GET", "/v1/auth/whoami", nt.Token, nil, 401, pier.EUNAUTHORIZED, "tokens:create")
}

func TestKeys(t *testing.T) {
	e := newEnv(t)
	pub, fp := testenv.SSHKey(t)
	var k pier.Key
	e.must("POST", "/v1/keys", e.alice, map[string]string{"public_key": pub + " alice@laptop"}, 201, &k)
	if k.Fingerprint != fp || k.Name != "alice@laptop" {
		t.Fatalf("key %+v", k)
	}
	e.apiError("POST", "/v1/keys", e.admin, map[string]string{"public_key": pub}, 409, pier.ECONFLICT, "already registered")
	e.apiError("DELETE", "/v1/keys/"+escape(fp), e.admin, nil, 404, pier.ENOTFOUND, "")
	e.must("DELETE", "/v1/keys/"+escape(fp), e.alice, nil, 204, nil)
	var keys pier.List[pier.Key]
	e.must("GET", "/v1/keys", e.alice, nil, 200, &keys)
	if len(keys.Items) != 0 {
		t.Fatalf("keys %+v", keys)
	}
}

func escape(s string) string {
	return strings.NewReplacer("/", "%2F", "+", "%2B").Replace(s)
}

func TestOpenAPI(t *testing.T) {
	e := newEnv(t)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	e.must("GET", "/v1/openapi.json", "", nil, 200, &doc)
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) < 20 || doc.Paths["/v1/apps/{app}/config"]["patch"] == nil {
		t.Fatalf("openapi %s, %d paths", doc.OpenAPI, len(doc.Paths))
	}
}

// doHeader sends a GET with a raw Authorization header.
func (e *env) doHeader(method, path, authorization string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}
