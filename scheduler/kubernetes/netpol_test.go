package kubernetes

import (
	"reflect"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pierpaas/pier"
)

// countNetpolWrites counts the fake clientset's writes of NetworkPolicies.
func countNetpolWrites(c *fakeCluster) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetResource().Resource == "networkpolicies" && a.GetVerb() != "list" && a.GetVerb() != "watch" && a.GetVerb() != "get" {
			n++
		}
	}
	return n
}

func TestApplyNetworkPolicy(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{})
	ctx := ctxT(t)
	d := cnbDeployment("shop", 1, "registry.example/shop:v1", pier.Formation{"web": 1})
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	np, err := c.NetworkingV1().NetworkPolicies("pier-shop").Get(ctx, NetworkPolicyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels(t, "networkpolicy", np.Labels, map[string]string{LabelManagedBy: "pier", LabelApp: "shop"})
	if len(np.Spec.PodSelector.MatchLabels) != 0 || len(np.Spec.PodSelector.MatchExpressions) != 0 {
		t.Errorf("pod selector %v: want every pod of the namespace", np.Spec.PodSelector)
	}
	if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policy types %v, want Ingress only", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 || len(np.Spec.Ingress[0].Ports) != 0 {
		t.Fatalf("ingress %+v: want one rule from one peer", np.Spec.Ingress)
	}
	peer := np.Spec.Ingress[0].From[0]
	if peer.NamespaceSelector == nil || !reflect.DeepEqual(peer.NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": "pier"}) {
		t.Errorf("namespace selector %v, want the default router namespace pier", peer.NamespaceSelector)
	}
	if peer.PodSelector == nil || !reflect.DeepEqual(peer.PodSelector.MatchLabels, DefaultRouterPodLabels()) {
		t.Errorf("pod selector %v, want %v", peer.PodSelector, DefaultRouterPodLabels())
	}
	if peer.IPBlock != nil {
		t.Errorf("ip block %v: want none", peer.IPBlock)
	}

	// A no-op Apply does not write it again.
	waitFor(t, 5*time.Second, "the policy in the cache", func() bool {
		_, err := s.netpols.NetworkPolicies("pier-shop").Get(NetworkPolicyName)
		return err == nil
	})
	before := countNetpolWrites(c)
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	if n := countNetpolWrites(c) - before; n != 0 {
		t.Errorf("a no-op Apply wrote the NetworkPolicy %d times", n)
	}

	// Another router selector (pierd --router-namespace/--router-selector)
	// rewrites it.
	s2 := newFakeScheduler(t, c, Config{RouterNamespace: "edge", RouterPodLabels: map[string]string{"role": "router"}})
	if err := s2.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	np, err = c.NetworkingV1().NetworkPolicies("pier-shop").Get(ctx, NetworkPolicyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	peer = np.Spec.Ingress[0].From[0]
	if peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "edge" || !reflect.DeepEqual(peer.PodSelector.MatchLabels, map[string]string{"role": "router"}) {
		t.Errorf("after a selector change: peer %+v", peer)
	}

	// App pods carry no service-account token.
	dep := getDeployment(t, c, "pier-shop", "web")
	if dep.Spec.Template.Spec.AutomountServiceAccountToken == nil || *dep.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("app pods mount a service-account token")
	}
}

func TestNetworkPolicyDisabled(t *testing.T) {
	c := newFakeCluster(t)
	s := newFakeScheduler(t, c, Config{DisableNetworkPolicy: true})
	ctx := ctxT(t)
	if err := s.Apply(ctx, cnbDeployment("shop", 1, "registry.example/shop:v1", pier.Formation{"web": 1})); err != nil {
		t.Fatal(err)
	}
	_, err := c.NetworkingV1().NetworkPolicies("pier-shop").Get(ctx, NetworkPolicyName, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("with DisableNetworkPolicy: %v, want not found", err)
	}
}

func TestParseSelector(t *testing.T) {
	got, err := ParseSelector("app.kubernetes.io/name=pier, app.kubernetes.io/component=router")
	if err != nil || !reflect.DeepEqual(got, map[string]string{"app.kubernetes.io/name": "pier", "app.kubernetes.io/component": "router"}) {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "a", "a=b=c", "-x=y", "a=b," + "c"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q): no error", bad)
		}
	}
}
