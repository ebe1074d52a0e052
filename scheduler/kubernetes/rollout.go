package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pierpaas/pier"
)

// revisionAnnotation is how the Deployment controller numbers a
// Deployment's ReplicaSets; the Deployment carries its newest one's.
const revisionAnnotation = "deployment.kubernetes.io/revision"

// rolloutTarget is one Deployment to wait for: its name (the process type)
// and the generation that Pier's write produced, which the Deployment
// controller must have observed.
type rolloutTarget struct {
	typ        string
	generation int64
	goneOK     bool // scaling to zero: a Deployment deleted meanwhile is done
}

// waitRollout waits until every target's rollout is complete and
// available: the controller has seen the new spec, every replica is of the
// new template and available, and no old ReplicaSet has pods left. It is
// woken by the informers' events and reads their caches only. After
// RolloutTimeout it returns a pier.EROLLOUT error saying, per process type,
// how many new processes became ready and why the others did not.
func (s *Scheduler) waitRollout(ctx context.Context, app, what string, targets []rolloutTarget) error {
	if len(targets) == 0 {
		return nil
	}
	ns := Namespace(app)
	timer := time.NewTimer(s.cfg.RolloutTimeout)
	defer timer.Stop()
	err := s.until(ctx, ns, timer.C, func() (bool, error) {
		// A namespace deleted under the rollout (by hand, or by a destroy)
		// will never run it: say so now, not at the deadline.
		// (A namespace made a moment ago may not be in the cache yet.)
		if n, err := s.namespaces.Get(ns); err == nil && n.DeletionTimestamp != nil {
			return false, terminating(app)
		}
		for _, t := range targets {
			if !s.rolloutState(ns, t).done {
				return false, nil
			}
		}
		return true, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*pier.Error)):
		return err // terminating
	case errors.Is(err, errDeadline):
		var failed []string
		for _, t := range targets {
			if st := s.rolloutState(ns, t); !st.done {
				failed = append(failed, st.describe(t.typ, s.cfg.RolloutTimeout))
			}
		}
		if len(failed) == 0 { // done at the last moment
			return nil
		}
		return pier.Errorf(pier.EROLLOUT, "%s of %s did not come up: %s", what, app, strings.Join(failed, "; "))
	default:
		return fmt.Errorf("kubernetes: waiting for %s of %s: %w", what, app, err)
	}
}

// rollout is what the caches say of one Deployment's rollout.
type rollout struct {
	done    bool
	pending string // what is awaited, when not done
	want    int32  // replicas wanted
	ready   int32  // new replicas available
	why     string // why new pods are not ready, if known
}

func (r rollout) describe(typ string, timeout time.Duration) string {
	msg := fmt.Sprintf("%s: %d/%d new processes became ready within %s", typ, r.ready, r.want, timeout)
	if r.pending != "" && r.ready >= r.want {
		msg = fmt.Sprintf("%s: not finished within %s: %s", typ, timeout, r.pending)
	}
	if r.why != "" {
		msg += " (" + r.why + ")"
	}
	return msg
}

func (s *Scheduler) rolloutState(ns string, t rolloutTarget) rollout {
	dep, err := s.deploys.Deployments(ns).Get(t.typ)
	if err != nil && t.goneOK {
		return rollout{done: true}
	}
	if err != nil || dep.Generation < t.generation {
		return rollout{pending: "the Deployment is not yet seen"}
	}
	r := rollout{want: 1}
	if dep.Spec.Replicas != nil {
		r.want = *dep.Spec.Replicas
	}
	newRS, oldRS := s.replicaSetsOf(dep)
	if newRS != nil {
		r.ready = newRS.Status.AvailableReplicas
		if r.ready < r.want {
			r.why = s.notReadyReason(ns, newRS)
		}
	}
	st := dep.Status
	switch {
	case st.ObservedGeneration < dep.Generation:
		r.pending = "the Deployment controller has not yet seen the change"
	case st.UpdatedReplicas < r.want:
		r.pending = fmt.Sprintf("%d of %d new processes created", st.UpdatedReplicas, r.want)
	case st.Replicas > st.UpdatedReplicas:
		r.pending = fmt.Sprintf("%s pending termination", plural(int(st.Replicas-st.UpdatedReplicas), "old process", "old processes"))
	case st.AvailableReplicas < st.UpdatedReplicas:
		r.pending = fmt.Sprintf("%d of %d new processes available", st.AvailableReplicas, st.UpdatedReplicas)
	}
	if r.pending == "" {
		for _, rs := range oldRS {
			if rs.Status.Replicas > 0 || (rs.Spec.Replicas != nil && *rs.Spec.Replicas > 0) {
				r.pending = "old processes pending termination"
				break
			}
		}
	}
	if r.pending == "" && newRS == nil && r.want > 0 {
		r.pending = "the new ReplicaSet is not yet seen"
	}
	if r.pending == "" {
		// The pods as the cache has them, so that Processes agrees
		// with a finished Apply.
		if p := s.podsPending(dep.Namespace, newRS, oldRS, r.want); p != "" {
			r.pending = p
		}
	}
	// The Progressing condition's ProgressDeadlineExceeded is not read: it
	// outlives a failed rollout until the next one makes progress, so a
	// rollback would read the old failure. RolloutTimeout is the deadline.
	r.done = r.pending == ""
	return r
}

// podsPending says what the pod cache still waits for: want ready pods of
// newRS and no more, and no pod of an old ReplicaSet that is not
// terminating.
func (s *Scheduler) podsPending(ns string, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, want int32) string {
	pods, err := s.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return "the pods are not yet seen"
	}
	var ready, total int32
	oldLeft := 0
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if newRS != nil && ownedBy(p, newRS) {
			total++
			if podReady(p) {
				ready++
			}
			continue
		}
		for _, rs := range old {
			if ownedBy(p, rs) {
				oldLeft++
			}
		}
	}
	switch {
	case ready < want:
		return fmt.Sprintf("%d of %d new processes seen ready", ready, want)
	case total > want:
		return fmt.Sprintf("%s pending termination", plural(int(total-want), "process", "processes"))
	case oldLeft > 0:
		return fmt.Sprintf("%s pending termination", plural(oldLeft, "old process", "old processes"))
	}
	return ""
}

// replicaSetsOf returns the newest ReplicaSet of dep (the one of its
// current template) and the others.
func (s *Scheduler) replicaSetsOf(dep *appsv1.Deployment) (newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) {
	all, err := s.replicas.ReplicaSets(dep.Namespace).List(labels.SelectorFromSet(selector(dep.Labels[LabelApp], dep.Name)))
	if err != nil {
		return nil, nil
	}
	rev := dep.Annotations[revisionAnnotation]
	for _, rs := range all {
		owned := false
		for _, o := range rs.OwnerReferences {
			if o.UID == dep.UID && o.Controller != nil && *o.Controller {
				owned = true
			}
		}
		if !owned {
			continue
		}
		if rev != "" && rs.Annotations[revisionAnnotation] == rev && newRS == nil {
			newRS = rs
			continue
		}
		old = append(old, rs)
	}
	return newRS, old
}

// notReadyReason summarizes why pods of rs are not ready, from the first
// problem found: unschedulable, a container waiting (image pull, crash
// loop, bad config) or one that exited.
func (s *Scheduler) notReadyReason(ns string, rs *appsv1.ReplicaSet) string {
	pods, err := s.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return ""
	}
	reasons := map[string]int{}
	for _, p := range pods {
		if !ownedBy(p, rs) || p.DeletionTimestamp != nil || podReady(p) {
			continue
		}
		if r := podProblem(p); r != "" {
			reasons[r]++
		}
	}
	if len(reasons) == 0 {
		return ""
	}
	keys := make([]string, 0, len(reasons))
	for r := range reasons {
		keys = append(keys, r)
	}
	sort.Slice(keys, func(i, j int) bool {
		if reasons[keys[i]] != reasons[keys[j]] {
			return reasons[keys[i]] > reasons[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := make([]string, 0, len(keys))
	for i, r := range keys {
		if i == 3 {
			break
		}
		out = append(out, fmt.Sprintf("%s: %s", plural(reasons[r], "process", "processes"), r))
	}
	return strings.Join(out, "; ")
}

func ownedBy(p *corev1.Pod, rs *appsv1.ReplicaSet) bool {
	for _, o := range p.OwnerReferences {
		if o.UID == rs.UID {
			return true
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podProblem says what keeps a pod from being ready, "" when it is just
// starting as far as anyone can tell.
func podProblem(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "cannot be scheduled: " + clip(c.Message, 300)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff":
			msg := "crashed"
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg = fmt.Sprintf("crashed with exit code %d", t.ExitCode)
				if t.Reason == "OOMKilled" {
					msg = "killed for exceeding its memory limit"
				}
			}
			return fmt.Sprintf("%s, restarted %d times", msg, cs.RestartCount)
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "ContainerCreating" && cs.State.Waiting.Reason != "PodInitializing":
			why := cs.State.Waiting.Reason
			if m := cs.State.Waiting.Message; m != "" {
				why += ": " + clip(m, 300)
			}
			return why
		case cs.State.Terminated != nil:
			return fmt.Sprintf("exited with code %d", cs.State.Terminated.ExitCode)
		case cs.State.Running != nil && !cs.Ready:
			return "running but not ready (web must accept connections on $PORT)"
		}
	}
	return ""
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
