package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
)

// Tenancy: every app namespace gets a NetworkPolicy that denies all
// ingress to its pods except from the router's pods (in the router's
// namespace, with the router's labels). Apps cannot reach each other's
// processes, nor can anything else in the cluster, where the cluster's
// network plugin enforces NetworkPolicies.

const (
	// NetworkPolicyName is the NetworkPolicy Pier writes in each app namespace.
	NetworkPolicyName = "pier-ingress"
	// annotationPolicy on it is a digest of what Pier applied, so that an
	// Apply rewrites it only when the router selector changed.
	annotationPolicy = "pier.dev/policy"

	// DefaultRouterNamespace is where the router's pods run (the Helm
	// chart's usual namespace).
	DefaultRouterNamespace = "pier"
)

// DefaultRouterPodLabels select the router's pods: the labels the Helm
// chart (deploy/helm/pier) puts on them.
func DefaultRouterPodLabels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "pier",
		"app.kubernetes.io/component": "router",
	}
}

// ParseSelector parses "k=v,k2=v2" (as --router-selector takes it) into
// labels, checking each key and value.
func ParseSelector(s string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("label value %q: %s", v, strings.Join(errs, "; "))
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no labels in %q: give key=value pairs separated by commas", s)
	}
	return out, nil
}

// networkPolicyConfig is app's default-deny-ingress NetworkPolicy, and
// the digest of what it says.
func (s *Scheduler) networkPolicyConfig(app string) (*networkingv1ac.NetworkPolicyApplyConfiguration, string) {
	nsSel := map[string]string{"kubernetes.io/metadata.name": s.cfg.RouterNamespace}
	podSel := s.cfg.RouterPodLabels
	b, _ := json.Marshal([]any{nsSel, podSel, keysOf(podSel)})
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:8])
	return networkingv1ac.NetworkPolicy(NetworkPolicyName, Namespace(app)).
		WithLabels(appLabels(app)).
		WithAnnotations(map[string]string{annotationPolicy: digest}).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector()). // every pod of the app
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(networkingv1ac.NetworkPolicyPeer().
					WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(nsSel)).
					WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(podSel))))), digest
}

func keysOf(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// ensureNetworkPolicy writes app's NetworkPolicy unless the cache has it
// as it should be: a no-op Apply sends nothing.
func (s *Scheduler) ensureNetworkPolicy(ctx context.Context, app string) error {
	if s.cfg.DisableNetworkPolicy {
		return nil
	}
	cfg, digest := s.networkPolicyConfig(app)
	ns := Namespace(app)
	cached := func() (bool, error) {
		np, err := s.netpols.NetworkPolicies(ns).Get(NetworkPolicyName)
		return err == nil && np.Annotations[annotationPolicy] == digest && np.DeletionTimestamp == nil, nil
	}
	if ok, _ := cached(); ok {
		return nil
	}
	if _, err := s.client.NetworkingV1().NetworkPolicies(ns).Apply(ctx, cfg, applyOpts); err != nil {
		return s.apiError(err, "applying the NetworkPolicy of %s", app)
	}
	// Wait (briefly) for the cache to have it, as ensureNamespace does:
	// the app's next Apply, often moments later (apps:create, then the
	// first build), then finds it there rather than writing it again.
	timer := time.NewTimer(namespaceCacheWait)
	defer timer.Stop()
	s.until(ctx, ns, timer.C, cached)
	return nil
}
