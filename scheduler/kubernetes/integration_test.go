package kubernetes

// Tests against a real control plane (internal/testenv: kube-apiserver,
// controller-manager, scheduler and kwok's simulated nodes and pods).
// Pods never really run and their IPs are fake: these tests read objects
// and statuses, and never connect to a pod.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// requestCounter counts the requests a client sends, by kind.
type requestCounter struct {
	rt http.RoundTripper

	mu      sync.Mutex
	reads   []string // GET (one object or a list), not watches
	watches int
	writes  int
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	switch {
	case r.Method == http.MethodGet && (r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1"):
		c.watches++
	case r.Method == http.MethodGet:
		c.reads = append(c.reads, r.URL.Path)
	default:
		c.writes++
	}
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

func (c *requestCounter) reset() {
	c.mu.Lock()
	c.reads, c.watches, c.writes = nil, 0, 0
	c.mu.Unlock()
}

func (c *requestCounter) counts() (reads []string, watches, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reads), c.watches, c.writes
}

type kubeEnv struct {
	k     *testenv.Kube
	admin kubernetes.Interface // the test's own client, not counted
	// impersonate, when set, is who the schedulers act as (chart_rbac_test.go).
	impersonate *rest.ImpersonationConfig
}

func newKubeEnv(t *testing.T) *kubeEnv {
	t.Helper()
	k := testenv.KubeCluster(t)
	rc := rest.CopyConfig(k.Config)
	rc.QPS, rc.Burst = 100, 200
	admin, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeEnv{k: k, admin: admin, impersonate: impersonateScheduler}
}

// scheduler returns a new Scheduler on the cluster, counting its requests.
func (e *kubeEnv) scheduler(t *testing.T, cfg Config) (*Scheduler, *requestCounter) {
	t.Helper()
	rc := rest.CopyConfig(e.k.Config)
	if e.impersonate != nil {
		rc.Impersonate = *e.impersonate
	}
	counter := &requestCounter{}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		counter.rt = rt
		return counter
	})
	cfg.RESTConfig = rc
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.RolloutTimeout == 0 {
		cfg.RolloutTimeout = time.Minute
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, counter
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// appName is a fresh app name; its namespace is deleted after the test.
func (e *kubeEnv) appName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	app := prefix + "-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		e.admin.CoreV1().Namespaces().Delete(context.Background(), Namespace(app), metav1.DeleteOptions{})
	})
	return app
}

func kctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// appendLog appends a line to the log file kwok serves for every pod.
func (e *kubeEnv) appendLog(t *testing.T, text string) {
	t.Helper()
	f, err := os.OpenFile(e.k.PodLogFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), text); err != nil {
		t.Fatal(err)
	}
}

func summarize(ps []pier.Process) string {
	var b []string
	for _, p := range ps {
		b = append(b, fmt.Sprintf("%s.%d:v%d:%s", p.Type, p.Index, p.Release, p.State))
	}
	return strings.Join(b, " ")
}

// upByType counts processes that are up, by type, and their releases.
func upByType(ps []pier.Process) (map[string]int, map[int]int) {
	types, rels := map[string]int{}, map[int]int{}
	for _, p := range ps {
		if p.State == pier.ProcessUp {
			types[p.Type]++
			rels[p.Release]++
		}
	}
	return types, rels
}

func TestKubeApplyScaleConfigRollback(t *testing.T) {
	e := newKubeEnv(t)
	s, _ := e.scheduler(t, Config{})
	ctx := kctx(t, 4*time.Minute)
	app := e.appName(t, "it-apply")
	ns := Namespace(app)

	v1 := cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 1, "worker": 1})
	start := time.Now()
	if err := s.Apply(ctx, v1); err != nil {
		t.Fatal(err)
	}
	t.Logf("first Apply: %s", time.Since(start).Round(time.Millisecond))

	nsObj, err := e.admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels(t, "namespace", nsObj.Labels, map[string]string{LabelManagedBy: "pier", LabelApp: app, LabelName: app, LabelPartOf: "pier"})
	sec, err := e.admin.CoreV1().Secrets(ns).Get(ctx, "config-v1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["GREETING"]) != "hello" {
		t.Errorf("secret data: %v", sec.Data)
	}
	for _, typ := range []string{"web", "worker"} {
		dep, err := e.admin.AppsV1().Deployments(ns).Get(ctx, typ, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wantLabels(t, typ, dep.Spec.Template.Labels, map[string]string{LabelManagedBy: "pier", LabelApp: app, LabelProcessType: typ, LabelRelease: "v1"})
		c := dep.Spec.Template.Spec.Containers[0]
		if c.Image != v1.Release.Build.Image || c.Env[0].Name != "PORT" || c.EnvFrom[0].SecretRef.Name != "config-v1" {
			t.Errorf("%s container: %+v", typ, c)
		}
		if dep.Status.AvailableReplicas != 1 || dep.Status.UpdatedReplicas != 1 {
			t.Errorf("%s status after Apply: %+v", typ, dep.Status)
		}
	}
	svc, err := e.admin.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.IntValue() != 5000 {
		t.Errorf("service ports: %+v", svc.Spec.Ports)
	}

	// Idempotent: the same deployment again writes nothing.
	rvs := func() map[string]string {
		out := map[string]string{}
		for _, typ := range []string{"web", "worker"} {
			dep, err := e.admin.AppsV1().Deployments(ns).Get(ctx, typ, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out["deployment/"+typ] = fmt.Sprintf("rv=%s gen=%d", dep.ResourceVersion, dep.Generation)
		}
		sec, _ := e.admin.CoreV1().Secrets(ns).Get(ctx, "config-v1", metav1.GetOptions{})
		svc, _ := e.admin.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		nso, _ := e.admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		out["secret"], out["service"], out["namespace"] = sec.ResourceVersion, svc.ResourceVersion, nso.ResourceVersion
		return out
	}
	before := rvs()
	if err := s.Apply(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if after := rvs(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a second Apply of the same deployment wrote:\nbefore %v\nafter  %v", before, after)
	}

	// Scale: web=5 worker=2, all Ready.
	v1.Formation = pier.Formation{"web": 5, "worker": 2}
	if err := s.Apply(ctx, v1); err != nil {
		t.Fatal(err)
	}
	for typ, n := range map[string]int32{"web": 5, "worker": 2} {
		dep, _ := e.admin.AppsV1().Deployments(ns).Get(ctx, typ, metav1.GetOptions{})
		if dep.Status.ReadyReplicas != n || dep.Status.AvailableReplicas != n || *dep.Spec.Replicas != n {
			t.Errorf("%s after scaling to %d: %+v", typ, n, dep.Status)
		}
	}
	ps, err := s.Processes(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	if types, _ := upByType(ps); types["web"] != 5 || types["worker"] != 2 {
		t.Errorf("processes after scaling: %s", summarize(ps))
	}

	// A config change: a new release rolls out; Apply returns once it has.
	v2 := cnbDeployment(app, 2, v1.Release.Build.Image, v1.Formation)
	v2.Release.Config["GREETING"] = "bonjour"
	webRev := func() string {
		dep, _ := e.admin.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return dep.Annotations[revisionAnnotation]
	}
	revBefore := webRev()
	start = time.Now()
	if err := s.Apply(ctx, v2); err != nil {
		t.Fatal(err)
	}
	t.Logf("config change rolled out 5+2 processes in %s", time.Since(start).Round(time.Millisecond))
	if webRev() == revBefore {
		t.Errorf("no new ReplicaSet for the config change (revision %s)", revBefore)
	}
	rss, err := e.admin.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelProcessType + "=web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range rss.Items {
		cur := rs.Spec.Template.Labels[LabelRelease] == "v2"
		if cur && rs.Status.AvailableReplicas != 5 || !cur && rs.Status.Replicas != 0 {
			t.Errorf("ReplicaSet %s (%s) after the rollout: %+v", rs.Name, rs.Spec.Template.Labels[LabelRelease], rs.Status)
		}
	}
	ps, _ = s.Processes(ctx, app)
	if types, rels := upByType(ps); types["web"] != 5 || types["worker"] != 2 || rels[2] != 7 {
		t.Errorf("processes after the config change: %s", summarize(ps))
	}
	if _, err := e.admin.CoreV1().Secrets(ns).Get(ctx, "config-v1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("config-v1 after v2 rolled out: %v, want it deleted", err)
	}

	// A new image (v3), then the controller's rollback: v1 applied again.
	v3 := cnbDeployment(app, 3, "pier.localhost/"+app+":3", v1.Formation)
	if err := s.Apply(ctx, v3); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, v1); err != nil {
		t.Fatal(err)
	}
	dep, _ := e.admin.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != v1.Release.Build.Image {
		t.Errorf("web image after the rollback = %s, want %s", img, v1.Release.Build.Image)
	}
	ps, _ = s.Processes(ctx, app)
	if types, rels := upByType(ps); types["web"] != 5 || rels[1] != 7 {
		t.Errorf("processes after the rollback: %s", summarize(ps))
	}

	// Restart: every web pod replaced.
	names := func() map[string]bool {
		pods, _ := e.admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelProcessType + "=web"})
		out := map[string]bool{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				out[p.Name] = true
			}
		}
		return out
	}
	old := names()
	if err := s.Restart(ctx, app, "web"); err != nil {
		t.Fatal(err)
	}
	for n := range names() {
		if old[n] {
			t.Errorf("pod %s survived the restart", n)
		}
	}
	ps, _ = s.Processes(ctx, app)
	if types, _ := upByType(ps); types["web"] != 5 {
		t.Errorf("processes after the restart: %s", summarize(ps))
	}

	// No build: everything to 0, the namespace stays.
	if err := s.Apply(ctx, pier.Deployment{App: app, Release: pier.Release{App: app, Version: 4}}); err != nil {
		t.Fatal(err)
	}
	ps, _ = s.Processes(ctx, app)
	if types, _ := upByType(ps); len(types) != 0 {
		t.Errorf("processes after a release without build: %s", summarize(ps))
	}
	if _, err := e.admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace: %v", err)
	}
}

func TestKubeSteadyStateRequests(t *testing.T) {
	e := newKubeEnv(t)
	s, counter := e.scheduler(t, Config{})
	ctx := kctx(t, 2*time.Minute)
	app := e.appName(t, "it-steady")
	d := cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 2, "worker": 1})
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	// Let the last events (old pods' deletion) settle, then count.
	time.Sleep(2 * time.Second)
	counter.reset()
	const window = 6 * time.Second
	deadline := time.Now().Add(window)
	applies := 0
	for time.Now().Before(deadline) {
		if _, err := s.Processes(ctx, app); err != nil {
			t.Fatal(err)
		}
		if applies < 3 {
			if err := s.Apply(ctx, d); err != nil { // nothing to change
				t.Fatal(err)
			}
			applies++
		}
		time.Sleep(200 * time.Millisecond)
	}
	reads, watches, writes := counter.counts()
	t.Logf("steady state over %s (with %d no-op Applies and Processes every 200ms): %d GET/LIST, %d new watches, %d writes (server-side applies)", window, applies, len(reads), watches, writes)
	if len(reads) != 0 {
		t.Errorf("%d GET/LIST requests in steady state: %v", len(reads), reads)
	}
	if watches != 0 {
		t.Errorf("%d watches opened in steady state", watches)
	}
}

func TestKubeLogs(t *testing.T) {
	e := newKubeEnv(t)
	s, _ := e.scheduler(t, Config{})
	ctx := kctx(t, 2*time.Minute)
	app := e.appName(t, "it-logs")
	if err := s.Apply(ctx, cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 2, "worker": 1})); err != nil {
		t.Fatal(err)
	}
	before := "before-" + app
	e.appendLog(t, before)

	var lines []pier.LogLine
	if err := s.Logs(ctx, app, pier.LogOptions{Lines: 5, Type: "web"}, func(l pier.LogLine) error {
		lines = append(lines, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 || len(lines) > 5 {
		t.Fatalf("Logs with Lines 5: %d lines", len(lines))
	}
	seen := false
	for _, l := range lines {
		if !strings.HasPrefix(l.Process, "web.") || l.App != app || l.Time.IsZero() {
			t.Errorf("line %+v", l)
		}
		seen = seen || l.Text == before
	}
	if !seen {
		t.Errorf("the last line %q not among %+v", before, lines)
	}

	// Following: a line appended later arrives, stamped with its time.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan pier.LogLine, 1024)
	done := make(chan error, 1)
	go func() {
		done <- s.Logs(fctx, app, pier.LogOptions{Lines: 1, Follow: true}, func(l pier.LogLine) error {
			got <- l
			return nil
		})
	}()
	time.Sleep(time.Second) // the streams open
	after := "after-" + app
	at := time.Now().UTC()
	e.appendLog(t, after)
	timeout := time.After(30 * time.Second)
	procs := map[string]bool{}
wait:
	for {
		select {
		case l := <-got:
			if l.Text == after {
				procs[l.Process] = true
				if l.Time.Sub(at) > time.Second || at.Sub(l.Time) > time.Second {
					t.Errorf("line stamped %s, appended at %s", l.Time, at)
				}
				if len(procs) == 3 { // kwok serves the file for every pod
					break wait
				}
			}
		case <-timeout:
			t.Fatalf("followed line not seen from all 3 processes within 30s: %v", procs)
		}
	}
	t.Logf("followed line from %v", procs)

	// A process started while following is followed too.
	if err := s.Apply(ctx, cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 3, "worker": 1})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	later := "later-" + app
	e.appendLog(t, later)
	procs = map[string]bool{}
	timeout = time.After(30 * time.Second)
wait2:
	for {
		select {
		case l := <-got:
			if l.Text == later {
				procs[l.Process] = true
				if procs["web.3"] {
					break wait2
				}
			}
		case <-timeout:
			t.Fatalf("line not seen from the new process web.3 within 30s: %v", procs)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended with %v", err)
	}
}

func TestKubeRun(t *testing.T) {
	e := newKubeEnv(t)
	s, _ := e.scheduler(t, Config{})
	ctx := kctx(t, 2*time.Minute)
	app := e.appName(t, "it-run")
	d := cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 1})
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	marker := "run-output-" + app
	e.appendLog(t, marker)

	var out syncBuffer
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := s.Run(rctx, d, pier.RunOptions{Command: []string{"echo", "hi there"}, Stdout: &out})
		res <- result{code, err}
	}()
	pod := e.waitRunPod(t, ctx, Namespace(app), func(p *corev1.Pod) bool { return podReady(p) })
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever || !strings.HasPrefix(pod.Name, "run-") {
		t.Errorf("run pod %s: restart policy %s", pod.Name, pod.Spec.RestartPolicy)
	}
	if c := pod.Spec.Containers[0]; !slices.Equal(c.Command, []string{"/cnb/lifecycle/launcher", "--", "echo", "hi there"}) || c.Image != d.Release.Build.Image {
		t.Errorf("run container: %q %s", c.Command, c.Image)
	}
	// kwok's "general" pod stages complete only pods owned by a Job: a
	// bare pod with restartPolicy Never stays Running and Ready.
	waitFor(t, 15*time.Second, "the one-off process's output", func() bool { return strings.Contains(out.String(), marker) })
	time.Sleep(3 * time.Second)
	if p, err := e.admin.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{}); err == nil {
		t.Logf("kwok, %s after start: run pod phase %s, ready %v", time.Since(pod.CreationTimestamp.Time).Round(time.Second), p.Status.Phase, podReady(p))
	}
	select {
	case r := <-res:
		t.Fatalf("Run returned %d, %v while its pod runs", r.code, r.err)
	default:
	}
	// Play the kubelet: the container exits with 3.
	p, err := e.admin.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	p.Status.Phase = corev1.PodFailed
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].Ready = false
		p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error", StartedAt: now, FinishedAt: now}}
	}
	if _, err := e.admin.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.err != nil || r.code != 3 {
			t.Fatalf("Run = %d, %v; want exit code 3", r.code, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its container exited")
	}
	e.waitPodGone(t, ctx, pod)

	// Cancelled: the pod is deleted.
	rctx2, cancel2 := context.WithCancel(ctx)
	go func() {
		code, err := s.Run(rctx2, d, pier.RunOptions{Command: []string{"sleep", "1000"}})
		res <- result{code, err}
	}()
	pod = e.waitRunPod(t, ctx, Namespace(app), func(p *corev1.Pod) bool { return true })
	cancel2()
	select {
	case r := <-res:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled Run = %d, %v", r.code, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cancelled Run did not return")
	}
	e.waitPodGone(t, ctx, pod)
}

func (e *kubeEnv) waitRunPod(t *testing.T, ctx context.Context, ns string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	waitFor(t, 30*time.Second, "a run pod", func() bool {
		pods, err := e.admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelProcessType + "=run"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range pods.Items {
			if p := &pods.Items[i]; p.DeletionTimestamp == nil && ok(p) {
				found = p
				return true
			}
		}
		return false
	})
	return found
}

// waitPodGone waits until the pod is deleted or being deleted.
func (e *kubeEnv) waitPodGone(t *testing.T, ctx context.Context, pod *corev1.Pod) {
	t.Helper()
	waitFor(t, 30*time.Second, "the run pod's deletion", func() bool {
		p, err := e.admin.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || err == nil && (p.DeletionTimestamp != nil || p.UID != pod.UID)
	})
}

// waitFor checks cond every 100ms: test code may poll, the scheduler may not.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestKubeDestroyAndForeignNamespace(t *testing.T) {
	e := newKubeEnv(t)
	s, _ := e.scheduler(t, Config{})
	ctx := kctx(t, 3*time.Minute)

	app := e.appName(t, "it-destroy")
	if err := s.Apply(ctx, cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 2})); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Destroy(ctx, app); err != nil {
		t.Fatal(err)
	}
	t.Logf("Destroy took %s", time.Since(start).Round(time.Millisecond))
	if _, err := e.admin.CoreV1().Namespaces().Get(ctx, Namespace(app), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace after Destroy: %v", err)
	}
	if err := s.Destroy(ctx, app); err != nil {
		t.Errorf("second Destroy: %v", err)
	}

	// Someone else's pier-<app>.
	theirs := e.appName(t, "it-foreign")
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: Namespace(theirs), Labels: map[string]string{"team": "db"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := s.Apply(ctx, cnbDeployment(theirs, 1, "pier.localhost/x:1", pier.Formation{"web": 1}))
	if pier.ErrorCode(err) != pier.ECONFLICT || !strings.Contains(err.Error(), LabelManagedBy) {
		t.Errorf("Apply into a foreign namespace: %v", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if err := s.Destroy(ctx, theirs); pier.ErrorCode(err) != pier.ECONFLICT {
		t.Errorf("Destroy of a foreign namespace: %v", err)
	}
	ns, err := e.admin.CoreV1().Namespaces().Get(ctx, Namespace(theirs), metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil || ns.Labels[LabelManagedBy] != "" {
		t.Errorf("the foreign namespace was touched: %v %+v", err, ns)
	}
	deps, _ := e.admin.AppsV1().Deployments(Namespace(theirs)).List(ctx, metav1.ListOptions{})
	secs, _ := e.admin.CoreV1().Secrets(Namespace(theirs)).List(ctx, metav1.ListOptions{})
	if len(deps.Items) != 0 || len(secs.Items) != 0 {
		t.Errorf("written into the foreign namespace: %d deployments, %d secrets", len(deps.Items), len(secs.Items))
	}
}

// A release whose pods never become ready: Apply returns a rollout error
// within RolloutTimeout, leaving the old pods serving; applying the
// previous release again (what the controller does) brings it back.
func TestKubeRolloutNeverReady(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		why  string // in the error
	}{
		// kwok's pod-ready stage delayed for ten years: scheduled, never Ready.
		{"not-ready", Config{PodAnnotations: testenv.NeverReadyAnnotations()}, ""},
		// No node matches: never scheduled. Works on any cluster.
		{"unschedulable", Config{NodeSelector: map[string]string{"pier.dev/pool": "nowhere"}}, "cannot be scheduled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newKubeEnv(t)
			good, _ := e.scheduler(t, Config{})
			const timeout = 8 * time.Second
			c.cfg.RolloutTimeout = timeout
			bad, _ := e.scheduler(t, c.cfg)
			ctx := kctx(t, 2*time.Minute)
			app := e.appName(t, "it-"+c.name)
			v1 := cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 2, "worker": 1})
			if err := good.Apply(ctx, v1); err != nil {
				t.Fatal(err)
			}
			v2 := cnbDeployment(app, 2, "pier.localhost/"+app+":2", v1.Formation)
			start := time.Now()
			err := bad.Apply(ctx, v2)
			el := time.Since(start)
			if !errors.Is(err, pier.ErrRolloutFailed) {
				t.Fatalf("Apply of pods that never become ready: %v", err)
			}
			t.Logf("after %s: %v", el.Round(time.Millisecond), err)
			msg := pier.ErrorMessage(err)
			if !strings.Contains(msg, "web: 0/2 new processes became ready within 8s") && !strings.Contains(msg, "web: 0/2") {
				t.Errorf("message %q does not say web: 0/2", msg)
			}
			if !strings.Contains(msg, "worker: 0/1") {
				t.Errorf("message %q does not name worker", msg)
			}
			if c.why != "" && !strings.Contains(msg, c.why) {
				t.Errorf("message %q does not say %q", msg, c.why)
			}
			if el < timeout || el > timeout+10*time.Second {
				t.Errorf("Apply returned after %s with a rollout timeout of %s", el, timeout)
			}
			// The old processes keep serving: no rollback, no downtime.
			ps, _ := good.Processes(ctx, app)
			if types, rels := upByType(ps); types["web"] != 2 || types["worker"] != 1 || rels[1] != 3 {
				t.Errorf("processes after the failed rollout: %s", summarize(ps))
			}
			dep, _ := e.admin.AppsV1().Deployments(Namespace(app)).Get(ctx, "web", metav1.GetOptions{})
			if dep.Spec.Template.Labels[LabelRelease] != "v2" {
				t.Errorf("web template is %s: Apply rolled back by itself", dep.Spec.Template.Labels[LabelRelease])
			}
			// The controller restores v1.
			start = time.Now()
			if err := good.Apply(ctx, v1); err != nil {
				t.Fatalf("re-applying v1: %v", err)
			}
			t.Logf("v1 restored in %s", time.Since(start).Round(time.Millisecond))
			ps, _ = good.Processes(ctx, app)
			if types, rels := upByType(ps); types["web"] != 2 || rels[1] != 3 || len(rels) != 1 {
				t.Errorf("processes after restoring v1: %s", summarize(ps))
			}
			for _, p := range ps {
				if p.Release == 2 && p.State != pier.ProcessStopping {
					t.Errorf("a v2 process remains: %+v", p)
				}
			}
		})
	}
}
