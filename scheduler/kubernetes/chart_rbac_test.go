package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pierpaas/pier/internal/testenv"
)

// impersonateScheduler, when set, makes newKubeEnv's schedulers act as
// that user: TestKubeChartRBAC runs the integration tests as the Helm
// chart's ServiceAccount.
var impersonateScheduler *rest.ImpersonationConfig

// TestKubeChartRBAC proves the Helm chart's RBAC (deploy/helm/pier,
// templates/rbac.yaml) is what the scheduler needs: it applies the chart's
// ServiceAccount, ClusterRole and ClusterRoleBinding, as rendered by helm
// template, and runs the scheduler's integration tests with every request
// impersonating that ServiceAccount; then checks that requests outside the
// role are refused.
func TestKubeChartRBAC(t *testing.T) {
	helm := testenv.Helm(t)
	e := newKubeEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := make([]byte, 3)
	rand.Read(b)
	ns := "rbac-" + hex.EncodeToString(b)
	objs, err := testenv.Manifests(testenv.RunHelm(t, helm, "template", "pier", "../../deploy/helm/pier", "--namespace", ns, "--skip-tests"))
	if err != nil {
		t.Fatal(err)
	}
	var rbac []*unstructured.Unstructured
	sa := ""
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			sa = o.GetName()
			fallthrough
		case "ClusterRole", "ClusterRoleBinding":
			rbac = append(rbac, o)
		}
	}
	if len(rbac) != 3 || sa == "" {
		t.Fatalf("the chart renders %d of ServiceAccount, ClusterRole, ClusterRoleBinding", len(rbac))
	}
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		e.admin.CoreV1().Namespaces().Delete(bg, ns, metav1.DeleteOptions{})
		for _, o := range rbac {
			switch o.GetKind() {
			case "ClusterRole":
				e.admin.RbacV1().ClusterRoles().Delete(bg, o.GetName(), metav1.DeleteOptions{})
			case "ClusterRoleBinding":
				e.admin.RbacV1().ClusterRoleBindings().Delete(bg, o.GetName(), metav1.DeleteOptions{})
			}
		}
	})
	if err := testenv.ApplyManifests(ctx, e.k.Config, rbac, "pier-rbac-test", false); err != nil {
		t.Fatal(err)
	}
	who := &rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}

	// Outside the role: refused.
	rc := rest.CopyConfig(e.k.Config)
	rc.Impersonate = *who
	as, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"list nodes": func() error { _, err := as.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err },
		"list configmaps in kube-system": func() error {
			_, err := as.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
		"get a secret by name": func() error {
			_, err := as.CoreV1().Secrets("kube-system").Get(ctx, "any", metav1.GetOptions{})
			return err
		},
		"list cluster roles": func() error { _, err := as.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); return err },
		"create a service account": func() error {
			_, err := as.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		},
		"create pods/exec": func() error {
			return as.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name("x").SubResource("exec").Do(ctx).Error()
		},
		"delete a NetworkPolicy": func() error {
			return as.NetworkingV1().NetworkPolicies(ns).Delete(ctx, NetworkPolicyName, metav1.DeleteOptions{})
		},
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("as the chart's ServiceAccount, %s: %v, want 403 Forbidden", what, err)
		}
	}
	// Inside it: allowed (the role is bound at all).
	if _, err := as.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy}); err != nil {
		t.Fatalf("as the chart's ServiceAccount, list namespaces: %v", err)
	}
	if t.Failed() {
		return
	}

	// The scheduler's integration tests, every request as the ServiceAccount.
	impersonateScheduler = who
	defer func() { impersonateScheduler = nil }()
	for name, test := range map[string]func(*testing.T){
		"ApplyScaleConfigRollback":   TestKubeApplyScaleConfigRollback,
		"SteadyStateRequests":        TestKubeSteadyStateRequests,
		"Logs":                       TestKubeLogs,
		"Run":                        TestKubeRun,
		"DestroyAndForeignNamespace": TestKubeDestroyAndForeignNamespace,
		"RolloutNeverReady":          TestKubeRolloutNeverReady,
		"RoutesFromEndpointSlices":   TestKubeRoutesFromEndpointSlices,
	} {
		t.Run(name, test)
	}
}
