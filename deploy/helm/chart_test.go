// Package helm holds the tests of Pier's Helm chart (deploy/helm/pier) and
// of the plain manifests rendered from it (deploy/manifests/pier.yaml).
package helm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	chartDir      = "pier"
	manifestsFile = "../manifests/pier.yaml"
	// EnvUpdateManifests=1 makes TestManifestsUpToDate write the manifests
	// instead of comparing them (`make manifests`).
	EnvUpdateManifests = "PIER_UPDATE_MANIFESTS"
)

const manifestsHeader = `# Pier on Kubernetes, for kubectl: deploy/helm/pier rendered with its default
# values (release pier, namespace pier) by ` + "`make manifests`" + `. Do not edit: change
# the chart and run make manifests. Read the README's "Install on Kubernetes"
# first: create the namespace, the database Secret, then apply this file
# (kubectl apply --server-side -f deploy/manifests/pier.yaml), then the router's
# token Secret. Change the domain (pier.example.com) and image before applying.
`

// renderManifests is the chart as the committed manifests hold it.
func renderManifests(t *testing.T, helm string) string {
	return manifestsHeader + testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier", "--skip-tests")
}

func TestChartLint(t *testing.T) {
	helm := testenv.Helm(t)
	start := time.Now()
	out := testenv.RunHelm(t, helm, "lint", "--strict", chartDir)
	t.Logf("helm lint (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	testenv.RunHelm(t, helm, "lint", "--strict", chartDir, "--set", "postgresql.enabled=true", "--set", "router.service.type=NodePort", "--set", "router.service.nodePort=30080")
}

// kinds counts the rendered objects by kind.
func kinds(t *testing.T, yamlText string) (map[string]int, []*unstructured.Unstructured) {
	t.Helper()
	objs, err := testenv.Manifests(yamlText)
	if err != nil {
		t.Fatal(err)
	}
	k := map[string]int{}
	for _, o := range objs {
		k[o.GetKind()]++
	}
	return k, objs
}

func TestChartTemplate(t *testing.T) {
	helm := testenv.Helm(t)
	// Default values: an external database, no in-chart Postgres.
	got, objs := kinds(t, testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier"))
	want := map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 2, "Deployment": 2, "PodDisruptionBudget": 1, "Pod": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("default render: %v, want %v", got, want)
	}
	for _, o := range objs {
		if o.GetKind() == "Pod" && o.GetAnnotations()["helm.sh/hook"] != "test" {
			t.Errorf("pod %s is not a helm test hook", o.GetName())
		}
		if o.GetKind() == "Secret" {
			t.Errorf("default render has a Secret %s: the database URL is the operator's", o.GetName())
		}
		if o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && o.GetNamespace() != "pier" {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		fromUnstructured(t, o, &d)
		ps := d.Spec.Template.Spec
		c := ps.Containers[0]
		if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: probes or resource requests missing", d.Name)
		}
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem writable", d.Name)
		}
		switch d.Name {
		case "pier-controller":
			if ps.ServiceAccountName != "pier" || c.Args[0] != "controller" {
				t.Errorf("controller: service account %q, args %v", ps.ServiceAccountName, c.Args)
			}
			if !strings.Contains(strings.Join(c.Args, " "), "--router-selector=app.kubernetes.io/name=pier,app.kubernetes.io/instance=pier,app.kubernetes.io/component=router") {
				t.Errorf("controller args %v: the NetworkPolicy's router selector is not the router's labels", c.Args)
			}
		case "pier-router":
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
				t.Error("router pods get a service-account token")
			}
			if c.Args[0] != "router" || !strings.Contains(strings.Join(c.Args, " "), "--controller-internal=http://pier-controller:9091") {
				t.Errorf("router args %v", c.Args)
			}
			for k, v := range map[string]string{"app.kubernetes.io/name": "pier", "app.kubernetes.io/instance": "pier", "app.kubernetes.io/component": "router"} {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("router pod label %s=%q, want %q", k, d.Spec.Template.Labels[k], v)
				}
			}
		default:
			t.Errorf("unexpected Deployment %s", d.Name)
		}
	}

	// The in-chart Postgres.
	got, _ = kinds(t, testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier", "--set", "postgresql.enabled=true", "--skip-tests"))
	if got["StatefulSet"] != 1 || got["Secret"] != 1 || got["Service"] != 3 {
		t.Errorf("with postgresql.enabled: %v", got)
	}
}

func TestManifestsUpToDate(t *testing.T) {
	helm := testenv.Helm(t)
	fresh := renderManifests(t, helm)
	if os.Getenv(EnvUpdateManifests) == "1" {
		if err := os.WriteFile(manifestsFile, []byte(fresh), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", manifestsFile)
		return
	}
	committed, err := os.ReadFile(manifestsFile)
	if err != nil {
		t.Fatalf("%v: run make manifests", err)
	}
	if string(committed) != fresh {
		t.Errorf("%s differs from a fresh render of the chart: run make manifests", manifestsFile)
	}
}

func fromUnstructured(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonUnmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}

// TestChartInstallKube applies the rendered chart to the tests' control
// plane (server-side apply: a dry run, then for real) in a fresh namespace
// and waits for the controller's and router's Deployments to be Available
// on kwok's nodes. kwok runs no containers: pods become Ready by kwok's
// stages, images need not exist, and the helm test Pod cannot run (it is
// left out, as --skip-tests does).
func TestChartInstallKube(t *testing.T) {
	helm := testenv.Helm(t)
	k := testenv.KubeCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := make([]byte, 3)
	rand.Read(b)
	ns := "pier-chart-" + hex.EncodeToString(b)
	cfg := k.Config
	cfg.QPS, cfg.Burst = 50, 100
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, objs := kinds(t, testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", ns, "--skip-tests"))

	// Dry run first: the API server validates every object and stores
	// none (the namespace does not even exist yet for namespaced ones, so
	// it is made first, as the README says).
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		admin.CoreV1().Namespaces().Delete(bg, ns, metav1.DeleteOptions{})
		for _, o := range objs {
			if o.GetKind() == "ClusterRole" {
				admin.RbacV1().ClusterRoles().Delete(bg, o.GetName(), metav1.DeleteOptions{})
			}
			if o.GetKind() == "ClusterRoleBinding" {
				admin.RbacV1().ClusterRoleBindings().Delete(bg, o.GetName(), metav1.DeleteOptions{})
			}
		}
	})
	start := time.Now()
	if err := testenv.ApplyManifests(ctx, cfg, objs, "pier-chart-test", true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if _, err := admin.AppsV1().Deployments(ns).Get(ctx, "pier-controller", metav1.GetOptions{}); err == nil {
		t.Fatal("the dry run stored the controller's Deployment")
	}
	t.Logf("server-side apply dry run of %d objects: %s", len(objs), time.Since(start).Round(time.Millisecond))

	// The Secrets the operator makes (README): the database URL and the
	// router's token. Placeholders: nothing runs them here.
	for name, data := range map[string]map[string]string{
		"pier-database":     {"url": "postgres://pier:placeholder@db.invalid:5432/pier"},
		"pier-router-token": {"token": "placeholder"},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	if err := testenv.ApplyManifests(ctx, cfg, objs, "pier-chart-test", false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pier-controller", "pier-router"} {
		for {
			d, err := admin.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if available(d) {
				t.Logf("%s Available (%d/%d ready) %s after apply", name, d.Status.ReadyReplicas, *d.Spec.Replicas, time.Since(start).Round(time.Millisecond))
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s not Available: %+v", name, d.Status)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, n := range k.Nodes {
		nodes[n] = true
	}
	for _, p := range pods.Items {
		if !nodes[p.Spec.NodeName] {
			t.Errorf("pod %s on %q, not a kwok node", p.Name, p.Spec.NodeName)
		}
	}
	if len(pods.Items) != 3 {
		t.Errorf("%d pods, want 3 (1 controller, 2 routers)", len(pods.Items))
	}
}

func available(d *appsv1.Deployment) bool {
	if d.Status.ObservedGeneration < d.Generation || d.Spec.Replicas == nil || d.Status.AvailableReplicas < *d.Spec.Replicas || d.Status.UpdatedReplicas < *d.Spec.Replicas {
		return false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func jsonUnmarshal(b []byte, into any) error { return json.Unmarshal(b, into) }
