package kubernetes

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pierpaas/pier"
)

// Bounds of one-off processes.
const (
	// runLogGrace is how long Run lets the log stream finish after the
	// container has exited (the kubelet closes it at once; kwok never).
	runLogGrace = 2 * time.Second
	// cleanupTimeout bounds deleting a one-off pod once Run is over.
	cleanupTimeout = 30 * time.Second
)

// Run runs a one-off process of d's release in a pod of its own (restart
// policy Never, named run-<random>, labelled process type "run") with the
// release's image and config, command argv as given (no shell; CNB images
// run it through their launcher, which sets the buildpacks' environment
// and execs it). Its output (stdout and stderr, merged by Kubernetes) is
// streamed to opts.Stdout; it returns the container's exit code once it
// has exited, and deletes the pod in every case. Stdin is not attached.
func (s *Scheduler) Run(ctx context.Context, d pier.Deployment, opts pier.RunOptions) (int, error) {
	if err := pier.ValidateAppName(d.App); err != nil {
		return -1, err
	}
	if err := pier.ValidateCommand(opts.Command); err != nil {
		return -1, err
	}
	if d.Release.Build == nil {
		return -1, pier.Errorf(pier.EINVALID, "app %q has no build yet: git push first (git push pier main)", d.App)
	}
	if err := checkRunnable(d); err != nil {
		return -1, err
	}
	ns, err := s.ensureNamespace(ctx, d.App)
	if err != nil {
		return -1, err
	}
	if err := s.applySecret(ctx, d); err != nil {
		return -1, err
	}
	name := "run-" + randomSuffix()
	cfg, err := s.runPodConfig(d, name, opts.Command)
	if err != nil {
		return -1, err
	}
	pod, err := s.client.CoreV1().Pods(ns).Apply(ctx, cfg, applyOpts)
	if err != nil {
		return -1, s.apiError(err, "starting a one-off process of %s", d.App)
	}
	uid := pod.UID
	defer s.deletePod(ctx, ns, name, uid)
	s.log.InfoContext(ctx, "one-off process", "app", d.App, "pod", name, "release", d.Release.Version)

	// Wait until the container has started (or already exited).
	err = s.until(ctx, ns, nil, func() (bool, error) {
		p, err := s.podByUID(ns, name, uid)
		if err != nil {
			return false, err
		}
		if p == nil {
			return false, nil
		}
		if started(p) || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return true, nil
		}
		if why := runProblem(p); why != "" {
			return false, pier.Errorf(pier.EINVALID, "the one-off process of %s cannot start: %s", d.App, why)
		}
		return false, nil
	})
	if err != nil {
		return -1, runWaitError(err)
	}

	// Stream its output while waiting for it to exit.
	out := opts.Stdout
	if out == nil {
		out = io.Discard
	}
	logCtx, stopLog := context.WithCancel(ctx)
	defer stopLog()
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		if err := s.copyLog(logCtx, ns, name, out); err != nil && logCtx.Err() == nil {
			s.log.DebugContext(ctx, "one-off process log", "app", d.App, "pod", name, "err", err)
		}
	}()

	code := -1
	err = s.until(ctx, ns, nil, func() (bool, error) {
		p, err := s.podByUID(ns, name, uid)
		if err != nil {
			return false, err
		}
		if p == nil {
			return false, pier.Errorf(pier.EUNAVAILABLE, "the one-off process of %s was deleted before it finished", d.App)
		}
		var exited bool
		code, exited, err = exitCode(p)
		return exited, err
	})
	if err != nil {
		return -1, runWaitError(err)
	}
	select {
	case <-logDone:
	case <-time.After(runLogGrace):
		stopLog()
		<-logDone
	case <-ctx.Done():
		stopLog()
		<-logDone
	}
	return code, nil
}

// podByUID returns the pod from the cache if it is still the one Run
// made: nil, nil while the cache has not seen it; an error if it is gone.
func (s *Scheduler) podByUID(ns, name string, uid types.UID) (*corev1.Pod, error) {
	p, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if p.UID != uid {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "the one-off process %s was replaced by another", name)
	}
	return p, nil
}

// exitCode reads the exit code of a one-off pod's container, if it exited.
func exitCode(p *corev1.Pod) (int, bool, error) {
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			return int(t.ExitCode), true, nil
		}
	}
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		// Ended with no container status: evicted, or past a deadline.
		why := p.Status.Reason
		if p.Status.Message != "" {
			why += ": " + clip(p.Status.Message, 300)
		}
		if why == "" {
			why = "no exit status was recorded"
		}
		return -1, true, pier.Errorf(pier.EUNAVAILABLE, "the one-off process was stopped by Kubernetes: %s", why)
	}
	return 0, false, nil
}

// runProblem says why a one-off pod will not start; "" while it may.
func runProblem(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				if w.Message != "" {
					return w.Reason + ": " + clip(w.Message, 300)
				}
				return w.Reason
			}
		}
	}
	return ""
}

func runWaitError(err error) error {
	var pe *pier.Error
	if errors.As(err, &pe) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("kubernetes: one-off process: %w", err)
}

func (s *Scheduler) copyLog(ctx context.Context, ns, name string, w io.Writer) error {
	rc, err := s.client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Follow: true}).Stream(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

// deletePod deletes a one-off pod, even when ctx has ended.
func (s *Scheduler) deletePod(ctx context.Context, ns, name string, uid types.UID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := s.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		s.log.ErrorContext(ctx, "deleting a one-off pod", "namespace", ns, "pod", name, "err", err)
	}
}

// randomSuffix is 5 characters as Kubernetes makes for generated names.
func randomSuffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	rand.Read(b) // never fails (Go 1.24+: it would crash the program)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
