package kubernetes

import (
	"context"
	"net"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pierpaas/pier"
)

// indexedPod is a pod of an app with its process name (web.2).
type indexedPod struct {
	pod   *corev1.Pod
	typ   string
	index int
}

func (p indexedPod) name() string { return p.typ + "." + strconv.Itoa(p.index) }

// appPods lists app's pods from the cache, optionally of one type, and
// numbers them 1..n per type, oldest first (creation time, then name), so
// that the numbers are stable while the set of pods is.
func (s *Scheduler) appPods(app, typ string) []indexedPod {
	sel := labels.Set{LabelApp: app}
	if typ != "" {
		sel[LabelProcessType] = typ
	}
	pods, err := s.pods.Pods(Namespace(app)).List(labels.SelectorFromSet(sel))
	if err != nil {
		return nil
	}
	out := make([]indexedPod, 0, len(pods))
	for _, p := range pods {
		t := p.Labels[LabelProcessType]
		if t == "" {
			continue
		}
		out = append(out, indexedPod{pod: p, typ: t})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.typ != b.typ {
			return a.typ < b.typ
		}
		ta, tb := a.pod.CreationTimestamp.Time, b.pod.CreationTimestamp.Time
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return a.pod.Name < b.pod.Name
	})
	n := 0
	for i := range out {
		if i == 0 || out[i].typ != out[i-1].typ {
			n = 0
		}
		n++
		out[i].index = n
	}
	return out
}

// Processes lists app's processes, from the informer cache: no request
// is sent. One-off processes (pier run) are not listed.
func (s *Scheduler) Processes(ctx context.Context, app string) ([]pier.Process, error) {
	if err := pier.ValidateAppName(app); err != nil {
		return nil, err
	}
	if s.ownedNamespace(app) == nil {
		return []pier.Process{}, nil
	}
	out := []pier.Process{}
	for _, ip := range s.appPods(app, "") {
		if ip.typ == RunType && ip.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			continue
		}
		out = append(out, s.process(app, ip))
	}
	return out, nil
}

func (s *Scheduler) process(app string, ip indexedPod) pier.Process {
	p := ip.pod
	pp := pier.Process{
		App:     app,
		Type:    ip.typ,
		Index:   ip.index,
		Release: releaseVersion(p.Labels[LabelRelease]),
		State:   processState(p),
	}
	switch {
	case p.Status.StartTime != nil:
		pp.StartedAt = p.Status.StartTime.Time
	default:
		pp.StartedAt = p.CreationTimestamp.Time
	}
	for _, cs := range p.Status.ContainerStatuses {
		pp.Restarts += int(cs.RestartCount)
		if r := cs.State.Running; r != nil && !r.StartedAt.IsZero() {
			pp.StartedAt = r.StartedAt.Time
		}
	}
	pp.StartedAt = pp.StartedAt.UTC().Truncate(time.Second)
	if ip.typ == webType && pp.State == pier.ProcessUp && p.Status.PodIP != "" {
		pp.Addr = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(s.cfg.Port))
	}
	return pp
}

// processState maps a pod onto Pier's process states.
func processState(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return pier.ProcessStopping
	}
	switch p.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		return pier.ProcessCrashed
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
				"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return pier.ProcessCrashed
			}
		}
		if cs.State.Terminated != nil {
			return pier.ProcessCrashed
		}
	}
	if podReady(p) {
		return pier.ProcessUp
	}
	return pier.ProcessStarting
}
