package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestDatabaseOutage: while the database does not answer, every API call
// is answered 503 with Retry-After and a message naming the cause (never
// 500), /readyz is 503 naming the database, and /healthz stays 200 within
// the grace period (and fails after it). Once the database answers again,
// so does the API, with no restart.
func TestDatabaseOutage(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	var ready struct {
		Status string
		Checks map[string]string
	}
	e.must("GET", "/readyz", "", nil, 200, &ready)
	if ready.Status != "ok" || len(ready.Checks) != 3 || ready.Checks["database"] != "ok" || ready.Checks["migrations"] != "ok" || ready.Checks["scheduler"] != "ok" {
		t.Fatalf("/readyz while up: %+v", ready)
	}
	// A controller whose grace period is over as soon as the database is down.
	impatient, err := controller.New(context.Background(), controller.Config{Store: e.db, DatabaseGrace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	isrv := httptest.NewServer(impatient)
	t.Cleanup(isrv.Close)

	restore := testenv.CutOff(t, e.dsn)
	calls := []struct{ method, path, token string }{
		{"GET", "/v1/apps", e.alice},
		{"GET", "/v1/apps/myapp", e.alice},
		{"PATCH", "/v1/apps/myapp/config", e.alice},
		{"POST", "/v1/auth/login", ""},
		{"GET", "/v1/auth/whoami", e.admin},
	}
	for _, c := range calls {
		var body any
		switch c.path {
		case "/v1/apps/myapp/config":
			body = map[string]string{"A": "1"}
		case "/v1/auth/login":
			body = map[string]string{"username": "alice", "password": "alice's password"}
		}
		req, err := http.NewRequest(c.method, e.srv.URL+c.path, jsonBody(t, body))
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb struct{ Error pier.Error }
		json.NewDecoder(res.Body).Decode(&eb)
		res.Body.Close()
		if res.StatusCode != 503 || res.Header.Get("Retry-After") != "2" || eb.Error.Code != pier.EUNAVAILABLE || eb.Error.Message != pier.OutageMessage {
			t.Errorf("%s %s during the outage: %d Retry-After %q %+v", c.method, c.path, res.StatusCode, res.Header.Get("Retry-After"), eb.Error)
		}
	}
	code, b := e.do("GET", "/readyz", "", nil)
	ready.Checks = nil
	if json.Unmarshal(b, &ready); code != 503 || ready.Status != "unavailable" || ready.Checks["database"] != "not answering" || ready.Checks["scheduler"] != "ok" {
		t.Errorf("/readyz during the outage: %d %s", code, b)
	}
	if code, b := e.do("GET", "/healthz", "", nil); code != 200 {
		t.Errorf("/healthz within the grace period: %d %s", code, b)
	}
	// Even with a token: probes read no credentials.
	if code, b := e.do("GET", "/healthz", e.alice, nil); code != 200 {
		t.Errorf("/healthz with a token within the grace period: %d %s", code, b)
	}
	eventually(t, "/healthz fails once the grace period is over", func() (bool, string) {
		res, err := http.Get(isrv.URL + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		defer res.Body.Close()
		var hb struct{ Checks map[string]string }
		json.NewDecoder(res.Body).Decode(&hb)
		return res.StatusCode == 503 && strings.Contains(hb.Checks["database"], "longer than the grace period"), res.Status
	})

	restore()
	eventually(t, "the API answers again", func() (bool, string) {
		code, b := e.do("GET", "/v1/apps/myapp", e.alice, nil)
		return code == 200, string(b)
	})
	e.must("GET", "/readyz", "", nil, 200, nil)
	e.must("GET", "/healthz", "", nil, 200, nil)
	// The monitor sees the database back within its next ping.
	eventually(t, "/healthz answers 200 after the outage", func() (bool, string) {
		res, err := http.Get(isrv.URL + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == 200, res.Status
	})
}

// TestReadyzWaitsForTheApps: with a scheduler, /readyz names the
// scheduler check until the apps have been converged since start.
func TestReadyzWaitsForTheApps(t *testing.T) {
	e := newEnvWith(t, &recordingScheduler{})
	code, b := e.do("GET", "/readyz", "", nil)
	if code != 503 || !strings.Contains(string(b), `"scheduler":"the apps have not all been converged since start"`) || !strings.Contains(string(b), `"database":"ok"`) {
		t.Fatalf("/readyz before the converge at start: %d %s", code, b)
	}
	if err := e.rec.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.must("GET", "/readyz", "", nil, 200, nil)
}

// TestMarkRetriedDuringOutage: a release whose processes came up while the
// database stopped answering is marked succeeded once it answers again,
// rather than left pending for good.
func TestMarkRetriedDuringOutage(t *testing.T) {
	sched := &gatedScheduler{}
	e := newEnvWith(t, sched)
	ctx := context.Background()
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	if _, err := e.rec.Deploy(ctx, fakeStrategy{res: webWorker}, controller.DeployRequest{App: "myapp", User: "alice", Commit: "c0ffee1234"}); err != nil {
		t.Fatal(err)
	}
	e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"A": "1"}, 200, nil)
	// The rollback's processes come up; just then the database goes away
	// for a second.
	sched.setGate(func(d pier.Deployment) error {
		if d.Release.Version == 4 {
			restore := testenv.CutOff(t, e.dsn)
			time.AfterFunc(time.Second, restore)
		}
		return nil
	})
	var rel pier.Release
	e.must("POST", "/v1/apps/myapp/releases/rollback", e.alice, nil, 201, &rel)
	sched.setGate(nil)
	eventually(t, "the API answers after the outage", func() (bool, string) {
		code, b := e.do("GET", "/v1/apps/myapp", e.alice, nil)
		return code == 200, string(b)
	})
	rels := e.releases("myapp")
	if rels[0].Version != 4 || rels[0].Status != pier.ReleaseSucceeded {
		t.Fatalf("the rollback's release after the outage: %+v (answered %+v)", rels[0], rel)
	}
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s (last: %s)", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsonBody(t *testing.T, v any) *strings.Reader {
	if v == nil {
		return strings.NewReader("")
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReader(string(b))
}
