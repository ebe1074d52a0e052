package kubernetes

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pierpaas/pier"
)

// The router's table on Kubernetes comes from the web Service's
// EndpointSlices, which the real controller-manager keeps from pod
// readiness: it follows scaling, goes empty (not absent) at web=0, and
// empties when the app is destroyed; every change is pushed to
// subscribers. The pod IPs are kwok's fake ones: the test compares them
// with the pods' status and never connects to them.
func TestKubeRoutesFromEndpointSlices(t *testing.T) {
	e := newKubeEnv(t)
	s, _ := e.scheduler(t, Config{})
	ctx := kctx(t, 3*time.Minute)
	app := e.appName(t, "it-routes")
	notified := make(chan struct{}, 1)
	cancel := s.Subscribe(func() {
		select {
		case notified <- struct{}{}:
		default:
		}
	})
	defer cancel()

	// The ready web pods' addresses, from the API server.
	podAddrs := func() []string {
		pods, err := e.admin.CoreV1().Pods(Namespace(app)).List(ctx, metav1.ListOptions{LabelSelector: LabelApp + "=" + app + "," + LabelProcessType + "=web"})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range pods.Items {
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || c.Type == "Ready" && c.Status == "True"
			}
			if ready && p.DeletionTimestamp == nil && p.Status.PodIP != "" {
				out = append(out, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(5000)))
			}
		}
		slices.Sort(out)
		return out
	}
	want := func(n int) {
		t.Helper()
		var got []string
		waitFor(t, time.Minute, fmt.Sprintf("%d web addresses in the routes", n), func() bool {
			got = s.Routes()[app]
			return len(got) == n && fmt.Sprint(got) == fmt.Sprint(podAddrs())
		})
		for _, a := range got {
			if ap, err := net.ResolveTCPAddr("tcp", a); err != nil || ap.Port != 5000 {
				t.Errorf("route %q: want a pod IP with the web port 5000", a)
			}
		}
	}

	d := cnbDeployment(app, 1, "pier.localhost/"+app+":1", pier.Formation{"web": 3, "worker": 1})
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	want(3)
	select {
	case <-notified:
	default:
		t.Error("no subscriber was notified of the new routes")
	}

	d.Formation = pier.Formation{"web": 1, "worker": 1}
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	want(1)

	// web=0: the app is still there, with nothing ready (503, not 404).
	d.Formation = pier.Formation{"web": 0, "worker": 1}
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "an empty route for web=0", func() bool {
		got, ok := s.Routes()[app]
		return ok && len(got) == 0
	})

	if err := s.Destroy(ctx, app); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "no route once the app is destroyed", func() bool {
		_, ok := s.Routes()[app]
		return !ok
	})
}
