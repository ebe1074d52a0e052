package remote_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder"
	"github.com/pierpaas/pier/builder/remote"
	"github.com/pierpaas/pier/controller"
)

// tokens is a service token store holding one token of each scope.
type tokens struct{ byHash map[string]pier.ServiceToken }

func newTokens() (*tokens, map[string]string) {
	t := &tokens{byHash: map[string]pier.ServiceToken{}}
	secrets := map[string]string{}
	for _, scope := range pier.ServiceScopes {
		tok, prefix := controller.NewServiceTokenSecret(scope)
		t.byHash[controller.HashServiceToken(tok)] = pier.ServiceToken{Scope: scope, Prefix: prefix}
		secrets[scope] = tok
	}
	return t, secrets
}

func (t *tokens) CreateServiceToken(context.Context, *pier.ServiceToken, string) error { return nil }
func (t *tokens) ListServiceTokens(context.Context) ([]pier.ServiceToken, error)       { return nil, nil }
func (t *tokens) RevokeServiceToken(context.Context, int64, string) error              { return nil }
func (t *tokens) ServiceTokenByHash(_ context.Context, hash string) (*pier.ServiceToken, error) {
	if st, ok := t.byHash[hash]; ok {
		return &st, nil
	}
	return nil, pier.Errorf(pier.ENOTFOUND, "no such token")
}

// users: ada owns shop and has one key.
type users struct{ created time.Time }

func (u users) UserForKey(_ context.Context, fp string) (*pier.User, error) {
	if fp == "SHA256:ada" {
		return &pier.User{Username: "ada"}, nil
	}
	return nil, pier.Errorf(pier.ENOTFOUND, "no user has this key: add it with `pier keys:add`")
}

// AppAccess answers as the Postgres store does: the app with an empty
// role for anyone who is not a member, ENOTFOUND only for no such app.
func (u users) AppAccess(_ context.Context, app, user string) (*pier.App, string, error) {
	if app != "shop" {
		return nil, "", pier.Errorf(pier.ENOTFOUND, "app %q not found", app)
	}
	a := &pier.App{Name: "shop", Owner: "ada", CreatedAt: u.created}
	if user == "ada" {
		return a, "owner", nil
	}
	return a, "", nil
}

func (u users) FindUser(_ context.Context, name string) (*pier.User, error) {
	if name == "ada" || name == "eve" {
		return &pier.User{Username: name}, nil
	}
	return nil, pier.Errorf(pier.ENOTFOUND, "no user %q", name)
}

// deploys records what the controller was asked to deploy.
type deploys struct {
	mu     sync.Mutex
	got    []controller.BuilderDeploy
	files  []string // the Procfile each one found
	result func(d controller.BuilderDeploy) (*pier.Release, error)
}

func (d *deploys) deploy(_ context.Context, req controller.BuilderDeploy) (*pier.Release, error) {
	b, _ := os.ReadFile(filepath.Join(req.SourceDir, "Procfile"))
	d.mu.Lock()
	d.got = append(d.got, req)
	d.files = append(d.files, string(b))
	d.mu.Unlock()
	req.Log.Write([]byte("-----> Building\n"))
	req.Log.Write([]byte("       step one\n"))
	return d.result(req)
}

// repoWithCommit makes a bare repository holding one commit of a Procfile
// app, and returns it and the commit.
func repoWithCommit(t *testing.T) (string, string) {
	t.Helper()
	work, bare := t.TempDir(), t.TempDir()
	git := func(dir string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(work, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "Procfile"), []byte("web: ./run\n"), 0o644)
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "one")
	git(bare, "init", "-q", "--bare")
	git(work, "push", "-q", bare, "main")
	return bare, git(work, "rev-parse", "HEAD")
}

func setup(t *testing.T) (*httptest.Server, map[string]string, *deploys) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	toks, secrets := newTokens()
	d := &deploys{result: func(controller.BuilderDeploy) (*pier.Release, error) {
		return &pier.Release{App: "shop", Version: 7}, nil
	}}
	srv := httptest.NewServer(controller.BuilderAPI(controller.BuilderAPIConfig{
		Tokens: toks, Store: users{created: time.Date(2026, 11, 30, 12, 0, 0, 5, time.UTC)}, Deploy: d.deploy,
		AppURL: func(app string) string { return "http://" + app + ".pier.test" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	t.Cleanup(srv.Close)
	return srv, secrets, d
}

func client(t *testing.T, url, token string) *remote.Controller {
	t.Helper()
	c, err := remote.New(url, func() (string, error) { return token, nil })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAuthorizer: keys and access are answered by the controller for a
// builder token only; "not found" stays ENOTFOUND, as the builder's
// refusals depend on it.
func TestAuthorizer(t *testing.T) {
	srv, secrets, _ := setup(t)
	ctx := context.Background()
	c := client(t, srv.URL, secrets[pier.ScopeBuilder])
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if u, err := c.UserForKey(ctx, "SHA256:ada"); err != nil || u.Username != "ada" {
		t.Fatalf("UserForKey: %+v %v", u, err)
	}
	if _, err := c.UserForKey(ctx, "SHA256:nobody"); pier.ErrorCode(err) != pier.ENOTFOUND || !strings.Contains(err.Error(), "keys:add") {
		t.Fatalf("unknown key: %v", err)
	}
	a, role, err := c.AppAccess(ctx, "shop", "ada")
	if err != nil || a.Name != "shop" || role != "owner" || a.CreatedAt.Nanosecond() != 5 {
		t.Fatalf("AppAccess: %+v %q %v", a, role, err)
	}
	if _, _, err := c.AppAccess(ctx, "shop", "eve"); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("AppAccess of a stranger: %v", err)
	}
	if _, _, err := c.AppAccess(ctx, "../etc", "ada"); pier.ErrorCode(err) != pier.EINVALID {
		t.Fatalf("AppAccess of a bad name: %v", err)
	}

	for token, want := range map[string]string{
		secrets[pier.ScopeRouter]: pier.EFORBIDDEN,
		"piersvc_builder_nope":    pier.EUNAUTHORIZED,
		"pier_usertoken":          pier.EFORBIDDEN,
	} {
		err := client(t, srv.URL, token).Ping(ctx)
		if pier.ErrorCode(err) != want || !strings.Contains(err.Error(), "--scope builder") {
			t.Errorf("Ping with %.16q: %v, want %s saying how to make a builder token", token, err, want)
		}
	}
	if err := client(t, "http://127.0.0.1:1", secrets[pier.ScopeBuilder]).Ping(ctx); pier.ErrorCode(err) != pier.EUNAVAILABLE {
		t.Errorf("Ping of nobody: %v", err)
	}
	if _, err := remote.New("127.0.0.1:9091", nil); err == nil {
		t.Error("a URL without a scheme was taken")
	}
}

// TestDeploy: the pushed tree reaches the controller whole, the build's
// output comes back to the pusher as it is written, then the release, or
// the failure with its reason.
func TestDeploy(t *testing.T) {
	srv, secrets, d := setup(t)
	ctx := context.Background()
	c := client(t, srv.URL, secrets[pier.ScopeBuilder])
	repo, commit := repoWithCommit(t)
	var log bytes.Buffer
	req := builder.DeployRequest{App: "shop", User: "ada", Repo: repo, Commit: commit, Ref: "refs/heads/main", Log: &log}
	if err := c.Deploy(ctx, req); err != nil {
		t.Fatalf("Deploy: %v\n%s", err, log.String())
	}
	if len(d.got) != 1 || d.got[0].App != "shop" || d.got[0].User != "ada" || d.got[0].Commit != commit || d.files[0] != "web: ./run\n" {
		t.Fatalf("the controller got %+v with Procfile %q", d.got, d.files)
	}
	out := log.String()
	if !strings.HasPrefix(out, "-----> Building\n       step one\n-----> Released v7 in ") || !strings.HasSuffix(out, ": http://shop.pier.test\n") {
		t.Fatalf("the pusher saw:\n%s", out)
	}

	// A failed build: its reason, with its code.
	d.result = func(controller.BuilderDeploy) (*pier.Release, error) {
		return nil, pier.Errorf(pier.EINVALID, "no buildpack detected: add a Procfile")
	}
	log.Reset()
	err := c.Deploy(ctx, req)
	if pier.ErrorCode(err) != pier.EINVALID || pier.ErrorMessage(err) != "no buildpack detected: add a Procfile" {
		t.Fatalf("a failed deploy: %v", err)
	}
	if !strings.Contains(log.String(), "step one") {
		t.Fatalf("the output of a failed build did not reach the pusher:\n%s", log.String())
	}

	// A user who lost the app since the builder checked: no deploy.
	n := len(d.got)
	stranger := req
	stranger.User = "eve"
	if err := c.Deploy(ctx, stranger); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("a deploy for a user without access: %v", err)
	}
	if len(d.got) != n {
		t.Fatal("the controller deployed for a user without access")
	}
	// A router token deploys nothing either.
	if err := client(t, srv.URL, secrets[pier.ScopeRouter]).Deploy(ctx, req); pier.ErrorCode(err) != pier.EFORBIDDEN || len(d.got) != n {
		t.Fatalf("a deploy with a router token: %v", err)
	}

	// The controller goes away mid-deploy: the pusher is told so.
	d.result = func(controller.BuilderDeploy) (*pier.Release, error) {
		srv.CloseClientConnections()
		return nil, errors.New("unreached")
	}
	if err := c.Deploy(ctx, req); pier.ErrorCode(err) != pier.EUNAVAILABLE || !strings.Contains(err.Error(), "pier releases -a shop") {
		t.Fatalf("the controller hung up: %v", err)
	}
}

// TestDeployRefusesBadRequests: what a builder sends is checked before
// anything is deployed.
func TestDeployRefusesBadRequests(t *testing.T) {
	srv, secrets, d := setup(t)
	post := func(query, body string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+controller.BuilderDeployPath+"?"+query, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secrets[pier.ScopeBuilder])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(res.Body)
		return res.StatusCode, b.String()
	}
	commit := strings.Repeat("a", 40)
	for _, c := range []struct{ query, body, want string }{
		{"app=shop&user=ada&commit=HEAD", "", "full git object name"},
		{"app=shop&user=ada&commit=" + commit + ";rm", "", "full git object name"},
		{"app=Shop!&user=ada&commit=" + commit, "", "app name"},
		{"app=shop&user=&commit=" + commit, "", "username"},
		{"app=shop&user=ada&commit=" + commit, "not a tarball", "the source"},
	} {
		code, body := post(c.query, c.body)
		if code != http.StatusBadRequest || !strings.Contains(strings.ToLower(body), c.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.query, code, body, c.want)
		}
	}
	if len(d.got) != 0 {
		t.Fatalf("deployed %+v", d.got)
	}
}
