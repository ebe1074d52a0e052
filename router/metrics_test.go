package router_test

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pierpaas/pier/router"
)

// TestMetricsAndAccessLog: every request is counted by app and status
// code, and timed, whether the app answered, the router answered for it
// (404, 503) or the backend could not be reached (502); the access log has
// a line for each, without the query string.
func TestMetricsAndAccessLog(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	defer ok.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now

	reg := prometheus.NewRegistry()
	logs := &lockedBuffer{}
	rt := router.New(router.Config{
		Domain:    "pier.localhost",
		Metrics:   reg,
		AccessLog: slog.New(slog.NewJSONHandler(logs, nil)),
		Known:     func(app string) bool { return app == "idle" },
	})
	rt.SetRoutes(map[string][]string{"web": {strings.TrimPrefix(ok.URL, "http://")}, "gone": {dead}})
	front := newFront(t, rt)
	defer front.Close()

	send := func(host, path string) int {
		req, _ := http.NewRequest("GET", front.URL+path, nil)
		req.Host = host
		res, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for range 3 {
		send("web.pier.localhost", "/a?token=s3cret-value")
	}
	send("nothing.pier.localhost", "/")
	send("idle.pier.localhost", "/")
	send("gone.pier.localhost", "/")

	// The router records a request once its answer is out: the client
	// may read it first.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), `"msg":"access"`) < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	count := func(app, code string) float64 {
		return testutil.ToFloat64(counterOf(t, reg, app, code))
	}
	for _, c := range []struct {
		app, code string
		want      float64
	}{{"web", "201", 3}, {"-", "404", 1}, {"idle", "503", 1}, {"gone", "502", 1}} {
		if got := count(c.app, c.code); got != c.want {
			t.Errorf("pier_router_requests_total{app=%q,code=%q} = %v, want %v", c.app, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "pier_router_request_duration_seconds"); n != 4 {
		t.Errorf("%d duration series, want one per app (web, -, idle, gone)", n)
	}

	log := logs.String()
	if strings.Count(log, `"msg":"access"`) != 6 || !strings.Contains(log, `"path":"/a"`) || !strings.Contains(log, `"status":201`) || !strings.Contains(log, `"status":502`) {
		t.Fatalf("access log:\n%s", log)
	}
	if strings.Contains(log, "s3cret") {
		t.Fatalf("the access log holds the query string:\n%s", log)
	}
}

// counterOf finds one series of pier_router_requests_total.
func counterOf(t *testing.T, reg *prometheus.Registry, app, code string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pier_router_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["app"] == app && labels["code"] == code {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, m.GetCounter().GetValue)
			}
		}
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return 0 })
}
