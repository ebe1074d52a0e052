package bench

// N apps × 3 web replicas on Kubernetes, from the API request to all Ready,
// through Pier (the HTTP API in process, Postgres, the reconciler and the
// Kubernetes scheduler) against its floor: the same objects written
// directly with client-go on the same cluster, with the same client rate
// limits and the same concurrency. BenchmarkKubeApps measures; the test
// runs the same code with 50 apps and checks what it measures: that both
// sides end with the same objects, Ready, and that Pier's scheduler sends
// no GET or LIST once it is in steady state. See README.md.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	"k8s.io/client-go/informers"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/scheduler/kubernetes"
)

// What every app runs, on both sides.
const (
	kubeReplicas = 3
	kubeImage    = "registry.example/bench/app:v1"
	// kubeRelease is the release of an app's first build: v1 is the
	// "Initial release" that apps:create makes, without a build.
	kubeRelease = 2
)

// kubeOptions size a run. The environment overrides the defaults:
// PIER_BENCH_KUBE_APPS, PIER_BENCH_KUBE_WORKERS and PIER_BENCH_KUBE_QPS
// (the client rate limit of both sides; burst twice that).
type kubeOptions struct {
	apps    int // per side
	workers int // apps in flight at once, on either side
	qps     float32
	burst   int
}

func kubeOptionsFromEnv(tb testing.TB, apps int) kubeOptions {
	tb.Helper()
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			tb.Fatalf("%s=%q: want a number above 1", name, v)
		}
		return n
	}
	o := kubeOptions{
		apps:    num("PIER_BENCH_KUBE_APPS", apps),
		workers: num("PIER_BENCH_KUBE_WORKERS", 32),
		// Pier's own defaults (kubernetes.DefaultQPS, DefaultBurst):
		// what pierd runs with, and 20 times client-go's.
		qps: float32(num("PIER_BENCH_KUBE_QPS", kubernetes.DefaultQPS)),
	}
	o.burst = 2 * int(o.qps)
	return o
}

// BenchmarkKubeApps deploys N apps (PIER_BENCH_KUBE_APPS, 1000) × 3 web
// replicas through Pier, from the first API request until every
// builds:create has answered (each answers once its rollout is
// available), and N apps' same objects applied directly with client-go
// until every Deployment is Ready; it prints both times and their ratio
// (target: ≤ 1.2×). Each iteration uses fresh apps on the same cluster.
func BenchmarkKubeApps(b *testing.B) {
	k := testenv.KubeCluster(b)
	o := kubeOptionsFromEnv(b, 1000)
	var pierSum, floorSum time.Duration
	for range b.N {
		r := runKubeApps(b, k, o, false)
		pierSum += r.pier.wall
		floorSum += r.floor.wall
		fmt.Print(r.summary(o))
	}
	n := float64(b.N)
	b.ReportMetric(float64(pierSum.Nanoseconds())/n, "ns/op")
	b.ReportMetric(pierSum.Seconds()/n, "pier-s")
	b.ReportMetric(floorSum.Seconds()/n, "floor-s")
	b.ReportMetric(pierSum.Seconds()/floorSum.Seconds(), "ratio")
}

// TestKubeAppsAtScale runs the benchmark's code with 50 apps and checks
// it: every app of both sides is Ready with the right image and replicas,
// the floor wrote the same objects as Pier, and, in steady state, Pier's
// scheduler sends no GET or LIST while the API lists every app's
// processes. Times are logged, never asserted.
func TestKubeAppsAtScale(t *testing.T) {
	k := testenv.KubeCluster(t) // skips with -short (not with CI=true)
	o := kubeOptionsFromEnv(t, 50)
	o.apps = 50 // not the benchmark's PIER_BENCH_KUBE_APPS
	r := runKubeApps(t, k, o, true)
	t.Log("\n" + r.summary(o))
	t.Logf("Pier's scheduler, requests by kind since it started: %s", r.stack.reqs.total())
	t.Logf("the floor's clients, requests by kind during its runs: %s", r.floor.reqs)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := adminClient(t, k)
	for _, apps := range [][]string{r.pier.apps, r.floor.apps} {
		if err := checkReady(ctx, admin, apps); err != nil {
			t.Fatal(err)
		}
	}
	if err := sameObjects(ctx, admin, r.pier.apps[0], r.floor.apps[0]); err != nil {
		t.Errorf("the floor does not write what Pier writes: %v", err)
	}
	// The same objects in as many writes: a write the floor does not send
	// (an object written again because a cache lagged) is Pier's waste.
	if pw, fw := r.pier.reqs.writes(), r.floor.reqs.writes(); pw > fw {
		t.Errorf("Pier's scheduler sent %d writes for %d apps, the floor %d for the same objects", pw, o.apps, fw)
	}

	// Steady state: nothing changes, and users look at their apps. The
	// API's process listing calls Scheduler.Processes, which must answer
	// from the informers' caches.
	const window = 10 * time.Second
	_, runReads := r.stack.reqs.window() // since the scheduler started
	t.Logf("Pier's scheduler read the API server during the run with: %v", runReads)
	r.stack.reqs.reset()
	lists := 0
	for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(time.Second) {
		for _, app := range r.pier.apps {
			ps, err := r.stack.api.Processes(ctx, app)
			if err != nil {
				t.Fatalf("ps %s: %v", app, err)
			}
			if up := upOfRelease(ps.Items, kubeRelease); up != kubeReplicas {
				t.Fatalf("ps %s: %d web processes of v%d up, want %d: %+v", app, up, kubeRelease, kubeReplicas, ps.Items)
			}
			lists++
		}
	}
	counts, reads := r.stack.reqs.window()
	t.Logf("steady state, %s with %d apps (%d process listings through the API): requests by kind: %s", window, len(r.pier.apps), lists, counts)
	if len(reads) > 0 {
		t.Errorf("Pier's scheduler read the API server %d times in steady state (want 0 GET, LIST or watch-list): %v", len(reads), reads)
	}
}

func upOfRelease(ps []pier.Process, release int) int {
	n := 0
	for _, p := range ps {
		if p.Type == "web" && p.Release == release && p.State == pier.ProcessUp {
			n++
		}
	}
	return n
}

// kubeRun is what runKubeApps measured.
type kubeRun struct {
	pier, floor kubeSide
	stack       *pierStack // Pier, still running if runKubeApps was asked to keep it
}

// kubeSide is one side's measurements, summed over its two blocks.
type kubeSide struct {
	apps []string
	wall time.Duration
	lat  []time.Duration // per app, sorted
	reqs requestCounts   // of the side's Kubernetes client
	cpu  cpuUse
}

// runKubeApps deploys o.apps fresh apps through Pier and as many directly
// (the floor), on the same cluster, in four blocks of half the apps each:
// floor, Pier, Pier, floor. Each block's apps stay (deleting thousands of
// pods is more work for the cluster than leaving them), so the cluster
// grows and every block costs a little more than the one before (the
// control plane's caches and heaps grow): ABBA gives both sides the same
// share of that drift. The cluster settles before each block. keepPier
// keeps Pier's scheduler running to the end; otherwise it stops after its
// blocks, as its informers would watch the floor's objects (they carry
// Pier's labels) on the floor's time.
func runKubeApps(tb testing.TB, k *testenv.Kube, o kubeOptions, keepPier bool) *kubeRun {
	tb.Helper()
	admin := adminClient(tb, k)
	id := randomID(tb)
	r := &kubeRun{}
	for i := range o.apps {
		// "kb<id>-p-0001": valid app names, fresh for every run.
		r.pier.apps = append(r.pier.apps, fmt.Sprintf("kb%s-p-%04d", id, i))
		r.floor.apps = append(r.floor.apps, fmt.Sprintf("kb%s-f-%04d", id, i))
	}
	tb.Cleanup(func() { deleteNamespaces(admin, append(r.pier.apps, r.floor.apps...)) })

	// Generous: each app's wait is bounded by the rollout timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	block := func(s *kubeSide, apps []string, reqs *requestCounter, deploy func(context.Context, string) error, dirs ...string) {
		quiesce(ctx, tb, k)
		before, cpu := reqs.total(), readCPU(dirs...)
		wall, lat, err := forEachApp(ctx, apps, o.workers, deploy)
		if err != nil {
			tb.Fatal(err)
		}
		s.cpu = s.cpu.plus(readCPU(dirs...).minus(cpu))
		s.reqs = s.reqs.plus(reqs.total().minus(before))
		s.wall += wall
		s.lat = append(s.lat, lat...)
	}
	floorBlock := func(apps []string) {
		f := startFloor(tb, k, o)
		defer f.close()
		block(&r.floor, apps, f.reqs, f.deploy, k.Dir)
	}
	half := o.apps / 2
	floorBlock(r.floor.apps[:half])
	r.stack = startPier(tb, k, o)
	block(&r.pier, r.pier.apps[:half], r.stack.reqs, r.stack.deploy, k.Dir, r.stack.pgDir)
	block(&r.pier, r.pier.apps[half:], r.stack.reqs, r.stack.deploy, k.Dir, r.stack.pgDir)
	if !keepPier {
		r.stack.close()
	}
	floorBlock(r.floor.apps[half:])
	slices.Sort(r.pier.lat)
	slices.Sort(r.floor.lat)
	return r
}

func (r *kubeRun) summary(o kubeOptions) string {
	var b strings.Builder
	ratio := r.pier.wall.Seconds() / r.floor.wall.Seconds()
	verdict := "ok"
	if ratio > 1.2 {
		verdict = "MISSED"
	}
	fmt.Fprintf(&b, "%d apps × %d replicas per side, %d at a time, client QPS %.0f burst %d (both sides), order floor-Pier-Pier-floor\n",
		o.apps, kubeReplicas, o.workers, o.qps, o.burst)
	fmt.Fprintf(&b, "                 all Ready   per app p50   per app max   requests per app\n")
	for _, side := range []struct {
		name string
		s    kubeSide
	}{{"Pier", r.pier}, {"client-go", r.floor}} {
		fmt.Fprintf(&b, "  %-12s %9.2f s   %9.2f s   %9.2f s   %.1f writes, %.2f reads\n", side.name, side.s.wall.Seconds(),
			percentile(side.s.lat, 50).Seconds(), percentile(side.s.lat, 100).Seconds(),
			float64(side.s.reqs.writes())/float64(o.apps), float64(side.s.reqs.reads())/float64(o.apps))
	}
	st := r.stack.steps
	fmt.Fprintf(&b, "  Pier per app, p50: apps:create %.3f s; scale %.3f s (Apply %.3f s); builds:create %.3f s (Apply %.3f s, Apply after the release %.3f s)\n",
		st.p50("apps:create").Seconds(), st.p50("scale").Seconds(), st.p50(applySteps[0]).Seconds(),
		st.p50("builds:create").Seconds(), st.p50(applySteps[1]).Seconds(), st.p50(applySteps[2]).Seconds())
	fmt.Fprintf(&b, "  CPU seconds (%d cores), Pier's blocks: %s\n", runtime.NumCPU(), r.pier.cpu)
	fmt.Fprintf(&b, "  CPU seconds, client-go's blocks: %s\n", r.floor.cpu)
	fmt.Fprintf(&b, "  ratio %.2f× (target ≤ 1.20×): %s", ratio, verdict)
	if r.pier.cpu.ok && r.floor.cpu.ok {
		// Less sensitive than the times to what else the machine runs.
		fmt.Fprintf(&b, "; CPU time of the processes above: %.2f×", r.pier.cpu.sum().Seconds()/r.floor.cpu.sum().Seconds())
	}
	b.WriteString("\n")
	return b.String()
}

// forEachApp runs do for every app, workers at a time, and returns the
// time until the last one returned and each one's own time, sorted. The
// first error stops the rest.
func forEachApp(ctx context.Context, apps []string, workers int, do func(context.Context, string) error) (time.Duration, []time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan string)
	var (
		mu       sync.Mutex
		firstErr error
		lat      []time.Duration
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range min(workers, len(apps)) {
		wg.Go(func() {
			for app := range next {
				t := time.Now()
				err := do(ctx, app)
				mu.Lock()
				lat = append(lat, time.Since(t))
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", app, err)
					cancel()
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, app := range apps {
		select {
		case next <- app:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	return elapsed, lat, firstErr
}

// pierStack is Pier as `pierd --scheduler=kubernetes` runs it, in this
// process: the HTTP API on loopback over a real Postgres, the reconciler
// and the Kubernetes scheduler, driven with the Go client as the CLI
// drives it.
type pierStack struct {
	reqs  *requestCounter // every request of the scheduler
	api   *client.Client  // logged in as an ordinary user, who owns the apps
	steps *stepTimes      // where each app's time goes
	pgDir string          // where Postgres runs, if known: for its CPU time
	close func()
}

func startPier(tb testing.TB, k *testenv.Kube, o kubeOptions) *pierStack {
	tb.Helper()
	ctx := context.Background()
	dsn := testenv.Database(tb)
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	log := benchLogger()
	rc := rest.CopyConfig(k.Config)
	rc.QPS, rc.Burst = o.qps, o.burst
	reqs := countRequests(rc)
	sched, err := kubernetes.New(kubernetes.Config{RESTConfig: rc, QPS: o.qps, Burst: o.burst, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	steps := &stepTimes{d: map[string][]time.Duration{}}
	rec := controller.NewReconciler(db, &timedScheduler{sched, steps, map[string]int{}}, log)
	// As pierd runs it: what is deleted behind Pier's back comes back.
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		rec.Watch(watchCtx)
	}()
	api, err := controller.New(ctx, controller.Config{
		Store: db, Logger: log, PublicURL: "http://pier.localhost:8080", Reconciler: rec,
	})
	if err != nil {
		stopWatch()
		<-watched
		sched.Close()
		tb.Fatal(err)
	}
	srv := httptest.NewServer(api)
	var once sync.Once
	p := &pierStack{reqs: reqs, steps: steps, pgDir: postgresDir(dsn), close: func() {
		once.Do(func() {
			srv.Close()
			stopWatch()
			<-watched
			sched.Close()
		})
	}}
	tb.Cleanup(p.close)

	// One keep-alive connection per worker; no client timeout beyond the
	// context: builds:create answers when the rollout is available.
	tr := client.NewTransport()
	tr.MaxIdleConnsPerHost = o.workers
	h := &http.Client{Transport: tr}
	tb.Cleanup(tr.CloseIdleConnections)
	anon := client.New(srv.URL, "", client.WithHTTPClient(h))
	boot, err := controller.EnsureBootstrapToken(ctx, db)
	if err != nil {
		tb.Fatal(err)
	}
	const pw = "kube bench password"
	if _, err := anon.Register(ctx, client.RegisterRequest{Username: "root", Password: pw, BootstrapToken: boot}); err != nil {
		tb.Fatal(err)
	}
	root, err := anon.Login(ctx, "root", pw)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := client.New(srv.URL, root.Token, client.WithHTTPClient(h)).Register(ctx, client.RegisterRequest{Username: "bench", Password: pw}); err != nil {
		tb.Fatal(err)
	}
	s, err := anon.Login(ctx, "bench", pw)
	if err != nil {
		tb.Fatal(err)
	}
	p.api = client.New(srv.URL, s.Token, client.WithHTTPClient(h), client.WithTimeout(0))
	return p
}

// deploy is what a user does for a new app: apps:create, scale web=3
// (recorded before the first build), builds:create IMAGE, which answers
// once the release's processes are available.
func (p *pierStack) deploy(ctx context.Context, app string) error {
	t := time.Now()
	if _, err := p.api.CreateApp(ctx, app); err != nil {
		return err
	}
	t = p.steps.since("apps:create", t)
	if _, err := p.api.Scale(ctx, app, pier.Formation{"web": kubeReplicas}); err != nil {
		return err
	}
	t = p.steps.since("scale", t)
	rel, err := p.api.CreateBuild(ctx, app, kubeImage, "")
	if err != nil {
		return err
	}
	p.steps.since("builds:create", t)
	if rel.Version != kubeRelease || rel.Status != pier.ReleaseSucceeded {
		return fmt.Errorf("builds:create made v%d (%s), want v%d succeeded", rel.Version, rel.Status, kubeRelease)
	}
	return nil
}

// benchLogger formats every line as production does, and shows warnings
// and errors.
func benchLogger() *slog.Logger {
	return slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(io.Discard, nil),
		slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}),
	))
}

// postgresDir is the directory of an embedded cluster's socket dir and
// data dir (postgres/embedded), where its processes run; "" for another
// server.
func postgresDir(dsn string) string {
	m := regexp.MustCompile(`host='([^']+)/run'`).FindStringSubmatch(dsn)
	if m == nil {
		return ""
	}
	return m[1] + "/"
}

// stepTimes are the durations of each step of the apps' deploys.
type stepTimes struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

// since records the time from start to now as one of step, and returns now.
func (s *stepTimes) since(step string, start time.Time) time.Time {
	now := time.Now()
	s.mu.Lock()
	s.d[step] = append(s.d[step], now.Sub(start))
	s.mu.Unlock()
	return now
}

// p50 is the median of step.
func (s *stepTimes) p50(step string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := slices.Sorted(slices.Values(s.d[step]))
	return percentile(d, 50)
}

// timedScheduler times the scheduler's Apply calls, named by their place
// in an app's deploy: scale's (no build yet: the namespace), then the
// build's rollout, then the converge that follows the release. (Nothing
// is deleted here, so Reconciler.Watch converges nothing in between.)
type timedScheduler struct {
	*kubernetes.Scheduler
	steps *stepTimes
	calls map[string]int // by app; under steps.mu
}

var applySteps = []string{"Apply at scale", "Apply of the build", "Apply after the release"}

func (s *timedScheduler) Apply(ctx context.Context, d pier.Deployment) error {
	s.steps.mu.Lock()
	n := s.calls[d.App]
	s.calls[d.App]++
	s.steps.mu.Unlock()
	t := time.Now()
	err := s.Scheduler.Apply(ctx, d)
	if n < len(applySteps) {
		s.steps.since(applySteps[n], t)
	}
	return err
}

// kubeFloor writes an app's objects as Pier's scheduler does, with
// client-go and nothing else, and waits for its Deployment to be Ready, woken
// by a Deployment informer (as Pier's scheduler is), never polling.
type kubeFloor struct {
	cs   k8s.Interface
	reqs *requestCounter
	stop chan struct{}
	inf  informers.SharedInformerFactory

	mu    sync.Mutex
	ready map[string]chan struct{} // namespace → closed once its web Deployment is Ready
}

func startFloor(tb testing.TB, k *testenv.Kube, o kubeOptions) *kubeFloor {
	tb.Helper()
	rc := rest.CopyConfig(k.Config)
	rc.QPS, rc.Burst = o.qps, o.burst
	f := &kubeFloor{reqs: countRequests(rc), stop: make(chan struct{}), ready: map[string]chan struct{}{}}
	var err error
	if f.cs, err = k8s.NewForConfig(rc); err != nil {
		tb.Fatal(err)
	}
	f.inf = informers.NewSharedInformerFactoryWithOptions(f.cs, 0,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.LabelSelector = kubernetes.LabelManagedBy + "=pier"
		}))
	check := func(obj any) {
		if dep, ok := obj.(*appsv1.Deployment); ok && deploymentReady(dep) {
			f.mu.Lock()
			if ch := f.ready[dep.Namespace]; ch != nil {
				close(ch)
				delete(f.ready, dep.Namespace)
			}
			f.mu.Unlock()
		}
	}
	if _, err := f.inf.Apps().V1().Deployments().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    check,
		UpdateFunc: func(_, obj any) { check(obj) },
	}); err != nil {
		tb.Fatal(err)
	}
	f.inf.Start(f.stop)
	for typ, ok := range f.inf.WaitForCacheSync(f.stop) {
		if !ok {
			tb.Fatalf("floor: %v cache did not sync", typ)
		}
	}
	return f
}

func (f *kubeFloor) close() {
	close(f.stop)
	f.inf.Shutdown()
}

func deploymentReady(dep *appsv1.Deployment) bool {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	st := dep.Status
	return st.ObservedGeneration >= dep.Generation && st.Replicas == want &&
		st.UpdatedReplicas == want && st.ReadyReplicas == want && st.AvailableReplicas == want
}

// deploy writes what Pier's Apply writes for a new app, in the same order
// (namespace, config Secret, Deployment, Service), and waits until the
// Deployment is Ready.
func (f *kubeFloor) deploy(ctx context.Context, app string) error {
	ns := kubernetes.Namespace(app)
	ready := make(chan struct{})
	f.mu.Lock()
	f.ready[ns] = ready
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.ready, ns)
		f.mu.Unlock()
	}()

	opts := metav1.ApplyOptions{FieldManager: kubernetes.FieldManager, Force: true}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: floorLabels(app, "", false)}}
	if _, err := f.cs.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{FieldManager: kubernetes.FieldManager}); err != nil {
		return err
	}
	if _, err := f.cs.CoreV1().Secrets(ns).Apply(ctx, floorSecret(app), opts); err != nil {
		return err
	}
	if _, err := f.cs.AppsV1().Deployments(ns).Apply(ctx, floorDeployment(app), opts); err != nil {
		return err
	}
	if _, err := f.cs.CoreV1().Services(ns).Apply(ctx, floorService(app), opts); err != nil {
		return err
	}
	if _, err := f.cs.NetworkingV1().NetworkPolicies(ns).Apply(ctx, floorNetworkPolicy(app), opts); err != nil {
		return err
	}
	// Pier's own bound on a rollout.
	timer := time.NewTimer(kubernetes.DefaultRolloutTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return nil
	case <-timer.C:
		return fmt.Errorf("the web Deployment was not Ready within %s", kubernetes.DefaultRolloutTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The floor's objects are those of scheduler/kubernetes/objects.go for an
// image build (no Procfile: web runs the image's entrypoint), no config,
// no limits, and Pier's defaults (port, grace period, rollout timeout).
// sameObjects checks that they have not drifted apart.

func floorLabels(app, typ string, release bool) map[string]string {
	l := map[string]string{
		kubernetes.LabelName:      app,
		kubernetes.LabelPartOf:    "pier",
		kubernetes.LabelManagedBy: "pier",
		kubernetes.LabelApp:       app,
	}
	if release {
		l[kubernetes.LabelRelease] = "v" + strconv.Itoa(kubeRelease)
	}
	if typ != "" {
		l[kubernetes.LabelProcessType] = typ
	}
	return l
}

func floorSecret(app string) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret("config-v"+strconv.Itoa(kubeRelease), kubernetes.Namespace(app)).
		WithLabels(floorLabels(app, "", true)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{})
}

func floorDeployment(app string) *appsv1ac.DeploymentApplyConfiguration {
	port := int32(kubernetes.DefaultPort)
	c := corev1ac.Container().
		WithName("web").
		WithImage(kubeImage).
		WithEnvFrom(corev1ac.EnvFromSource().WithSecretRef(corev1ac.SecretEnvSource().WithName("config-v" + strconv.Itoa(kubeRelease)))).
		WithEnv(corev1ac.EnvVar().WithName("PORT").WithValue(strconv.Itoa(kubernetes.DefaultPort))).
		WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(port).WithProtocol(corev1.ProtocolTCP)).
		WithReadinessProbe(corev1ac.Probe().
			WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromInt32(port))).
			WithPeriodSeconds(2).
			WithFailureThreshold(3)).
		WithSecurityContext(corev1ac.SecurityContext().WithAllowPrivilegeEscalation(false))
	spec := corev1ac.PodSpec().
		WithContainers(c).
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithTerminationGracePeriodSeconds(int64(kubernetes.DefaultTerminationGracePeriod.Seconds())).
		WithSecurityContext(corev1ac.PodSecurityContext().WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))
	labels := floorLabels(app, "web", true)
	return appsv1ac.Deployment("web", kubernetes.Namespace(app)).
		WithLabels(labels).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(kubeReplicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{kubernetes.LabelApp: app, kubernetes.LabelProcessType: "web"})).
			WithRevisionHistoryLimit(3).
			WithProgressDeadlineSeconds(int32(kubernetes.DefaultRolloutTimeout.Seconds())).
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromString("25%")))).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).WithSpec(spec)))
}

func floorService(app string) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service("web", kubernetes.Namespace(app)).
		WithLabels(floorLabels(app, "web", true)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(map[string]string{kubernetes.LabelApp: app, kubernetes.LabelProcessType: "web"}).
			WithPorts(corev1ac.ServicePort().
				WithName("http").
				WithProtocol(corev1.ProtocolTCP).
				WithPort(80).
				WithTargetPort(intstr.FromInt32(kubernetes.DefaultPort))))
}

// floorNetworkPolicy is the app namespace's default-deny ingress policy,
// admitting the router's pods only (scheduler/kubernetes/netpol.go).
func floorNetworkPolicy(app string) *networkingv1ac.NetworkPolicyApplyConfiguration {
	return networkingv1ac.NetworkPolicy(kubernetes.NetworkPolicyName, kubernetes.Namespace(app)).
		WithLabels(floorLabels(app, "", false)).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector()).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(networkingv1ac.NetworkPolicyPeer().
					WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{"kubernetes.io/metadata.name": kubernetes.DefaultRouterNamespace})).
					WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(kubernetes.DefaultRouterPodLabels())))))
}

// sameObjects compares what Pier made for app p with what the floor made
// for app f, with the app names taken out: namespace labels, the config
// Secret, the web Deployment's labels and spec, and the Service's (without
// its allocated IPs).
func sameObjects(ctx context.Context, cs k8s.Interface, p, f string) error {
	type objects struct {
		NSLabels  map[string]string
		Secret    corev1.Secret
		DepLabels map[string]string
		Dep       appsv1.DeploymentSpec
		SvcLabels map[string]string
		Svc       corev1.ServiceSpec
		NPLabels  map[string]string
		NP        networkingv1.NetworkPolicySpec
	}
	read := func(app string) (*objects, error) {
		ns := kubernetes.Namespace(app)
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "config-v"+strconv.Itoa(kubeRelease), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		svc, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		np, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, kubernetes.NetworkPolicyName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		o := &objects{
			NSLabels:  anonymous(n.Labels, app),
			Secret:    corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: anonymous(sec.Labels, app)}, Type: sec.Type, Data: sec.Data},
			DepLabels: anonymous(dep.Labels, app),
			Dep:       dep.Spec,
			SvcLabels: anonymous(svc.Labels, app),
			Svc:       svc.Spec,
			NPLabels:  anonymous(np.Labels, app),
			NP:        np.Spec,
		}
		o.Dep.Selector.MatchLabels = anonymous(o.Dep.Selector.MatchLabels, app)
		o.Dep.Template.Labels = anonymous(o.Dep.Template.Labels, app)
		o.Svc.Selector = anonymous(o.Svc.Selector, app)
		o.Svc.ClusterIP, o.Svc.ClusterIPs = "", nil
		return o, nil
	}
	po, err := read(p)
	if err != nil {
		return fmt.Errorf("Pier's %s: %w", p, err)
	}
	fo, err := read(f)
	if err != nil {
		return fmt.Errorf("floor's %s: %w", f, err)
	}
	if !equality.Semantic.DeepEqual(po, fo) {
		return fmt.Errorf("(- Pier, + floor)\n%s", diff.Diff(po, fo))
	}
	return nil
}

// anonymous is labels with the app's name and namespace replaced by "APP".
func anonymous(labels map[string]string, app string) map[string]string {
	out := maps.Clone(labels)
	for k, v := range out {
		if v == app || v == kubernetes.Namespace(app) {
			out[k] = "APP"
		}
	}
	return out
}

// checkReady says which of apps do not run kubeImage with kubeReplicas
// Ready replicas, reading every Deployment of Pier's in one paged list.
func checkReady(ctx context.Context, cs k8s.Interface, apps []string) error {
	deps := map[string]*appsv1.Deployment{}
	opts := metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=pier", Limit: 500}
	for {
		list, err := cs.AppsV1().Deployments("").List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range list.Items {
			if d := &list.Items[i]; d.Name == "web" {
				deps[d.Namespace] = d
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	var bad []string
	for _, app := range apps {
		d := deps[kubernetes.Namespace(app)]
		switch {
		case d == nil:
			bad = append(bad, app+": no web Deployment")
		case d.Spec.Template.Spec.Containers[0].Image != kubeImage:
			bad = append(bad, fmt.Sprintf("%s: image %s", app, d.Spec.Template.Spec.Containers[0].Image))
		case d.Spec.Replicas == nil || *d.Spec.Replicas != kubeReplicas || d.Status.ReadyReplicas != kubeReplicas:
			bad = append(bad, fmt.Sprintf("%s: %d/%v ready", app, d.Status.ReadyReplicas, d.Spec.Replicas))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d apps are not as deployed: %s", len(bad), len(apps), strings.Join(bad[:min(len(bad), 10)], "; "))
	}
	return nil
}

// quiesce waits until the cluster has had no pod, ReplicaSet, Deployment,
// EndpointSlice or Event change for a few seconds, so that the tail of one
// side's work (status updates, endpoints, events written behind their
// rate limits) does not land on the other side's time.
func quiesce(ctx context.Context, tb testing.TB, k *testenv.Kube) {
	tb.Helper()
	const quiet, most = 3 * time.Second, 3 * time.Minute
	ctx, cancel := context.WithTimeout(ctx, most)
	defer cancel()
	rc := rest.CopyConfig(k.Config)
	rc.QPS, rc.Burst = 50, 100
	mc, err := metadata.NewForConfig(rc)
	if err != nil {
		tb.Fatal(err)
	}
	changes := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below
	defer cancel()
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "pods"},
		{Version: "v1", Resource: "events"},
		{Group: "apps", Version: "v1", Resource: "replicasets"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
	} {
		// From the current state (the resourceVersion of a one-item
		// list): a watch without one would replay every object.
		l, err := mc.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			tb.Fatalf("quiesce: listing %s: %v", gvr.Resource, err)
		}
		w, err := mc.Resource(gvr).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
		if err != nil {
			tb.Fatalf("quiesce: watching %s: %v", gvr.Resource, err)
		}
		wg.Go(func() {
			defer w.Stop()
			for range w.ResultChan() {
				select {
				case changes <- struct{}{}:
				default:
				}
			}
		})
	}
	begin := time.Now()
	timer := time.NewTimer(quiet)
	defer timer.Stop()
	for {
		select {
		case <-changes:
			timer.Reset(quiet)
		case <-timer.C:
			tb.Logf("quiesce: the cluster was quiet for %s after %s", quiet, time.Since(begin).Round(100*time.Millisecond))
			return
		case <-ctx.Done():
			tb.Logf("quiesce: the cluster was still busy after %s; going on", most)
			return
		}
	}
}

func adminClient(tb testing.TB, k *testenv.Kube) k8s.Interface {
	tb.Helper()
	rc := rest.CopyConfig(k.Config)
	rc.QPS, rc.Burst = 200, 400
	cs, err := k8s.NewForConfig(rc)
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// deleteNamespaces deletes the apps' namespaces and does not wait: the
// pods' grace period makes that slow, and the cluster is the test
// binary's, gone with it.
func deleteNamespaces(cs k8s.Interface, apps []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _, _ = forEachApp(ctx, apps, 16, func(ctx context.Context, app string) error {
		// Best effort: a namespace may be gone already, or never made.
		_ = cs.CoreV1().Namespaces().Delete(ctx, kubernetes.Namespace(app), metav1.DeleteOptions{})
		return nil
	})
}

func randomID(tb testing.TB) string {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// requestCounter counts the requests of one Kubernetes client by kind:
// GET (one object, or discovery), LIST, WATCH, WATCHLIST (a watch that
// starts by sending every object: how client-go's informers list since
// WatchListClient), and the write methods. It counts over the whole run,
// and over a window that reset starts, keeping the window's reads.
type requestCounter struct {
	rt http.RoundTripper

	mu    sync.Mutex
	all   requestCounts
	win   requestCounts
	reads []string // "LIST /api/v1/pods" in the window
}

// countRequests makes rc's clients count their requests.
func countRequests(rc *rest.Config) *requestCounter {
	c := &requestCounter{all: requestCounts{}, win: requestCounts{}}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		c.rt = rt
		return c
	})
	return c
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := requestKind(r)
	c.mu.Lock()
	c.all[kind]++
	c.win[kind]++
	if kind == "GET" || kind == "LIST" || kind == "WATCHLIST" {
		c.reads = append(c.reads, kind+" "+r.URL.Path)
	}
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

func (c *requestCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.win, c.reads = requestCounts{}, nil
}

func (c *requestCounter) total() requestCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.all)
}

// window returns the counts since reset, and the reads among them.
func (c *requestCounter) window() (requestCounts, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.win), slices.Clone(c.reads)
}

func requestKind(r *http.Request) string {
	if r.Method != http.MethodGet {
		return r.Method
	}
	q := r.URL.Query()
	if w := q.Get("watch"); w == "true" || w == "1" {
		if q.Get("sendInitialEvents") == "true" {
			return "WATCHLIST"
		}
		return "WATCH"
	}
	if isCollection(r.URL.Path) {
		return "LIST"
	}
	return "GET"
}

// isCollection tells a list's path (/api/v1/pods, /api/v1/namespaces,
// /apis/apps/v1/namespaces/x/deployments) from an object's
// (/api/v1/namespaces/x, .../deployments/web) and discovery's (/api, /apis/apps/v1).
func isCollection(path string) bool {
	s := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(s) >= 2 && s[0] == "api":
		s = s[2:]
	case len(s) >= 3 && s[0] == "apis":
		s = s[3:]
	default:
		return false
	}
	if len(s) >= 3 && s[0] == "namespaces" {
		s = s[2:]
	}
	return len(s) == 1
}

// requestCounts are requests by kind.
type requestCounts map[string]int

func (c requestCounts) sum() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// reads are the requests that read state: GET, LIST and watch-lists.
func (c requestCounts) reads() int { return c["GET"] + c["LIST"] + c["WATCHLIST"] }

// writes are the requests that change state.
func (c requestCounts) writes() int { return c.sum() - c.reads() - c["WATCH"] }

func (c requestCounts) plus(d requestCounts) requestCounts {
	out := maps.Clone(c)
	if out == nil {
		out = requestCounts{}
	}
	for k, v := range d {
		out[k] += v
	}
	return out
}

func (c requestCounts) minus(d requestCounts) requestCounts {
	out := requestCounts{}
	for k, v := range c {
		if v -= d[k]; v != 0 {
			out[k] = v
		}
	}
	return out
}

func (c requestCounts) String() string {
	if len(c) == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(c))
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	return strings.Join(parts, ", ")
}

// cpuUse is CPU time from /proc (Linux; ok is false elsewhere): the
// machine's busy and total time over all cores, and the time of the
// processes that take part, by name: this process ("go test": Pier's API,
// reconciler and scheduler, or the floor's client), the control plane's
// and Postgres's.
type cpuUse struct {
	ok          bool
	busy, total int64 // clock ticks, all cores
	procs       map[string]time.Duration
}

// readCPU reads the machine's CPU time and that of this process and of
// the processes working in dirs (the control plane's dir; Postgres's).
func readCPU(dirs ...string) cpuUse {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuUse{}
	}
	// "cpu  user nice system idle iowait irq softirq steal ..."
	line, _, _ := strings.Cut(string(stat), "\n")
	u := cpuUse{procs: map[string]time.Duration{}}
	for i, f := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		u.total += n
		if i != 3 && i != 4 { // idle, iowait
			u.busy += n
		}
	}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	self := strconv.Itoa(os.Getpid())
	for _, pid := range pids {
		name := "go test"
		if filepath.Base(pid) != self {
			cwd, err := os.Readlink(pid + "/cwd")
			if err != nil || !slices.ContainsFunc(dirs, func(d string) bool { return d != "" && strings.HasPrefix(cwd, d) }) {
				continue
			}
			name = ""
		}
		comm, t := procCPU(pid)
		if name == "" {
			name = comm
		}
		u.procs[name] += t
	}
	u.ok = u.total > 0
	return u
}

// procCPU is a process's name and CPU time (user and system, all threads).
func procCPU(pid string) (string, time.Duration) {
	data, err := os.ReadFile(pid + "/stat")
	if err != nil {
		return "", 0
	}
	// "pid (comm) state ...": utime and stime are the 14th and 15th
	// fields; comm may hold spaces.
	s := string(data)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return "", 0
	}
	f := strings.Fields(s[j+1:])
	if len(f) < 13 {
		return "", 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return s[i+1 : j], time.Duration(ut+st) * (time.Second / 100) // USER_HZ
}

// plus adds v to u; the zero cpuUse is the start of a sum.
func (u cpuUse) plus(v cpuUse) cpuUse {
	if u.procs == nil {
		return v
	}
	d := cpuUse{ok: u.ok && v.ok, busy: u.busy + v.busy, total: u.total + v.total, procs: maps.Clone(u.procs)}
	for k, t := range v.procs {
		d.procs[k] += t
	}
	return d
}

func (u cpuUse) minus(v cpuUse) cpuUse {
	d := cpuUse{ok: u.ok && v.ok, busy: u.busy - v.busy, total: u.total - v.total, procs: map[string]time.Duration{}}
	for k, t := range u.procs {
		d.procs[k] = t - v.procs[k]
	}
	return d
}

// sum is the CPU time of the processes.
func (u cpuUse) sum() time.Duration {
	var t time.Duration
	for _, d := range u.procs {
		t += d
	}
	return t
}

// String is the machine's load and the processes' CPU seconds.
func (u cpuUse) String() string {
	if !u.ok {
		return "not measured"
	}
	names := slices.Sorted(maps.Keys(u.procs))
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f", n, u.procs[n].Seconds()))
	}
	return fmt.Sprintf("%.1f (%s); machine %.0f%% busy", u.sum().Seconds(), strings.Join(parts, ", "), 100*float64(u.busy)/float64(max(u.total, 1)))
}

func TestRequestKind(t *testing.T) {
	for _, c := range []struct{ method, url, want string }{
		{"GET", "/api/v1/namespaces", "LIST"},
		{"GET", "/api/v1/namespaces/pier-a", "GET"},
		{"GET", "/api/v1/namespaces/pier-a/pods", "LIST"},
		{"GET", "/api/v1/namespaces/pier-a/pods/web-1", "GET"},
		{"GET", "/api/v1/namespaces/pier-a/pods/web-1/log", "GET"},
		{"GET", "/api/v1/pods?labelSelector=x", "LIST"},
		{"GET", "/apis/apps/v1/deployments?limit=500", "LIST"},
		{"GET", "/apis/apps/v1/namespaces/pier-a/deployments/web", "GET"},
		{"GET", "/apis/apps/v1/replicasets?watch=true&resourceVersion=7", "WATCH"},
		{"GET", "/api/v1/secrets?allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&watch=true", "WATCHLIST"},
		{"GET", "/apis/apps/v1", "GET"},
		{"GET", "/api", "GET"},
		{"PATCH", "/apis/apps/v1/namespaces/pier-a/deployments/web?fieldManager=pier", "PATCH"},
		{"POST", "/api/v1/namespaces", "POST"},
	} {
		r := httptest.NewRequest(c.method, "https://127.0.0.1:6443"+c.url, nil)
		if got := requestKind(r); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.method, c.url, got, c.want)
		}
	}
}
