package main_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier/internal/testenv"
)

// TestKubernetesScheduler: pierd with --scheduler=kubernetes converges apps
// onto a real control plane, as the CLI user drives it: an image deployed
// with builds:create runs as a Deployment, scales, and goes with its app.
func TestKubernetesScheduler(t *testing.T) {
	kube := testenv.KubeCluster(t)
	data := filepath.Join(t.TempDir(), "data")
	d := startPierd(t, []string{"PIER_DATA_DIR=" + data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0"},
		"controller", "--scheduler=kubernetes", "--kubeconfig", kube.Kubeconfig)
	c := newCLI(t)
	c.must("kube test password\n", "register", d.url, "--username", "ops", "--bootstrap-token-file", filepath.Join(data, "bootstrap-token"), "--password-stdin")
	c.must("", "apps:create", "kubeapp")
	c.must("", "config:set", "GREETING=hi", "-a", "kubeapp")
	if out := c.must("", "builds:create", "registry.example/team/kubeapp:v1", "-a", "kubeapp"); !strings.Contains(out, "v3") {
		t.Fatalf("builds:create:\n%s", out)
	}
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep, err := cs.AppsV1().Deployments("pier-kubeapp").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no web Deployment after builds:create: %v\n%s", err, d.out)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "registry.example/team/kubeapp:v1" {
		t.Fatalf("web runs %q", img)
	}
	if dep.Status.ReadyReplicas != 1 {
		t.Fatalf("web: %d ready, want 1 once builds:create answered", dep.Status.ReadyReplicas)
	}
	c.must("", "scale", "web=3", "-a", "kubeapp")
	if dep, err = cs.AppsV1().Deployments("pier-kubeapp").Get(ctx, "web", metav1.GetOptions{}); err != nil || dep.Status.ReadyReplicas != 3 {
		t.Fatalf("after scale web=3: %v %+v", err, dep.Status)
	}
	if out := c.must("", "ps", "-a", "kubeapp"); !strings.Contains(out, "=== web (3)") {
		t.Fatalf("ps:\n%s", out)
	}
	c.must("", "apps:destroy", "-a", "kubeapp", "--confirm", "kubeapp")
	// The namespace goes in the background (its pods' grace period).
	eventually(t, 30*time.Second, "namespace pier-kubeapp is being deleted", func() (bool, string) {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "pier-kubeapp", metav1.GetOptions{})
		if err != nil {
			return true, ""
		}
		return ns.DeletionTimestamp != nil, fmt.Sprint(ns.Status)
	})
	d.stop(t)
}
