package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pierpaas/pier/internal/testenv"
)

// TestKubeBuildChartRBAC proves the Helm chart's builder RBAC
// (deploy/helm/pier with builder.enabled: the build namespace, its Role
// and RoleBinding, and the controller's ServiceAccount with the
// scheduler's ClusterRole, which lets it get the namespace) is what this
// strategy needs: it applies them as helm template renders them and runs
// TestKubeBuild and TestKubeBuildFails with every request of the strategy
// impersonating the controller's ServiceAccount (create the Secret and
// the Pod, own the Secret by the Pod, watch the Pod, stream its logs,
// delete both, delete leftovers by collection); then checks that the
// Role reaches no further: no Secret reads, nothing in other namespaces.
// In the release namespace the controller (pierd all, here) gets and
// updates the service tokens' Secret, which the chart makes empty, and no
// other Secret.
// The rights are the controller's (pierd all --ssh-addr=off runs the
// build strategy): the builder's own pods (pierd builder) mount no
// service-account token and no binding names their ServiceAccount.
func TestKubeBuildChartRBAC(t *testing.T) {
	helm := testenv.Helm(t)
	k := testenv.KubeCluster(t)
	admin, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := make([]byte, 3)
	rand.Read(b)
	ns := "rbac-build-" + hex.EncodeToString(b)
	buildNS := "pier-builds-" + hex.EncodeToString(b)
	objs, err := testenv.Manifests(testenv.RunHelm(t, helm, "template", "pier", "../../deploy/helm/pier", "--namespace", ns, "--skip-tests",
		"--set", "builder.enabled=true", "--set", "registry.host=registry.example", "--set", "builder.namespace="+buildNS))
	if err != nil {
		t.Fatal(err)
	}
	checkChartBuilderPods(t, objs)
	// The controller's identity and rights; the routers' are not needed.
	var rbac []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "Role", "RoleBinding":
			rbac = append(rbac, o)
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			if o.GetName() == "pier" || o.GetName() == ns+"-pier-scheduler" {
				rbac = append(rbac, o)
			}
		case "Secret":
			if o.GetName() == "pier-service-tokens" {
				rbac = append(rbac, o)
			}
		}
	}
	if len(rbac) != 9 {
		t.Fatalf("the chart renders %d of the build Namespace, Role, RoleBinding, the controller's ServiceAccount, ClusterRole, ClusterRoleBinding and the service tokens' Secret, Role, RoleBinding, want 9", len(rbac))
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		admin.CoreV1().Namespaces().Delete(bg, ns, metav1.DeleteOptions{})
		admin.CoreV1().Namespaces().Delete(bg, buildNS, metav1.DeleteOptions{})
		admin.RbacV1().ClusterRoles().Delete(bg, ns+"-pier-scheduler", metav1.DeleteOptions{})
		admin.RbacV1().ClusterRoleBindings().Delete(bg, ns+"-pier-scheduler", metav1.DeleteOptions{})
	})
	if err := testenv.ApplyManifests(ctx, k.Config, rbac, "pier-rbac-test", false); err != nil {
		t.Fatal(err)
	}
	who := &rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":pier",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}

	// Outside the Role: refused.
	rc := rest.CopyConfig(k.Config)
	rc.Impersonate = *who
	as, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"get a secret in the build namespace": func() error {
			_, err := as.CoreV1().Secrets(buildNS).Get(ctx, "any", metav1.GetOptions{})
			return err
		},
		"delete secrets by collection in the release namespace": func() error {
			return as.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}, metav1.ListOptions{})
		},
		"update a secret in the release namespace": func() error {
			_, err := as.CoreV1().Secrets(ns).Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}}, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		},
		"get another secret in the release namespace": func() error {
			_, err := as.CoreV1().Secrets(ns).Get(ctx, "pier-builder-ssh", metav1.GetOptions{})
			return err
		},
		"delete pods by collection in the release namespace": func() error {
			return as.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}, metav1.ListOptions{})
		},
		"create pods/exec in the build namespace": func() error {
			return as.CoreV1().RESTClient().Post().Namespace(buildNS).Resource("pods").Name("x").SubResource("exec").Do(ctx).Error()
		},
		"update the build namespace's Role": func() error {
			r, err := admin.RbacV1().Roles(buildNS).Get(ctx, "pier-builder", metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = as.RbacV1().Roles(buildNS).Update(ctx, r, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		},
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("as the chart's controller ServiceAccount, %s: %v, want 403 Forbidden", what, err)
		}
	}
	// Inside it, what the flows below may get by without (a watch that
	// fails falls back to polling): allowed.
	w, err := as.CoreV1().Pods(buildNS).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "x").String()})
	if err != nil {
		t.Errorf("as the chart's controller ServiceAccount, watch a build pod: %v", err)
	} else {
		w.Stop()
	}
	if _, err := as.CoreV1().Namespaces().Get(ctx, buildNS, metav1.GetOptions{}); err != nil {
		t.Errorf("as the chart's controller ServiceAccount, get the build namespace: %v", err)
	}
	// pierd --service-tokens-secret: get, then update with the tokens.
	if sec, err := as.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{}); err != nil {
		t.Errorf("as the chart's controller ServiceAccount, get the service tokens Secret: %v", err)
	} else {
		sec.Data = map[string][]byte{"router": []byte("pier_router_placeholder"), "builder": []byte("pier_builder_placeholder")}
		if _, err := as.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{FieldManager: "pierd", DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("as the chart's controller ServiceAccount, update the service tokens Secret: %v", err)
		}
	}
	if t.Failed() {
		return
	}

	// The build integration tests, every request of the strategy as the
	// ServiceAccount, in the chart's build namespace.
	impersonateBuilder, chartBuildNamespace = who, buildNS
	defer func() { impersonateBuilder, chartBuildNamespace = nil, "" }()
	t.Run("Build", TestKubeBuild)
	t.Run("BuildFails", TestKubeBuildFails)
}

// checkChartBuilderPods checks the chart's split of the builder: the
// controller builds but takes no pushes (--ssh-addr=off), the builder's
// Deployment runs pierd builder with no Kubernetes credentials, under a
// ServiceAccount no rendered binding names.
func checkChartBuilderPods(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	deployments := map[string]*appsv1.Deployment{}
	bound := map[string]bool{}
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			fromUnstructuredJSON(t, o, &d)
			deployments[d.Name] = &d
		case "RoleBinding", "ClusterRoleBinding":
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, sub := range subjects {
				if m, ok := sub.(map[string]any); ok {
					bound[m["name"].(string)] = true
				}
			}
		}
	}
	ctl, b := deployments["pier-controller"], deployments["pier-builder"]
	if ctl == nil || b == nil {
		t.Fatalf("the chart renders Deployments %v, want pier-controller and pier-builder", deployments)
	}
	if args := ctl.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--ssh-addr=off") || !slices.Contains(args, "--build-strategy=kubernetes") {
		t.Errorf("controller args %v, want --build-strategy=kubernetes --ssh-addr=off", args)
	}
	ps := b.Spec.Template.Spec
	if args := ps.Containers[0].Args; len(args) == 0 || args[0] != "builder" {
		t.Errorf("builder args %v, want pierd builder", args)
	}
	sa := ps.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken || bound[sa] {
		t.Errorf("builder pods: service account %q (bound: %v), automount %v; want no Kubernetes credentials", sa, bound[sa], ps.AutomountServiceAccountToken)
	}
}

func fromUnstructuredJSON(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}
