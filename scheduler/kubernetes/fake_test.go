package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// fakeCluster is client-go's fake clientset with a small stand-in for the
// Deployment controller and the kubelet: for every Deployment it keeps one
// ReplicaSet per template (numbered by revision), with the Deployment's
// replicas on the newest and none on the others, pods for them that are
// Running and Ready, and the statuses that say so. Types listed in stuck
// get pods that never become ready.
type fakeCluster struct {
	*fake.Clientset
	t *testing.T

	mu    sync.Mutex
	stuck map[string]bool // process types whose new pods never become ready
}

func newFakeCluster(t *testing.T, objects ...runtime.Object) *fakeCluster {
	t.Helper()
	c := &fakeCluster{Clientset: fake.NewClientset(objects...), t: t, stuck: map[string]bool{}}
	c.bumpGenerations()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.AppsV1().Deployments("").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			dep := ev.Object.(*appsv1.Deployment)
			if err := c.reconcile(ctx, dep.Namespace, dep.Name); err != nil && ctx.Err() == nil {
				t.Logf("fake controller: %v", err)
			}
		}
	}()
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	return c
}

// bumpGenerations makes Deployments' metadata.generation count changes of
// their spec, as the API server does (the fake clientset leaves it alone).
func (c *fakeCluster) bumpGenerations() {
	react := k8stesting.ObjectReaction(c.Tracker())
	gvr := appsv1.SchemeGroupVersion.WithResource("deployments")
	c.PrependReactor("*", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var name string
		switch a := a.(type) {
		case k8stesting.PatchAction:
			name = a.GetName()
		case k8stesting.UpdateAction:
			name = a.GetObject().(*appsv1.Deployment).Name
		case k8stesting.CreateAction:
			name = a.GetObject().(*appsv1.Deployment).Name
		default:
			return false, nil, nil
		}
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		ns := a.GetNamespace()
		var oldGen int64
		var oldSpec *appsv1.DeploymentSpec
		if o, err := c.Tracker().Get(gvr, ns, name); err == nil {
			old := o.(*appsv1.Deployment)
			oldGen, oldSpec = old.Generation, &old.Spec
		}
		handled, obj, err := react(a)
		if err != nil || !handled {
			return handled, obj, err
		}
		nd := obj.(*appsv1.Deployment).DeepCopy()
		gen := oldGen
		if oldSpec == nil || !reflect.DeepEqual(*oldSpec, nd.Spec) {
			gen++
		}
		if nd.Generation != gen {
			nd.Generation = gen
			if err := c.Tracker().Update(gvr, nd, ns); err != nil {
				return true, nil, err
			}
		}
		return true, nd, nil
	})
}

func (c *fakeCluster) setStuck(typ string, stuck bool) {
	c.mu.Lock()
	c.stuck[typ] = stuck
	c.mu.Unlock()
}

func templateHash(t corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(b)
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

func (c *fakeCluster) reconcile(ctx context.Context, ns, name string) error {
	dep, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	stuck := c.stuck[name]
	c.mu.Unlock()
	hash := templateHash(dep.Spec.Template)
	rsName := dep.Name + "-" + hash
	all, err := c.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	maxRev := 0
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for i := range all.Items {
		rs := &all.Items[i]
		if len(rs.OwnerReferences) == 0 || rs.OwnerReferences[0].Name != dep.Name {
			continue
		}
		rev, _ := strconv.Atoi(rs.Annotations[revisionAnnotation])
		maxRev = max(maxRev, rev)
		if rs.Name == rsName {
			newRS = rs
		} else {
			old = append(old, rs)
		}
	}
	want := ptr.Deref(dep.Spec.Replicas, 1)
	if newRS == nil {
		lbls := map[string]string{"pod-template-hash": hash}
		for k, v := range dep.Spec.Template.Labels {
			lbls[k] = v
		}
		newRS = &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: rsName, Namespace: ns, Labels: lbls,
				Annotations:     map[string]string{revisionAnnotation: strconv.Itoa(maxRev + 1)},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true)}},
			},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(want), Template: dep.Spec.Template},
		}
		newRS.UID = types.UID("uid-" + newRS.Name)
		if newRS, err = c.AppsV1().ReplicaSets(ns).Create(ctx, newRS, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	ready := want
	if stuck && len(old) > 0 {
		ready = 0
	}
	if err := c.syncRS(ctx, newRS, want, ready); err != nil {
		return err
	}
	oldReplicas := int32(0)
	for _, rs := range old {
		keep := int32(0)
		if ready < want { // maxUnavailable 0: the old ones stay
			keep = ptr.Deref(rs.Spec.Replicas, 0)
		}
		oldReplicas += keep
		if err := c.syncRS(ctx, rs, keep, keep); err != nil {
			return err
		}
	}
	rev := newRS.Annotations[revisionAnnotation]
	if dep.Annotations[revisionAnnotation] != rev {
		if dep.Annotations == nil {
			dep.Annotations = map[string]string{}
		}
		dep.Annotations[revisionAnnotation] = rev
		if dep, err = c.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	st := appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation,
		Replicas:           want + oldReplicas,
		UpdatedReplicas:    want,
		ReadyReplicas:      ready + oldReplicas,
		AvailableReplicas:  ready + oldReplicas,
	}
	if !reflect.DeepEqual(dep.Status, st) {
		dep.Status = st
		_, err = c.AppsV1().Deployments(ns).UpdateStatus(ctx, dep, metav1.UpdateOptions{})
	}
	return err
}

// syncRS gives rs n pods, ready of them Ready, and the status to match.
func (c *fakeCluster) syncRS(ctx context.Context, rs *appsv1.ReplicaSet, n, ready int32) error {
	ns := rs.Namespace
	if ptr.Deref(rs.Spec.Replicas, 0) != n {
		rs.Spec.Replicas = ptr.To(n)
		var err error
		if rs, err = c.AppsV1().ReplicaSets(ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{"pod-template-hash": rs.Labels["pod-template-hash"]}).String()})
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, p := range pods.Items {
		have[p.Name] = true
		i, _ := strconv.Atoi(p.Name[len(rs.Name)+1:])
		if int32(i) > n {
			if err := c.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	for i := int32(1); i <= n; i++ {
		name := fmt.Sprintf("%s-%d", rs.Name, i)
		if have[name] {
			continue
		}
		now := metav1.NewTime(time.Now().Add(time.Duration(i) * time.Millisecond))
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: ns, Labels: rs.Spec.Template.Labels, UID: types.UID("uid-pod-" + name),
				CreationTimestamp: now,
				OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}},
			},
			Spec: rs.Spec.Template.Spec,
		}
		p.Labels = map[string]string{"pod-template-hash": rs.Labels["pod-template-hash"]}
		for k, v := range rs.Spec.Template.Labels {
			p.Labels[k] = v
		}
		isReady := i <= ready
		p.Status = fakePodStatus(isReady, now)
		if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	st := appsv1.ReplicaSetStatus{Replicas: n, ReadyReplicas: ready, AvailableReplicas: ready, ObservedGeneration: rs.Generation}
	if !reflect.DeepEqual(rs.Status, st) {
		rs.Status = st
		_, err = c.AppsV1().ReplicaSets(ns).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
	}
	return err
}

func fakePodStatus(ready bool, at metav1.Time) corev1.PodStatus {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	return corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     "10.0.0.1",
		StartTime: &at,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: cond},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:  "c",
			Ready: ready,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}},
		}},
	}
}

// newFakeScheduler returns a Scheduler on c.
func newFakeScheduler(t *testing.T, c *fakeCluster, cfg Config) *Scheduler {
	t.Helper()
	cfg.Client = c
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RolloutTimeout == 0 {
		cfg.RolloutTimeout = 10 * time.Second
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
