package kubernetes

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/pierpaas/pier"
)

func cnbDeployment(app string, v int, image string, f pier.Formation) pier.Deployment {
	return pier.Deployment{
		App: app,
		Release: pier.Release{
			App: app, Version: v,
			Build: &pier.Build{ID: int64(v), App: app, Strategy: "pack", Image: image,
				ProcessTypes: map[string]string{"web": "./server", "worker": "./worker"}},
			Config: pier.Config{"GREETING": "hello", "SECRET_TOKEN": "s3cr3t"},
		},
		Formation: f,
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func getDeployment(t *testing.T, c *fakeCluster, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func wantLabels(t *testing.T, what string, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: label %s = %q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}

func TestApplyObjects(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	d := cnbDeployment("shop", 3, "registry.example.com/shop:v3", pier.Formation{"web": 2, "worker": 1})
	d.Limits = map[string]pier.Limits{"web": {Memory: "512Mi", CPU: "500m"}}
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"app.kubernetes.io/name": "shop", "app.kubernetes.io/part-of": "pier",
		"app.kubernetes.io/managed-by": "pier", "pier.dev/app": "shop",
	}
	ns, err := c.CoreV1().Namespaces().Get(ctx, "pier-shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels(t, "namespace", ns.Labels, base)

	sec, err := c.CoreV1().Secrets("pier-shop").Get(ctx, "config-v3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels(t, "secret", sec.Labels, map[string]string{"pier.dev/release": "v3", "app.kubernetes.io/managed-by": "pier"})
	if string(sec.Data["GREETING"]) != "hello" || string(sec.Data["SECRET_TOKEN"]) != "s3cr3t" || len(sec.Data) != 2 {
		t.Errorf("secret data = %v", sec.Data)
	}
	// pierd's cache of it has the name, not the values.
	if cached, err := s.secrets.Secrets("pier-shop").Get("config-v3"); err != nil {
		t.Errorf("secret not cached: %v", err)
	} else if cached.Data != nil || cached.StringData != nil {
		t.Errorf("cached secret holds %v %v", cached.Data, cached.StringData)
	}

	for _, typ := range []string{"web", "worker"} {
		dep := getDeployment(t, c, "pier-shop", typ)
		labels := map[string]string{"pier.dev/process-type": typ, "pier.dev/release": "v3"}
		for k, v := range base {
			labels[k] = v
		}
		wantLabels(t, typ+" deployment", dep.Labels, labels)
		wantLabels(t, typ+" pod template", dep.Spec.Template.Labels, labels)
		if got := dep.Spec.Selector.MatchLabels; !reflect.DeepEqual(got, map[string]string{"pier.dev/app": "shop", "pier.dev/process-type": typ}) {
			t.Errorf("%s selector = %v", typ, got)
		}
		want := map[string]int32{"web": 2, "worker": 1}[typ]
		if *dep.Spec.Replicas != want {
			t.Errorf("%s replicas = %d, want %d", typ, *dep.Spec.Replicas, want)
		}
		ru := dep.Spec.Strategy.RollingUpdate
		if dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil ||
			*ru.MaxUnavailable != intstr.FromInt32(0) || *ru.MaxSurge != intstr.FromString("25%") {
			t.Errorf("%s strategy = %+v", typ, dep.Spec.Strategy)
		}
		if ptr.Deref(dep.Spec.ProgressDeadlineSeconds, 0) != 10 {
			t.Errorf("%s progressDeadlineSeconds = %v, want the rollout timeout (10)", typ, dep.Spec.ProgressDeadlineSeconds)
		}
		ps := dep.Spec.Template.Spec
		if ptr.Deref(ps.AutomountServiceAccountToken, true) || ptr.Deref(ps.EnableServiceLinks, true) {
			t.Errorf("%s: service account token or service links on", typ)
		}
		if ptr.Deref(ps.TerminationGracePeriodSeconds, 0) != 30 {
			t.Errorf("%s: grace = %v", typ, ps.TerminationGracePeriodSeconds)
		}
		if ps.SecurityContext == nil || !ptr.Deref(ps.SecurityContext.RunAsNonRoot, false) {
			t.Errorf("%s: CNB image not held to a non-root user: %+v", typ, ps.SecurityContext)
		}
		if len(ps.Tolerations) != 0 || len(ps.NodeSelector) != 0 {
			t.Errorf("%s: tolerations %v node selector %v", typ, ps.Tolerations, ps.NodeSelector)
		}
		if len(ps.Containers) != 1 {
			t.Fatalf("%s: %d containers", typ, len(ps.Containers))
		}
		ct := ps.Containers[0]
		if ct.Image != "registry.example.com/shop:v3" {
			t.Errorf("%s image = %q", typ, ct.Image)
		}
		if !reflect.DeepEqual(ct.Command, []string{"/cnb/process/" + typ}) || len(ct.Args) != 0 {
			t.Errorf("%s command = %q args %q", typ, ct.Command, ct.Args)
		}
		if len(ct.Env) != 1 || ct.Env[0].Name != "PORT" || ct.Env[0].Value != "5000" {
			t.Errorf("%s env = %+v", typ, ct.Env)
		}
		if len(ct.EnvFrom) != 1 || ct.EnvFrom[0].SecretRef == nil || ct.EnvFrom[0].SecretRef.Name != "config-v3" {
			t.Errorf("%s envFrom = %+v", typ, ct.EnvFrom)
		}
		for _, e := range ct.Env {
			if strings.Contains(e.Value, "s3cr3t") {
				t.Errorf("%s: a config value is in the pod spec", typ)
			}
		}
		if typ == "web" {
			p := ct.ReadinessProbe
			if p == nil || p.TCPSocket == nil || p.TCPSocket.Port != intstr.FromInt32(5000) {
				t.Errorf("web readiness probe = %+v", p)
			}
			if len(ct.Ports) != 1 || ct.Ports[0].ContainerPort != 5000 || ct.Ports[0].Name != "http" {
				t.Errorf("web ports = %+v", ct.Ports)
			}
			if ct.Resources.Limits.Memory().String() != "512Mi" || ct.Resources.Requests.Memory().String() != "512Mi" ||
				ct.Resources.Limits.Cpu().String() != "500m" || ct.Resources.Requests.Cpu().String() != "500m" {
				t.Errorf("web resources = %+v", ct.Resources)
			}
		} else {
			if ct.ReadinessProbe != nil || len(ct.Ports) != 0 {
				t.Errorf("worker has a probe or ports: %+v %+v", ct.ReadinessProbe, ct.Ports)
			}
			if len(ct.Resources.Limits) != 0 || len(ct.Resources.Requests) != 0 {
				t.Errorf("worker resources = %+v, want none", ct.Resources)
			}
		}
		if ct.SecurityContext == nil || ptr.Deref(ct.SecurityContext.AllowPrivilegeEscalation, true) {
			t.Errorf("%s: privilege escalation allowed", typ)
		}
	}

	svc, err := c.CoreV1().Services("pier-shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels(t, "service", svc.Labels, base)
	if !reflect.DeepEqual(svc.Spec.Selector, map[string]string{"pier.dev/app": "shop", "pier.dev/process-type": "web"}) {
		t.Errorf("service selector = %v", svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort != intstr.FromInt32(5000) || svc.Spec.Ports[0].Name != "http" {
		t.Errorf("service ports = %+v", svc.Spec.Ports)
	}
}

func TestApplyImageStrategy(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{Port: 8000})
	d := pier.Deployment{
		App: "img",
		Release: pier.Release{App: "img", Version: 1, Build: &pier.Build{
			Strategy: pier.StrategyImage, Image: "nginx:1.27",
			ProcessTypes: map[string]string{"web": "nginx -g 'daemon off;'", "clock": ""},
		}},
		Formation: pier.Formation{"web": 1, "clock": 1},
	}
	if err := s.Apply(ctxT(t), d); err != nil {
		t.Fatal(err)
	}
	web := getDeployment(t, c, "pier-img", "web").Spec.Template.Spec
	if got := web.Containers[0].Command; !reflect.DeepEqual(got, []string{"/bin/sh", "-c", "nginx -g 'daemon off;'"}) {
		t.Errorf("web command = %q", got)
	}
	if web.Containers[0].Env[0].Value != "8000" || web.Containers[0].ReadinessProbe.TCPSocket.Port != intstr.FromInt32(8000) {
		t.Errorf("PORT not 8000: %+v", web.Containers[0])
	}
	if web.SecurityContext != nil && ptr.Deref(web.SecurityContext.RunAsNonRoot, false) {
		t.Errorf("an image of unknown user is held to non-root")
	}
	clock := getDeployment(t, c, "pier-img", "clock").Spec.Template.Spec
	if got := clock.Containers[0].Command; got != nil {
		t.Errorf("clock command = %q, want the image's entrypoint", got)
	}
	svc, err := c.CoreV1().Services("pier-img").Get(ctxT(t), "web", metav1.GetOptions{})
	if err != nil || svc.Spec.Ports[0].TargetPort != intstr.FromInt32(8000) {
		t.Errorf("service: %v %+v", err, svc)
	}
}

func TestApplyIdempotent(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	d := cnbDeployment("idem", 1, "reg.example.com/idem:1", pier.Formation{"web": 1})
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	before := getDeployment(t, c, "pier-idem", "web")
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	after := getDeployment(t, c, "pier-idem", "web")
	if !reflect.DeepEqual(before.Spec, after.Spec) || !reflect.DeepEqual(before.Labels, after.Labels) {
		t.Errorf("a second Apply changed the Deployment:\n%+v\n%+v", before.Spec, after.Spec)
	}
	// Restart's annotation survives an Apply that does not name it.
	if err := s.Restart(ctx, "idem", "web"); err != nil {
		t.Fatal(err)
	}
	at := getDeployment(t, c, "pier-idem", "web").Spec.Template.Annotations[AnnotationRestartedAt]
	if at == "" {
		t.Fatal("Restart set no restartedAt annotation")
	}
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got := getDeployment(t, c, "pier-idem", "web").Spec.Template.Annotations[AnnotationRestartedAt]; got != at {
		t.Errorf("Apply changed restartedAt from %q to %q: it would roll the pods again", at, got)
	}
}

func TestApplyScaleAndRemovedTypes(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	d := cnbDeployment("scale", 1, "reg.example.com/scale:1", pier.Formation{"web": 1, "worker": 2})
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	// Not in the formation: scaled to 0, kept.
	d.Formation = pier.Formation{"web": 3}
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	if n := *getDeployment(t, c, "pier-scale", "worker").Spec.Replicas; n != 0 {
		t.Errorf("worker replicas = %d, want 0", n)
	}
	if n := *getDeployment(t, c, "pier-scale", "web").Spec.Replicas; n != 3 {
		t.Errorf("web replicas = %d, want 3", n)
	}
	ps, err := s.Processes(ctx, "scale")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Errorf("processes = %+v, want 3 web", ps)
	}

	// A release without worker and without web: both go, and the Service.
	d2 := cnbDeployment("scale", 2, "reg.example.com/scale:2", pier.Formation{"clock": 1, "web": 3})
	d2.Release.Build.ProcessTypes = map[string]string{"clock": "./clock"}
	if err := s.Apply(ctx, d2); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"web", "worker"} {
		if _, err := c.AppsV1().Deployments("pier-scale").Get(ctx, gone, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s Deployment: %v, want it deleted", gone, err)
		}
	}
	if _, err := c.CoreV1().Services("pier-scale").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("web Service: %v, want it deleted", err)
	}
	// The old release's config is gone once v2 rolled out.
	if _, err := c.CoreV1().Secrets("pier-scale").Get(ctx, "config-v1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("config-v1: %v, want it deleted", err)
	}
	if _, err := c.CoreV1().Secrets("pier-scale").Get(ctx, "config-v2", metav1.GetOptions{}); err != nil {
		t.Errorf("config-v2: %v", err)
	}

	// No build: everything to 0, the namespace and Deployments stay.
	if err := s.Apply(ctx, pier.Deployment{App: "scale", Release: pier.Release{App: "scale", Version: 3}, Formation: pier.Formation{"clock": 1}}); err != nil {
		t.Fatal(err)
	}
	if n := *getDeployment(t, c, "pier-scale", "clock").Spec.Replicas; n != 0 {
		t.Errorf("clock replicas = %d after a release without build, want 0", n)
	}
	// Applying v2 again brings it back, with all its fields.
	if err := s.Apply(ctx, d2); err != nil {
		t.Fatal(err)
	}
	dep := getDeployment(t, c, "pier-scale", "clock")
	if *dep.Spec.Replicas != 1 || dep.Spec.Template.Spec.Containers[0].Image != "reg.example.com/scale:2" {
		t.Errorf("clock after re-apply: replicas %d image %q", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Image)
	}
}

func TestForeignNamespaceRefused(t *testing.T) {
	foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pier-theirs", Labels: map[string]string{"team": "db"}}}
	c := newFakeCluster(t, foreign)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	err := s.Apply(ctx, cnbDeployment("theirs", 1, "reg.example.com/x:1", pier.Formation{"web": 1}))
	if pier.ErrorCode(err) != pier.ECONFLICT || !strings.Contains(pier.ErrorMessage(err), "not made by Pier") {
		t.Fatalf("Apply into a foreign namespace: %v", err)
	}
	if err := s.Destroy(ctx, "theirs"); pier.ErrorCode(err) != pier.ECONFLICT {
		t.Fatalf("Destroy of a foreign namespace: %v", err)
	}
	if _, err := s.Run(ctx, cnbDeployment("theirs", 1, "reg.example.com/x:1", nil), pier.RunOptions{Command: []string{"true"}}); pier.ErrorCode(err) != pier.ECONFLICT {
		t.Fatalf("Run in a foreign namespace: %v", err)
	}
	ns, err := c.CoreV1().Namespaces().Get(ctx, "pier-theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ns.Labels, map[string]string{"team": "db"}) || ns.DeletionTimestamp != nil {
		t.Errorf("the foreign namespace was changed: %+v", ns.ObjectMeta)
	}
	deps, _ := c.AppsV1().Deployments("pier-theirs").List(ctx, metav1.ListOptions{})
	secs, _ := c.CoreV1().Secrets("pier-theirs").List(ctx, metav1.ListOptions{})
	if len(deps.Items)+len(secs.Items) != 0 {
		t.Errorf("objects written into the foreign namespace: %d deployments, %d secrets", len(deps.Items), len(secs.Items))
	}
}

func TestRolloutTimeout(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{RolloutTimeout: 500 * time.Millisecond})
	ctx := ctxT(t)
	if err := s.Apply(ctx, cnbDeployment("stuck", 1, "reg.example.com/stuck:1", pier.Formation{"web": 1, "worker": 1})); err != nil {
		t.Fatal(err)
	}
	c.setStuck("web", true)
	start := time.Now()
	err := s.Apply(ctx, cnbDeployment("stuck", 2, "reg.example.com/stuck:2", pier.Formation{"web": 1, "worker": 1}))
	if !errors.Is(err, pier.ErrRolloutFailed) || pier.ErrorCode(err) != pier.EROLLOUT {
		t.Fatalf("Apply of a release that never becomes ready: %v (code %s)", err, pier.ErrorCode(err))
	}
	if msg := pier.ErrorMessage(err); !strings.Contains(msg, "web: 0/1 new processes became ready within 500ms") || strings.Contains(msg, "worker") {
		t.Errorf("message = %q", msg)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Apply took %s with a 500ms rollout timeout", el)
	}
	// Not rolled back: v2 stays applied, and its config; v1's is kept for the old pods.
	if img := getDeployment(t, c, "pier-stuck", "web").Spec.Template.Spec.Containers[0].Image; img != "reg.example.com/stuck:2" {
		t.Errorf("web image = %q: Apply rolled back by itself", img)
	}
	if _, err := c.CoreV1().Secrets("pier-stuck").Get(ctx, "config-v1", metav1.GetOptions{}); err != nil {
		t.Errorf("config-v1 deleted while v1 pods still run: %v", err)
	}
	// The controller's rollback: v1 again, which comes up.
	c.setStuck("web", false)
	if err := s.Apply(ctx, cnbDeployment("stuck", 1, "reg.example.com/stuck:1", pier.Formation{"web": 1, "worker": 1})); err != nil {
		t.Fatalf("rollback: %v", err)
	}
}

func TestRestart(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	if err := s.Restart(ctx, "nothing", ""); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Errorf("Restart of an app without processes: %v", err)
	}
	if err := s.Apply(ctx, cnbDeployment("rsx", 1, "reg.example.com/rs:1", pier.Formation{"web": 1})); err != nil {
		t.Fatal(err)
	}
	err := s.Restart(ctx, "rsx", "worker")
	if pier.ErrorCode(err) != pier.ENOTFOUND || !strings.Contains(err.Error(), "it runs web") {
		t.Errorf("Restart of a type at 0: %v", err)
	}
	if err := s.Restart(ctx, "rsx", ""); err != nil {
		t.Fatal(err)
	}
	if getDeployment(t, c, "pier-rsx", "web").Spec.Template.Annotations[AnnotationRestartedAt] == "" {
		t.Error("web not restarted")
	}
	if getDeployment(t, c, "pier-rsx", "worker").Spec.Template.Annotations[AnnotationRestartedAt] != "" {
		t.Error("worker (at 0) restarted")
	}
}

func TestProcessesAndLogs(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	if err := s.Apply(ctx, cnbDeployment("psx", 4, "reg.example.com/ps:4", pier.Formation{"web": 2, "worker": 1})); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Processes(ctx, "psx")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Type+"."+strconv.Itoa(p.Index))
		if p.State != pier.ProcessUp || p.Release != 4 || p.App != "psx" || p.StartedAt.IsZero() {
			t.Errorf("process %+v", p)
		}
	}
	if strings.Join(names, " ") != "web.1 web.2 worker.1" {
		t.Errorf("processes = %v", names)
	}
	if ps, err := s.Processes(ctx, "none"); err != nil || len(ps) != 0 {
		t.Errorf("Processes of an unknown app = %v, %v", ps, err)
	}

	var lines []pier.LogLine
	err = s.Logs(ctx, "psx", pier.LogOptions{Type: "web"}, func(l pier.LogLine) error {
		lines = append(lines, l)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The fake clientset answers every log request with "fake logs".
	var procs []string
	for _, l := range lines {
		procs = append(procs, l.Process)
		if l.Text != "fake logs" || l.App != "psx" || l.Time.IsZero() {
			t.Errorf("line %+v", l)
		}
	}
	if len(procs) != 2 || !(procs[0] == "web.1" && procs[1] == "web.2" || procs[0] == "web.2" && procs[1] == "web.1") {
		t.Errorf("log lines from %v, want web.1 and web.2", procs)
	}
	lines = nil
	if err := s.Logs(ctx, "psx", pier.LogOptions{Lines: 1}, func(l pier.LogLine) error { lines = append(lines, l); return nil }); err != nil || len(lines) != 1 {
		t.Errorf("Logs with Lines 1: %d lines, %v", len(lines), err)
	}

	// Following: ends without error when ctx does.
	fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.Logs(fctx, "psx", pier.LogOptions{Follow: true}, func(pier.LogLine) error { return nil }); err != nil {
		t.Errorf("follow: %v", err)
	}
}

func TestRun(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	d := cnbDeployment("runner", 2, "reg.example.com/runner:2", pier.Formation{"web": 1})
	var out syncBuffer
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := s.Run(ctx, d, pier.RunOptions{Command: []string{"rake", "db:migrate", "a b"}, Stdout: &out})
		res <- result{code, err}
	}()
	pod := waitRunPod(t, c, "pier-runner")
	if !strings.HasPrefix(pod.Name, "run-") || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod %s restart policy %s", pod.Name, pod.Spec.RestartPolicy)
	}
	wantLabels(t, "run pod", pod.Labels, map[string]string{"pier.dev/process-type": "run", "pier.dev/release": "v2", "app.kubernetes.io/managed-by": "pier"})
	ct := pod.Spec.Containers[0]
	if !reflect.DeepEqual(ct.Command, []string{"/cnb/lifecycle/launcher", "--", "rake", "db:migrate", "a b"}) {
		t.Errorf("run command = %q", ct.Command)
	}
	if ct.Image != "reg.example.com/runner:2" || ct.EnvFrom[0].SecretRef.Name != "config-v2" || ct.ReadinessProbe != nil {
		t.Errorf("run container = %+v", ct)
	}
	if _, err := c.CoreV1().Secrets("pier-runner").Get(ctx, "config-v2", metav1.GetOptions{}); err != nil {
		t.Errorf("no config for the one-off process: %v", err)
	}
	// The "kubelet": started, then exited with 3.
	pod = pod.DeepCopy()
	pod.Status = fakePodStatus(true, metav1.Now())
	if pod, err := c.CoreV1().Pods("pier-runner").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	} else {
		pod = pod.DeepCopy()
		pod.Status.Phase = corev1.PodFailed
		pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}
		if _, err := c.CoreV1().Pods("pier-runner").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r := <-res
	if r.err != nil || r.code != 3 {
		t.Fatalf("Run = %d, %v; want 3", r.code, r.err)
	}
	if out.String() != "fake logs" {
		t.Errorf("output = %q", out.String())
	}
	if _, err := c.CoreV1().Pods("pier-runner").Get(ctx, pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("run pod after Run: %v, want deleted", err)
	}

	// A command for an image build is given as it is.
	di := d
	di.Release.Build = &pier.Build{Strategy: pier.StrategyImage, Image: "alpine:3"}
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		code, err := s.Run(cctx, di, pier.RunOptions{Command: []string{"echo", "hi"}})
		res <- result{code, err}
	}()
	pod = waitRunPod(t, c, "pier-runner")
	if got := pod.Spec.Containers[0].Command; !reflect.DeepEqual(got, []string{"echo", "hi"}) {
		t.Errorf("image run command = %q", got)
	}
	cancel() // the caller went away: the pod is deleted
	r = <-res
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled Run = %d, %v", r.code, r.err)
	}
	if _, err := c.CoreV1().Pods("pier-runner").Get(ctx, pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("run pod after a cancelled Run: %v, want deleted", err)
	}

	if _, err := s.Run(ctx, d, pier.RunOptions{}); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("Run without a command: %v", err)
	}
}

func waitRunPod(t *testing.T, c *fakeCluster, ns string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pods, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "pier.dev/process-type=run"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 1 {
			return &pods.Items[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no run pod")
	return nil
}

func TestDestroy(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	if err := s.Destroy(ctx, "never"); err != nil {
		t.Errorf("Destroy of an app that never ran: %v", err)
	}
	if err := s.Apply(ctx, cnbDeployment("gone", 1, "reg.example.com/gone:1", pier.Formation{"web": 1})); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Namespaces().Get(ctx, "pier-gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace after Destroy: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	host := cnbDeployment("hosty", 1, "/var/lib/pier/builds/hosty/1", pier.Formation{"web": 1})
	host.Release.Build.Strategy = "host"
	if err := s.Apply(ctx, host); pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), "host strategy") {
		t.Errorf("host build: %v", err)
	}
	dash := cnbDeployment("dashy", 1, "reg.example.com/d:1", pier.Formation{"web-": 1})
	dash.Release.Build.ProcessTypes = map[string]string{"web-": "x"}
	if err := s.Apply(ctx, dash); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("type web-: %v", err)
	}
	bad := cnbDeployment("limits", 1, "reg.example.com/l:1", pier.Formation{"web": 1})
	bad.Limits = map[string]pier.Limits{"web": {Memory: "lots"}}
	if err := s.Apply(ctx, bad); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("bad limit: %v", err)
	}
	if err := s.Apply(ctx, pier.Deployment{App: "Bad_Name"}); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("bad app name: %v", err)
	}
}

func TestParseLogLine(t *testing.T) {
	e := parseLogLine([]byte("2026-11-23T10:00:00.123456789Z hello world"), true)
	if e.text != "hello world" || !e.t.Equal(time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)) {
		t.Errorf("parsed %+v", e)
	}
	e = parseLogLine([]byte("no stamp here"), true)
	if e.text != "no stamp here" || e.t.IsZero() {
		t.Errorf("parsed %+v", e)
	}
	long := strings.Repeat("x", logLineMax+100)
	var got []string
	err := scanLines(strings.NewReader("a\r\n"+long+"\nb"), func(b []byte) error { got = append(got, string(b)); return nil })
	if err != nil || len(got) != 3 || got[0] != "a" || len(got[1]) != logLineMax || got[2] != "b" {
		t.Errorf("scanLines: %v, %d lines", err, len(got))
	}
}

func TestProcessState(t *testing.T) {
	now := metav1.Now()
	ready := &corev1.Pod{Status: fakePodStatus(true, now)}
	starting := &corev1.Pod{Status: fakePodStatus(false, now)}
	stopping := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: fakePodStatus(true, now)}
	crashing := &corev1.Pod{Status: fakePodStatus(false, now)}
	crashing.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	crashing.Status.ContainerStatuses[0].RestartCount = 4
	crashing.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 2}
	for _, c := range []struct {
		p    *corev1.Pod
		want string
	}{{ready, pier.ProcessUp}, {starting, pier.ProcessStarting}, {stopping, pier.ProcessStopping}, {crashing, pier.ProcessCrashed}} {
		if got := processState(c.p); got != c.want {
			t.Errorf("state = %s, want %s", got, c.want)
		}
	}
	if got := podProblem(crashing); got != "crashed with exit code 2, restarted 4 times" {
		t.Errorf("problem = %q", got)
	}
	unsched := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available"}}}}
	if got := podProblem(unsched); got != "cannot be scheduled: 0/3 nodes are available" {
		t.Errorf("problem = %q", got)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Apps names the apps with a namespace Pier made (pier.AppLister), and
// NotifyDrift hears of what of them is deleted (pier.DriftNotifier).
func TestAppsAndDrift(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	var mu sync.Mutex
	var drifted []string
	s.NotifyDrift(func(app string) {
		mu.Lock()
		defer mu.Unlock()
		drifted = append(drifted, app)
	})
	for _, app := range []string{"one", "two"} {
		if err := s.Apply(ctx, cnbDeployment(app, 1, "reg.example.com/"+app+":1", pier.Formation{"web": 1})); err != nil {
			t.Fatal(err)
		}
	}
	foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pier-three"}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apps, err := s.Apps(ctx)
	if err != nil || !reflect.DeepEqual(apps, []string{"one", "two"}) {
		t.Fatalf("Apps: %v %v", apps, err)
	}
	if err := c.AppsV1().Deployments("pier-two").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), drifted...)
		mu.Unlock()
		if len(got) > 0 {
			if !reflect.DeepEqual(got, []string{"two"}) {
				t.Fatalf("drift reported for %v, want two", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deleting two's Deployment was not reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Per-app registry pull credentials (issue 8): a dockerconfigjson Secret in
// the app's namespace, for the platform's registry only, named by the
// imagePullSecrets of every pod; none without Config.PullCredentials.
func TestPullCredentials(t *testing.T) {
	c := newFakeCluster(t)
	var asked []string
	s := newFakeScheduler(t, c, Config{PullCredentials: func(app string) (string, string, string, error) {
		asked = append(asked, app)
		if app == "broken" {
			return "", "", "", errors.New("no key")
		}
		return "registry.example:5000", "pull." + app, "pull-pass-of-" + app, nil
	}})
	ctx := ctxT(t)
	d := cnbDeployment("shop", 3, "registry.example:5000/pier/shop:v3", pier.Formation{"web": 1, "worker": 1})
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	checkSecret := func() {
		t.Helper()
		sec, err := c.CoreV1().Secrets("pier-shop").Get(ctx, PullSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("no pull secret: %v", err)
		}
		if sec.Type != corev1.SecretTypeDockerConfigJson || len(sec.Data) != 1 {
			t.Errorf("pull secret type %s, keys %d", sec.Type, len(sec.Data))
		}
		wantLabels(t, "pull secret", sec.Labels, map[string]string{"app.kubernetes.io/managed-by": "pier", "pier.dev/app": "shop"})
		var dc struct {
			Auths map[string]struct{ Username, Password, Auth string }
		}
		if err := json.Unmarshal(sec.Data[corev1.DockerConfigJsonKey], &dc); err != nil {
			t.Fatal(err)
		}
		a, ok := dc.Auths["registry.example:5000"]
		if len(dc.Auths) != 1 || !ok || a.Username != "pull.shop" || a.Password != "pull-pass-of-shop" ||
			a.Auth != base64.StdEncoding.EncodeToString([]byte("pull.shop:pull-pass-of-shop")) {
			t.Errorf("pull secret's docker config: %+v", dc)
		}
	}
	checkSecret()
	for _, typ := range []string{"web", "worker"} {
		ps := getDeployment(t, c, "pier-shop", typ).Spec.Template.Spec.ImagePullSecrets
		if len(ps) != 1 || ps[0].Name != PullSecretName {
			t.Errorf("%s: imagePullSecrets %v, want [%s]", typ, ps, PullSecretName)
		}
	}
	run, err := s.runPodConfig(d, "run-x", []string{"ls"})
	if err != nil {
		t.Fatal(err)
	}
	if ps := run.Spec.ImagePullSecrets; len(ps) != 1 || *ps[0].Name != PullSecretName {
		t.Errorf("one-off pod: imagePullSecrets %v", ps)
	}
	// A later release keeps it (old config Secrets go, it stays).
	if err := s.Apply(ctx, cnbDeployment("shop", 4, "registry.example:5000/pier/shop:v4", pier.Formation{"web": 1, "worker": 1})); err != nil {
		t.Fatal(err)
	}
	checkSecret()
	if !slices.Contains(asked, "shop") {
		t.Errorf("credentials asked for %v", asked)
	}
	// No credentials, no deploy: pods that could not pull are not made.
	if err := s.Apply(ctx, cnbDeployment("broken", 1, "registry.example:5000/pier/broken:v1", pier.Formation{"web": 1})); err == nil {
		t.Error("Apply went on without the app's pull credentials")
	}
	if _, err := c.AppsV1().Deployments("pier-broken").Get(ctx, "web", metav1.GetOptions{}); err == nil {
		t.Error("a Deployment was made without pull credentials")
	}

	// Without the hook: no Secret, no imagePullSecrets.
	c2 := newFakeCluster(t)
	s2 := newFakeScheduler(t, c2, Config{})
	if err := s2.Apply(ctx, cnbDeployment("plain", 1, "registry.example:5000/pier/plain:v1", pier.Formation{"web": 1})); err != nil {
		t.Fatal(err)
	}
	if ps := getDeployment(t, c2, "pier-plain", "web").Spec.Template.Spec.ImagePullSecrets; len(ps) != 0 {
		t.Errorf("imagePullSecrets without pull credentials: %v", ps)
	}
	if _, err := c2.CoreV1().Secrets("pier-plain").Get(ctx, PullSecretName, metav1.GetOptions{}); err == nil {
		t.Error("a pull secret without pull credentials")
	}
}
