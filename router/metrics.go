package router

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the router's Prometheus series: per app and status code, so
// that one app's errors or slowness show apart from the others'.
type metrics struct {
	requests *prometheus.CounterVec   // app, code
	duration *prometheus.HistogramVec // app
}

// noApp labels requests for hosts that are no app (404s).
const noApp = "-"

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pier_router_requests_total",
			Help: "Requests the router answered or proxied, by app and HTTP status code.",
		}, []string{"app", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pier_router_request_duration_seconds",
			Help: "Time from a request's arrival at the router to the end of its answer's headers or error page, by app.",
			// From loopback round trips (~100 µs) to slow app answers.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"app"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// codes holds the label values of the usual status codes, so that counting
// a request makes no string.
var codes = func() (c [600]string) {
	for i := 100; i < 600; i++ {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

func codeLabel(code int) string {
	if code < 100 || code >= 600 {
		return "other"
	}
	return codes[code]
}

// done records one request: metrics, and the access log when on. The
// access log leaves out the query string, where tokens and other secrets
// travel.
func (rt *Router) done(r *http.Request, app string, code int, start time.Time, requestID string) {
	rt.record(r.Context(), app, code, time.Since(start), r.Method, r.Host, r.URL.Path, r.RemoteAddr, requestID)
}

// record is done for both paths: the fast path has no *http.Request.
func (rt *Router) record(ctx context.Context, app string, code int, d time.Duration, method, host, path, remote, requestID string) {
	if rt.metrics != nil {
		label := app
		if label == "" {
			label = noApp
		}
		rt.metrics.requests.WithLabelValues(label, codeLabel(code)).Inc()
		rt.metrics.duration.WithLabelValues(label).Observe(d.Seconds())
	}
	if rt.access != nil {
		rt.access.LogAttrs(ctx, slog.LevelInfo, "access",
			slog.String("app", app),
			slog.String("method", method),
			slog.String("host", host),
			slog.String("path", path),
			slog.Int("status", code),
			slog.Duration("took", d),
			slog.String("remote", remote),
			slog.String("request_id", requestID),
		)
	}
}
