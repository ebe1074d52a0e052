package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/postgres/embedded"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clients is the number of concurrent HTTP clients (and pgbench clients).
const clients = 8

// configKeys bounds the keys config:set cycles through: every request sets
// a fresh value, so every request makes a release, but an app's config stays
// at a realistic size (and under pier.ConfigKeysMax).
const configKeys = 50

// seedReleases is how many config releases the apps:info app gets before it
// is measured, so that CurrentRelease looks at an app with some history.
const seedReleases = 200

// apiEnv is one controller on a real HTTP server over a database, with a
// user logged in and apps to work on.
type apiEnv struct {
	dsn    string
	db     *postgres.DB
	srv    *httptest.Server
	client *http.Client
	token  string // session JWT of user "bench"
	user   string
	// configApps[i] is the app client goroutine i changes the config of;
	// infoApp is the app every client reads.
	configApps []string
	infoApp    string
	collab     string // the infoApp's second member
	domain     string // the infoApp's custom domain
}

func newAPIEnv(tb testing.TB, dsn string) *apiEnv {
	tb.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	// The access log is formatted as in production, but thrown away.
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	api, err := controller.New(ctx, controller.Config{Store: db, PublicURL: "http://pier.localhost:8080", Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(api) // 127.0.0.1, a random port
	tb.Cleanup(srv.Close)
	tr := &http.Transport{
		MaxIdleConns:        4 * clients,
		MaxIdleConnsPerHost: 4 * clients,
		IdleConnTimeout:     time.Minute,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	e := &apiEnv{
		dsn: dsn, db: db, srv: srv,
		client: &http.Client{Transport: tr, Timeout: time.Minute},
		user:   "bench", collab: "collab", infoApp: "info-app", domain: "www.example.com",
	}

	boot, err := controller.EnsureBootstrapToken(ctx, db)
	if err != nil || boot == "" {
		tb.Fatalf("bootstrap token: %q, %v", boot, err)
	}
	e.must(tb, "POST", "/v1/auth/register", "", map[string]string{"username": "root", "password": "root password", "bootstrap_token": boot}, 201, nil)
	admin := e.login(tb, "root", "root password")
	// The measured user is an ordinary user who owns the apps: the common case.
	e.must(tb, "POST", "/v1/auth/register", admin, map[string]string{"username": e.user, "password": "bench password"}, 201, nil)
	e.must(tb, "POST", "/v1/auth/register", admin, map[string]string{"username": e.collab, "password": "collab password"}, 201, nil)
	e.token = e.login(tb, e.user, "bench password")

	for i := range clients {
		name := fmt.Sprintf("config-app-%d", i)
		e.must(tb, "POST", "/v1/apps", e.token, map[string]string{"name": name}, 201, nil)
		e.configApps = append(e.configApps, name)
	}
	e.must(tb, "POST", "/v1/apps", e.token, map[string]string{"name": e.infoApp}, 201, nil)
	e.must(tb, "POST", "/v1/apps/"+e.infoApp+"/domains", e.token, map[string]string{"hostname": e.domain}, 201, nil)
	e.must(tb, "POST", "/v1/apps/"+e.infoApp+"/perms", e.token, map[string]string{"username": e.collab}, 201, nil)
	e.must(tb, "PATCH", "/v1/apps/"+e.infoApp+"/formation", e.token, map[string]int{"web": 2, "worker": 1}, 200, nil)
	return e
}

// seed gives the infoApp a history of config releases.
func (e *apiEnv) seed(tb testing.TB, releases int) {
	tb.Helper()
	for i := range releases {
		e.must(tb, "PATCH", "/v1/apps/"+e.infoApp+"/config", e.token,
			map[string]string{fmt.Sprintf("KEY_%d", i%configKeys): fmt.Sprintf("value-%d", i)}, 200, nil)
	}
}

func (e *apiEnv) login(tb testing.TB, user, pw string) string {
	tb.Helper()
	var s pier.Session
	e.must(tb, "POST", "/v1/auth/login", "", map[string]string{"username": user, "password": pw}, 200, &s)
	return s.Token
}

// do sends one request and reads the whole answer.
func (e *apiEnv) do(method, path, token string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, b, err
}

func (e *apiEnv) must(tb testing.TB, method, path, token string, body any, want int, out any) {
	tb.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			tb.Fatal(err)
		}
	}
	status, b, err := e.do(method, path, token, raw)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if status != want {
		tb.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// configSet is one config:set by client goroutine c: a fresh value for one
// of configKeys keys on that client's app, so every call makes a release.
func (e *apiEnv) configSet(c int, n int64) error {
	body := fmt.Sprintf(`{"KEY_%d":"value-%d-%d"}`, n%configKeys, c, n)
	return e.expect("PATCH", "/v1/apps/"+e.configApps[c]+"/config", []byte(body), 200)
}

// appsInfo is one apps:info.
func (e *apiEnv) appsInfo(int, int64) error {
	return e.expect("GET", "/v1/apps/"+e.infoApp, nil, 200)
}

func (e *apiEnv) expect(method, path string, body []byte, want int) error {
	status, b, err := e.do(method, path, e.token, body)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s: status %d, want %d: %.200s", method, path, status, want, b)
	}
	return nil
}

// stats summarises request latencies.
type stats struct {
	n        int
	wall     time.Duration
	p50, p99 time.Duration
}

func (s stats) perSecond() float64 { return float64(s.n) / s.wall.Seconds() }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func summarize(lat []time.Duration, wall time.Duration) stats {
	slices.Sort(lat)
	return stats{n: len(lat), wall: wall, p50: percentile(lat, 50), p99: percentile(lat, 99)}
}

// load runs b.N calls of op from a fixed number of client goroutines and
// reports requests/s, p50 and p99. op gets the goroutine's index and the
// call's sequence number.
func load(b *testing.B, op func(c int, n int64) error) stats {
	b.Helper()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	lat := make([][]time.Duration, clients)
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, b.N/clients+1)
			for {
				n := next.Add(1) - 1
				if n >= int64(b.N) || firstErr.Load() != nil {
					break
				}
				t0 := time.Now()
				err := op(c, n)
				mine = append(mine, time.Since(t0))
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					break
				}
			}
			lat[c] = mine
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	b.StopTimer()
	if p := firstErr.Load(); p != nil {
		b.Fatal(*p)
	}
	s := summarize(slices.Concat(lat...), wall)
	b.ReportMetric(s.perSecond(), "req/s")
	b.ReportMetric(ms(s.p50), "p50-ms")
	b.ReportMetric(ms(s.p99), "p99-ms")
	return s
}

// benchCluster starts a private Postgres cluster with durable settings (not
// testenv's Fast mode: fsync and synchronous_commit stay on, as in
// production) and returns the DSN of a fresh database on it. The cluster is
// destroyed when tb ends.
func benchCluster(tb testing.TB) (string, *embedded.Cluster) {
	tb.Helper()
	if _, err := embedded.FindBinaries(); err != nil {
		tb.Skip(err)
	}
	dir, err := os.MkdirTemp("", "pier-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	c := embedded.New(dir)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Destroy(ctx); err != nil {
			tb.Logf("destroying the bench cluster: %v", err)
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := c.CreateDatabase(ctx, "pier_bench"); err != nil {
		tb.Fatal(err)
	}
	return c.DSN("pier_bench"), c
}

// benchtime is the -benchtime given to go test, as a duration (3s when it
// is a count such as 100x); pgbench runs that long.
func benchtime() time.Duration {
	if f := flag.Lookup("test.benchtime"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			return d
		}
	}
	return 3 * time.Second
}

// BenchmarkAPI measures config:set (PATCH /v1/apps/{app}/config) and
// apps:info (GET /v1/apps/{app}) through HTTP on loopback, clients at a
// time, against a durable Postgres; then runs the same SQL with pgbench at
// the same concurrency on the same database and prints the p99 difference.
func BenchmarkAPI(b *testing.B) {
	dsn, _ := benchCluster(b)
	// PIER_BENCH_POOL_MAX_CONNS sizes the store's connection pool (pgxpool's
	// default is max(4, number of CPUs)), to see what the pool costs.
	if n := os.Getenv("PIER_BENCH_POOL_MAX_CONNS"); n != "" {
		dsn += " pool_max_conns=" + n
	}
	e := newAPIEnv(b, dsn)
	e.seed(b, seedReleases)

	var configSet, appsInfo stats
	b.Run("ConfigSet", func(b *testing.B) { configSet = load(b, e.configSet) })
	b.Run("AppsInfo", func(b *testing.B) { appsInfo = load(b, e.appsInfo) })

	pg, err := newPgbench(e)
	if err != nil {
		fmt.Printf("pgbench comparison skipped: %v\n", err)
		return
	}
	defer pg.close()
	d := benchtime()
	for _, c := range []struct {
		name string
		api  stats
		kind string
	}{
		{"config:set", configSet, "config-set"},
		{"apps:info", appsInfo, "apps-info"},
	} {
		if c.api.n == 0 {
			continue // filtered out by -bench
		}
		pgs, err := pg.run(c.kind, clients, d, 0)
		if err != nil {
			b.Fatalf("pgbench %s: %v", c.name, err)
		}
		fmt.Println(comparison(c.name, c.api, pgs))
		// The API's clients share the store's pool: when it has fewer
		// connections than there are clients, show pgbench at that size too.
		if pool := int(e.db.Pool().Config().MaxConns); pool < clients {
			pgs, err := pg.run(c.kind, pool, d, 0)
			if err != nil {
				b.Fatalf("pgbench %s: %v", c.name, err)
			}
			fmt.Printf("%-10s  (pgbench with %d clients, the store's pool size: p99 %.2f ms, p50 %.2f ms, %.0f tx/s)\n",
				c.name, pool, ms(pgs.p99), ms(pgs.p50), pgs.perSecond())
		}
	}
}

func comparison(name string, api, pg stats) string {
	diff := ms(api.p99) - ms(pg.p99)
	verdict := "ok"
	if diff > 2 {
		verdict = "MISSED"
	}
	return fmt.Sprintf("%-10s  api p99 %.2f ms  pgbench p99 %.2f ms  diff %.2f ms  (target ≤ 2 ms: %s)\n"+
		"%-10s  [%d clients; api %.0f req/s, p50 %.2f ms; pgbench %.0f tx/s, p50 %.2f ms]",
		name, ms(api.p99), ms(pg.p99), diff, verdict,
		"", clients, api.perSecond(), ms(api.p50), pg.perSecond(), ms(pg.p50))
}

// TestSmoke checks, quickly, that the benchmark's requests succeed and that
// the pgbench scripts still run against the current schema (so the
// comparison does not silently rot when the store changes).
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres; skipped with -short")
	}
	e := newAPIEnv(t, testenv.Database(t))
	e.seed(t, 3)
	for c := range clients {
		if err := e.configSet(c, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.appsInfo(0, 0); err != nil {
		t.Fatal(err)
	}
	var info pier.AppInfo
	e.must(t, "GET", "/v1/apps/"+e.infoApp, e.token, nil, 200, &info)
	if info.Release == nil || info.Release.Version != 4 || len(info.Domains) != 1 || len(info.Members) != 2 {
		t.Fatalf("apps:info of the seeded app: %+v", info)
	}

	pg, err := newPgbench(e)
	if err != nil {
		if strings.Contains(err.Error(), "not found") && os.Getenv("CI") != "true" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	defer pg.close()
	for _, kind := range []string{"config-set", "apps-info"} {
		if _, err := pg.run(kind, clients, 0, 2); err != nil {
			t.Fatalf("pgbench %s: %v", kind, err)
		}
	}
	// pgbench's config:set made releases the API can read back.
	e.must(t, "GET", "/v1/apps/"+e.configApps[0], e.token, nil, 200, &info)
	if info.Release.Version < 3 {
		t.Errorf("after pgbench config:set, %s is at release v%d, want ≥ v3", e.configApps[0], info.Release.Version)
	}
}
