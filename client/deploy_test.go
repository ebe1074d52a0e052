package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

func TestCreateBuildAndLimits(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+strings.TrimSpace(string(b)))
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/apps/myapp/builds" && strings.Contains(string(b), "broken"):
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"error":{"code":"rollout_failed","message":"v4 did not come up: web: 0/1 new processes ready within 5m"}}`)
		case r.URL.Path == "/v1/apps/myapp/builds":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"app":"myapp","version":3,"status":"succeeded","build":{"strategy":"image","image":"nginx:1.27","process_types":{"web":""}}}`)
		default:
			io.WriteString(w, `{"web":{"memory":"512Mi","cpu":"500m"}}`)
		}
	}))
	defer srv.Close()
	c := New(srv.URL, "t")
	ctx := context.Background()

	rel, err := c.CreateBuild(ctx, "myapp", "nginx:1.27", "")
	if err != nil || rel.Version != 3 || rel.Status != pier.ReleaseSucceeded || rel.Build.Strategy != pier.StrategyImage {
		t.Fatalf("CreateBuild: %+v %v", rel, err)
	}
	_, err = c.CreateBuild(ctx, "myapp", "broken:1", "web: ./w\n")
	if !errors.Is(err, pier.ErrRolloutFailed) || pier.ErrorCode(err) != pier.EROLLOUT || !strings.Contains(err.Error(), "0/1 new processes") {
		t.Fatalf("a rollout failure decodes as one: %v", err)
	}
	l, err := c.Limits(ctx, "myapp")
	if err != nil || l["web"].Memory != "512Mi" {
		t.Fatalf("Limits: %v %v", l, err)
	}
	mem := "1Gi"
	if _, err := c.SetLimits(ctx, "myapp", pier.LimitsChange{Memory: map[string]*string{"web": &mem}, CPU: map[string]*string{"web": nil}}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`POST /v1/apps/myapp/builds {"image":"nginx:1.27"}`,
		`POST /v1/apps/myapp/builds {"image":"broken:1","procfile":"web: ./w\n"}`,
		`GET /v1/apps/myapp/limits `,
		`PATCH /v1/apps/myapp/limits {"memory":{"web":"1Gi"},"cpu":{"web":null}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
