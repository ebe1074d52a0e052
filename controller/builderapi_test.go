package controller_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
)

// Finding 9 of issue 14: the builder API took AppAccess's error alone for a
// "yes", and the Postgres store answers a non-member (or an unknown user)
// with the app and an empty role, no error; the tests' fake store answered
// ENOTFOUND and hid it. Against the real store: alice owns shop; mallory,
// a user with no part in it, and a name that is no user at all, get
// neither access nor a deploy; the owner, a collaborator and an admin do.
func TestBuilderAPIRefusesNonMembers(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "shop"}, 201, nil)
	for _, u := range []string{"mallory", "carol"} {
		e.must("POST", "/v1/auth/register", e.admin, map[string]string{"username": u, "password": u + "'s password"}, 201, nil)
	}
	e.must("POST", "/v1/apps/shop/perms", e.alice, map[string]string{"username": "carol"}, 201, nil)
	var tok pier.NewServiceToken
	e.must("POST", "/v1/service-tokens", e.admin, map[string]string{"scope": pier.ScopeBuilder}, 201, &tok)

	var deploys atomic.Int32
	srv := httptest.NewServer(controller.BuilderAPI(controller.BuilderAPIConfig{
		Tokens: e.db, Store: e.db,
		Deploy: func(context.Context, controller.BuilderDeploy) (*pier.Release, error) {
			deploys.Add(1)
			return &pier.Release{App: "shop", Version: 2}, nil
		},
		AppURL: func(app string) string { return "http://" + app + ".pier.test" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	defer srv.Close()
	// The source of a deploy: a gzipped tarball with nothing in it.
	var src bytes.Buffer
	zw := gzip.NewWriter(&src)
	tar.NewWriter(zw).Close()
	zw.Close()
	emptySource := src.Bytes()
	call := func(method, path, user string) (int, string) {
		q := url.Values{"app": {"shop"}, "user": {user}, "commit": {strings.Repeat("a", 40)}}
		req, _ := http.NewRequest(method, srv.URL+path+"?"+q.Encode(), bytes.NewReader(emptySource))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, u := range []string{"mallory", "nobody"} {
		if code, body := call("GET", controller.BuilderAccessPath, u); code != 404 {
			t.Errorf("access for %s, not a member: %d %s", u, code, body)
		}
		if code, body := call("POST", controller.BuilderDeployPath, u); code != 404 {
			t.Errorf("deploy for %s, not a member: %d %s", u, code, body)
		}
	}
	if n := deploys.Load(); n != 0 {
		t.Fatalf("%d deploys for non-members", n)
	}
	for u, want := range map[string]string{"alice": pier.RoleOwner, "carol": pier.RoleCollaborator, "root": ""} {
		code, body := call("GET", controller.BuilderAccessPath, u)
		var a controller.BuilderAccess
		if code != 200 || json.Unmarshal([]byte(body), &a) != nil || a.App.Name != "shop" || a.Role != want {
			t.Errorf("access for %s: %d %s, want role %q", u, code, body, want)
		}
		// The deploy gets past the access check and reaches Deploy.
		before := deploys.Load()
		if code, body := call("POST", controller.BuilderDeployPath, u); code != 200 || deploys.Load() != before+1 {
			t.Errorf("deploy for %s: %d %s", u, code, body)
		}
	}
}
