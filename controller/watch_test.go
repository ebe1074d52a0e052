package controller_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pierpaas/pier/controller"
)

// driftingScheduler reports drift when the test says so.
type driftingScheduler struct {
	recordingScheduler
	mu2 sync.Mutex
	fn  func(string)
}

func (s *driftingScheduler) NotifyDrift(fn func(string)) {
	s.mu2.Lock()
	defer s.mu2.Unlock()
	s.fn = fn
}

func (s *driftingScheduler) drift(t *testing.T, app string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu2.Lock()
		fn := s.fn
		s.mu2.Unlock()
		if fn != nil {
			fn(app)
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Watch never asked for drift reports")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *driftingScheduler) appliedApps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var apps []string
	for _, d := range s.applied {
		apps = append(apps, d.App)
	}
	return apps
}

// An app reported as drifted is converged again; a report of an app that
// no longer exists converges nothing. Watch ends with its context.
func TestWatchConvergesDriftedApps(t *testing.T) {
	e := newEnv(t)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	sched := &driftingScheduler{}
	r := controller.NewReconciler(e.db, sched, nil)
	if _, err := r.Deploy(context.Background(), fakeStrategy{res: webBuild}, controller.DeployRequest{App: "myapp", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	before := len(sched.appliedApps())
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { r.Watch(ctx); close(watched) }()
	sched.drift(t, "gone")
	sched.drift(t, "myapp")
	deadline := time.Now().Add(10 * time.Second)
	for len(sched.appliedApps()) == before {
		if time.Now().After(deadline) {
			t.Fatal("the drifted app was not converged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := sched.last(t); d.App != "myapp" || d.Release.Version != 2 || d.Formation["web"] != 1 {
		t.Fatalf("converged %+v", d)
	}
	cancel()
	select {
	case <-watched:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not end with its context")
	}
	for _, app := range sched.appliedApps() {
		if app != "myapp" {
			t.Fatalf("applied something of %q: %v", app, sched.appliedApps())
		}
	}
}
