package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
// role are refused. It checks the service tokens' Role too: the
// controller gets and updates the chart's Secret pier-service-tokens, as
// pierd --service-tokens-secret does, and no other Secret by name; and
// applying the chart again leaves the keys it wrote.
func TestKubeChartRBAC(t *testing.T) {
	e := newKubeEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The controller's: the ServiceAccount pier and the scheduler's role
	// (the routers' are TestKubeChartRouterRBAC's).
	ns, who := applyChartRBAC(t, ctx, e, "rbac", "pier", "-scheduler")

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
	checkChartServiceTokens(t, ctx, e, as, ns)
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

// checkChartServiceTokens checks, as the controller's ServiceAccount (as),
// what pierd --service-tokens-secret does in the release namespace ns:
// get the chart's empty Secret pier-service-tokens and update it with the
// tokens; reading another Secret by name, or updating it, is refused.
// Then the chart's objects, applied again (an upgrade), keep pierd's keys.
func checkChartServiceTokens(t *testing.T, ctx context.Context, e *kubeEnv, as kubernetes.Interface, ns string) {
	t.Helper()
	if _, err := e.admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pier-database", Namespace: ns}, StringData: map[string]string{"url": "postgres://placeholder"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of a new Role from a watch: a moment's grace.
	sec, err := as.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{})
	for deadline := time.Now().Add(5 * time.Second); apierrors.IsForbidden(err) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		sec, err = as.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{})
	}
	if err != nil {
		t.Fatalf("as the chart's ServiceAccount, get the Secret pier-service-tokens: %v", err)
	}
	if len(sec.Data) != 0 {
		t.Errorf("the chart's Secret pier-service-tokens holds %d keys, want none", len(sec.Data))
	}
	sec.Data = map[string][]byte{"router": []byte("pier_router_placeholder"), "builder": []byte("pier_builder_placeholder")}
	if _, err := as.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{FieldManager: "pierd"}); err != nil {
		t.Errorf("as the chart's ServiceAccount, update the Secret pier-service-tokens: %v", err)
	}
	for what, call := range map[string]func() error{
		"get another Secret of the release namespace": func() error {
			_, err := as.CoreV1().Secrets(ns).Get(ctx, "pier-database", metav1.GetOptions{})
			return err
		},
		"update another Secret of the release namespace": func() error {
			_, err := as.CoreV1().Secrets(ns).Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pier-database", Namespace: ns}}, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		},
		"get pier-service-tokens in another namespace": func() error {
			_, err := as.CoreV1().Secrets("kube-system").Get(ctx, "pier-service-tokens", metav1.GetOptions{})
			return err
		},
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("as the chart's ServiceAccount, %s: %v, want 403 Forbidden", what, err)
		}
	}
	// An upgrade applies the chart's Secret again, with no data: pierd's
	// keys stay.
	objs, err := testenv.Manifests(testenv.RunHelm(t, testenv.Helm(t), "template", "pier", "../../deploy/helm/pier", "--namespace", ns, "--skip-tests", "--show-only", "templates/service-tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.ApplyManifests(ctx, e.k.Config, objs, "pier-rbac-test", false); err != nil {
		t.Fatal(err)
	}
	if sec, err = e.admin.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{}); err != nil || string(sec.Data["router"]) != "pier_router_placeholder" || string(sec.Data["builder"]) != "pier_builder_placeholder" {
		t.Errorf("the Secret pier-service-tokens, the chart applied again: %v, keys %d; want pierd's kept", err, len(sec.Data))
	}
}

// applyChartRBAC renders the chart into a fresh namespace prefix-<random>,
// creates that namespace and applies the ServiceAccount sa with the
// ClusterRole and ClusterRoleBinding whose names end in suffix, and the
// Secret pier-service-tokens with its Role and RoleBinding (the
// controller's), all removed after the test. It returns the namespace and
// the impersonation of that ServiceAccount.
func applyChartRBAC(t *testing.T, ctx context.Context, e *kubeEnv, prefix, sa, suffix string) (string, *rest.ImpersonationConfig) {
	t.Helper()
	helm := testenv.Helm(t)
	b := make([]byte, 3)
	rand.Read(b)
	ns := prefix + "-" + hex.EncodeToString(b)
	objs, err := testenv.Manifests(testenv.RunHelm(t, helm, "template", "pier", "../../deploy/helm/pier", "--namespace", ns, "--skip-tests"))
	if err != nil {
		t.Fatal(err)
	}
	rbac, found := chartRBAC(objs, sa, suffix)
	if len(rbac) != 6 || found == "" {
		t.Fatalf("the chart renders %d of ServiceAccount %s, ClusterRole and ClusterRoleBinding *%s, Secret, Role and RoleBinding pier-service-tokens", len(rbac), sa, suffix)
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
	return ns, &rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
}

// chartRBAC picks from the chart's objects the ServiceAccount named sa,
// the ClusterRole and ClusterRoleBinding whose names end in suffix, and
// the service tokens' Secret, Role and RoleBinding.
func chartRBAC(objs []*unstructured.Unstructured, sa, suffix string) ([]*unstructured.Unstructured, string) {
	var rbac []*unstructured.Unstructured
	found := ""
	for _, o := range objs {
		switch o.GetKind() {
		case "Secret", "Role", "RoleBinding":
			if o.GetName() == "pier-service-tokens" {
				rbac = append(rbac, o)
			}
		case "ServiceAccount":
			if o.GetName() == sa {
				found = sa
				rbac = append(rbac, o)
			}
		case "ClusterRole", "ClusterRoleBinding":
			if strings.HasSuffix(o.GetName(), suffix) {
				rbac = append(rbac, o)
			}
		}
	}
	return rbac, found
}

// TestKubeChartRouterRBAC proves the routers' RBAC of the Helm chart
// (router.endpoints=kubernetes): as the routers' ServiceAccount,
// NewEndpoints (what `pierd router --endpoints kubernetes` runs) syncs its
// informers and builds an app's routes from its web Service and
// EndpointSlice; listing services and endpointslices works, and reading
// a Secret, listing pods or namespaces, or writing anything is refused.
func TestKubeChartRouterRBAC(t *testing.T) {
	e := newKubeEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, who := applyChartRBAC(t, ctx, e, "rbac-router", "pier-router", "-router")
	app := e.appName(t, "rr")
	appNS := Namespace(app)
	t.Cleanup(func() { e.admin.CoreV1().Namespaces().Delete(context.Background(), appNS, metav1.DeleteOptions{}) })
	// An app's web Service and one ready endpoint (a TEST-NET-1 address:
	// the routes are only read, never dialled).
	labels := map[string]string{LabelManagedBy: managedBy, LabelApp: app}
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CoreV1().Services(appNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: webType, Labels: labels},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready, port := true, int32(5000)
	if _, err := e.admin.DiscoveryV1().EndpointSlices(appNS).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{LabelManagedBy: managedBy, LabelApp: app, discoveryv1.LabelServiceName: webType}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.7"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	rc := rest.CopyConfig(e.k.Config)
	rc.Impersonate = *who
	start := time.Now()
	eps, err := NewEndpoints(rc, 30*time.Second)
	if err != nil {
		t.Fatalf("as the router's ServiceAccount, NewEndpoints: %v", err)
	}
	defer eps.Close()
	for deadline := time.Now().Add(20 * time.Second); fmt.Sprint(eps.Routes()[app]) != "[192.0.2.7:5000]"; {
		if time.Now().After(deadline) {
			t.Fatalf("as the router's ServiceAccount, the routes of %s: %v, want [192.0.2.7:5000]", app, eps.Routes()[app])
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("as the router's ServiceAccount: informers synced and routes built in %s", time.Since(start).Round(time.Millisecond))

	as, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"list endpointslices": func() error {
			_, err := as.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			return err
		},
		"list services":       func() error { _, err := as.CoreV1().Services("").List(ctx, metav1.ListOptions{}); return err },
		"get the web Service": func() error { _, err := as.CoreV1().Services(appNS).Get(ctx, webType, metav1.GetOptions{}); return err },
	} {
		if err := call(); err != nil {
			t.Errorf("as the router's ServiceAccount, %s: %v", what, err)
		}
	}
	for what, call := range map[string]func() error{
		"get the service tokens Secret": func() error {
			_, err := as.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{})
			return err
		},
		"list secrets":    func() error { _, err := as.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err },
		"list pods":       func() error { _, err := as.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err },
		"list namespaces": func() error { _, err := as.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); return err },
		"list nodes":      func() error { _, err := as.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err },
		"delete the web Service": func() error {
			return as.CoreV1().Services(appNS).Delete(ctx, webType, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		},
		"create an endpointslice": func() error {
			_, err := as.DiscoveryV1().EndpointSlices(appNS).Create(ctx, &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Name: "x"}, AddressType: discoveryv1.AddressTypeIPv4,
			}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		},
		"list deployments": func() error { _, err := as.AppsV1().Deployments("").List(ctx, metav1.ListOptions{}); return err },
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("as the router's ServiceAccount, %s: %v, want 403 Forbidden", what, err)
		}
	}
}
