package controller_test

import (
	"context"
	"io"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
)

// builderStrategy records the builder it was asked to build with.
type builderStrategy struct{ got *string }

func (builderStrategy) Name() string { return "fake" }
func (s builderStrategy) Build(_ context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	*s.got = req.Builder
	return webBuild, nil
}

func TestAppBuilder(t *testing.T) {
	e := newEnvWith(t, &recordingScheduler{})
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)

	var b pier.BuilderSetting
	e.must("GET", "/v1/apps/myapp/builder", e.alice, nil, 200, &b)
	if b.Builder != "" {
		t.Fatalf("a new app has builder %q", b.Builder)
	}
	e.must("PUT", "/v1/apps/myapp/builder", e.alice, map[string]string{"builder": "heroku/builder:24"}, 200, &b)
	if b.Builder != "heroku/builder:24" {
		t.Fatalf("set: %+v", b)
	}
	e.must("GET", "/v1/apps/myapp/builder", e.alice, nil, 200, &b)
	if b.Builder != "heroku/builder:24" {
		t.Fatalf("after set: %+v", b)
	}
	// Bad references are refused and change nothing.
	e.apiError("PUT", "/v1/apps/myapp/builder", e.alice, map[string]string{"builder": "Heroku/Builder"}, 400, pier.EINVALID, "lowercase")
	e.apiError("PUT", "/v1/apps/myapp/builder", e.alice, map[string]string{"builder": "a b"}, 400, pier.EINVALID, "builder")
	e.apiError("PUT", "/v1/apps/myapp/builder", e.alice, map[string]any{"builder": 3}, 400, pier.EINVALID, "")
	e.apiError("PUT", "/v1/apps/nope/builder", e.alice, map[string]string{"builder": "x/y"}, 404, pier.ENOTFOUND, "nope")
	e.must("GET", "/v1/apps/myapp/builder", e.alice, nil, 200, &b)
	if b.Builder != "heroku/builder:24" {
		t.Fatalf("after refused sets: %+v", b)
	}
	// Only members may choose.
	e.must("POST", "/v1/auth/register", e.admin, map[string]string{"username": "mallory", "password": "mallory's password"}, 201, nil)
	mallory := e.login("mallory", "mallory's password")
	code, _ := e.do("PUT", "/v1/apps/myapp/builder", mallory, map[string]string{"builder": "evil/builder"})
	if code != 403 && code != 404 {
		t.Fatalf("a non-member set the builder: %d", code)
	}

	// The next push is built with it.
	var got string
	r := controller.NewReconciler(e.db, &recordingScheduler{}, nil)
	if _, err := r.Deploy(context.Background(), builderStrategy{&got}, controller.DeployRequest{App: "myapp", User: "alice", Commit: "1a2b3c4d5e", Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if got != "heroku/builder:24" {
		t.Fatalf("built with builder %q", got)
	}

	// Back to the default.
	e.must("PUT", "/v1/apps/myapp/builder", e.alice, map[string]string{"builder": ""}, 200, &b)
	e.must("GET", "/v1/apps/myapp/builder", e.alice, nil, 200, &b)
	if b.Builder != "" {
		t.Fatalf("after unset: %+v", b)
	}
	var events pier.List[pier.Event]
	e.must("GET", "/v1/apps/myapp/events", e.alice, nil, 200, &events)
	n := 0
	for _, ev := range events.Items {
		if ev.Action == "builder.set" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d builder.set events, want 2", n)
	}
}
