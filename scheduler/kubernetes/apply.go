package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/pierpaas/pier"
)

var applyOpts = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}

// Apply converges app d.App onto d; see pier.Scheduler. It is idempotent:
// applying the same deployment again writes nothing (server-side apply of
// the same configuration changes no object) and returns once the rollout
// is complete, at once if it is. Process types of the release missing from
// the formation are scaled to 0 and kept; Deployments of types the
// release no longer has are deleted. A deployment without a build scales
// every process type to 0.
//
// It waits until every Deployment's rollout is complete and available, or
// RolloutTimeout passes: then it returns an error of code pier.EROLLOUT
// saying which types did not come up and why. It does not roll back.
func (s *Scheduler) Apply(ctx context.Context, d pier.Deployment) error {
	if err := pier.ValidateAppName(d.App); err != nil {
		return err
	}
	for t, n := range d.Formation {
		if err := pier.ValidateProcessType(t); err != nil {
			return err
		}
		if n < 0 || n > pier.ScaleMax {
			return pier.Errorf(pier.EINVALID, "cannot scale %s to %d: use 0 to %d", t, n, pier.ScaleMax)
		}
	}
	if err := checkRunnable(d); err != nil {
		return err
	}
	if d.Release.Build != nil && d.Release.Version < 1 {
		return pier.Errorf(pier.EINVALID, "release version %d of %s is invalid: releases are numbered from 1", d.Release.Version, d.App)
	}
	ns, err := s.ensureNamespace(ctx, d.App)
	if err != nil {
		return err
	}
	if err := s.ensureNetworkPolicy(ctx, d.App); err != nil { // netpol.go
		return err
	}
	b := d.Release.Build
	if b == nil {
		return s.scaleToZero(ctx, d.App)
	}

	// The config first: new pods need it to start.
	if err := s.applySecret(ctx, d); err != nil {
		return err
	}
	var targets []rolloutTarget
	for _, t := range sortedKeys(b.ProcessTypes) {
		n := int32(d.Formation[t])
		cfg, err := s.deploymentConfig(d, t, n)
		if err != nil {
			return err
		}
		got, err := s.client.AppsV1().Deployments(ns).Apply(ctx, cfg, applyOpts)
		if err != nil {
			return s.apiError(err, "applying the %s Deployment of %s", t, d.App)
		}
		targets = append(targets, rolloutTarget{typ: t, generation: got.Generation})
	}
	for t := range d.Formation {
		if _, ok := b.ProcessTypes[t]; !ok && d.Formation[t] > 0 {
			// Left from an older release; the controller refuses new ones.
			s.log.DebugContext(ctx, "formation names a process type the release does not define", "app", d.App, "type", t, "release", d.Release.Version)
		}
	}
	_, hasWeb := b.ProcessTypes[webType]
	if hasWeb {
		if _, err := s.client.CoreV1().Services(ns).Apply(ctx, s.serviceConfig(d), applyOpts); err != nil {
			return s.apiError(err, "applying the web Service of %s", d.App)
		}
	}

	if err := s.waitRollout(ctx, d.App, fmt.Sprintf("v%d", d.Release.Version), targets); err != nil {
		return err
	}
	// The new release serves: now, and only now, what only older
	// releases had goes (their process types, web's Service, configs).
	if err := s.deleteOldTypes(ctx, ns, b.ProcessTypes); err != nil {
		return err
	}
	if !hasWeb {
		if err := s.deleteService(ctx, ns); err != nil {
			return err
		}
	}
	return s.deleteOldSecrets(ctx, ns, d.Release.Version)
}

// namespaceCacheWait bounds ensureNamespace's wait for a namespace it made
// to reach the cache; the watch brings it within milliseconds.
const namespaceCacheWait = 5 * time.Second

// ensureNamespace makes app's namespace if there is none, and refuses one
// that Pier did not make. Once it exists it is read from the cache.
func (s *Scheduler) ensureNamespace(ctx context.Context, app string) (string, error) {
	name := Namespace(app)
	if ns := s.ownedNamespace(app); ns != nil {
		if ns.DeletionTimestamp != nil {
			return "", terminating(app)
		}
		return name, nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: appLabels(app)}}
	_, err := s.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: FieldManager})
	if err == nil {
		// Wait (briefly) for the cache to have it: the next Apply, often
		// moments later (a scale, then the first build), then finds it
		// there instead of creating it again and reading it back.
		timer := time.NewTimer(namespaceCacheWait)
		defer timer.Stop()
		s.until(ctx, name, timer.C, func() (bool, error) { return s.ownedNamespace(app) != nil, nil })
		return name, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return "", s.apiError(err, "creating namespace %s", name)
	}
	// Not in the cache, yet there: made by someone else, or by Pier a
	// moment ago (the cache lags). Ask once.
	got, gerr := s.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if gerr != nil {
		return "", s.apiError(gerr, "reading namespace %s", name)
	}
	if got.Labels[LabelManagedBy] != managedBy {
		return "", foreign(app)
	}
	if got.DeletionTimestamp != nil {
		return "", terminating(app)
	}
	return name, nil
}

func foreign(app string) error {
	return pier.Errorf(pier.ECONFLICT, "namespace %s exists but was not made by Pier (it lacks the label %s=%s): Pier changes no namespace it does not manage; rename or delete that namespace, or choose another app name", Namespace(app), LabelManagedBy, managedBy)
}

func terminating(app string) error {
	return pier.Errorf(pier.ECONFLICT, "namespace %s is being deleted (app %s was destroyed moments ago): try again once it is gone", Namespace(app), app)
}

// scaleToZero stops every process of app and keeps its Deployments.
func (s *Scheduler) scaleToZero(ctx context.Context, app string) error {
	ns := Namespace(app)
	deps, err := s.deploys.Deployments(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var targets []rolloutTarget
	for _, dep := range sortedDeployments(deps) {
		if dep.DeletionTimestamp != nil {
			continue
		}
		gen := dep.Generation
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0 {
			// A merge patch of replicas alone: an apply of just the
			// replicas would drop every other field Pier applied.
			got, err := s.client.AppsV1().Deployments(ns).Patch(ctx, dep.Name, types.MergePatchType,
				[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{FieldManager: FieldManager})
			if err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return s.apiError(err, "scaling %s of %s to 0", dep.Name, app)
			}
			gen = got.Generation
		}
		targets = append(targets, rolloutTarget{typ: dep.Name, generation: gen, goneOK: true})
	}
	return s.waitRollout(ctx, app, "the scale to zero", targets)
}

func (s *Scheduler) deleteService(ctx context.Context, ns string) error {
	if _, err := s.services.Services(ns).Get(webType); err != nil {
		return nil // not in the cache: none of Pier's
	}
	err := s.client.CoreV1().Services(ns).Delete(ctx, webType, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return s.apiError(err, "deleting the web Service in %s", ns)
	}
	return nil
}

// deleteOldTypes deletes the Deployments of process types that the release
// does not define.
func (s *Scheduler) deleteOldTypes(ctx context.Context, ns string, types map[string]string) error {
	deps, err := s.deploys.Deployments(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	bg := metav1.DeletePropagationBackground
	for _, dep := range deps {
		if _, ok := types[dep.Name]; ok || dep.DeletionTimestamp != nil {
			continue
		}
		err := s.client.AppsV1().Deployments(ns).Delete(ctx, dep.Name, metav1.DeleteOptions{
			PropagationPolicy: &bg,
			Preconditions:     &metav1.Preconditions{UID: &dep.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return s.apiError(err, "deleting the %s Deployment in %s", dep.Name, ns)
		}
	}
	return nil
}

// deleteOldSecrets deletes the config Secrets of releases other than
// version; a later Apply of an older release writes its own again.
func (s *Scheduler) deleteOldSecrets(ctx context.Context, ns string, version int) error {
	secs, err := s.secrets.Secrets(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, sec := range secs {
		v := secretVersion(sec.Name)
		if v == 0 || v == version || sec.DeletionTimestamp != nil {
			continue
		}
		err := s.client.CoreV1().Secrets(ns).Delete(ctx, sec.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &sec.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return s.apiError(err, "deleting the config of an old release in %s", ns)
		}
	}
	return nil
}

// Restart replaces the processes of one type ("" for every type) with
// fresh ones, as `kubectl rollout restart` does, and waits like Apply.
func (s *Scheduler) Restart(ctx context.Context, app, processType string) error {
	if err := pier.ValidateAppName(app); err != nil {
		return err
	}
	ns := Namespace(app)
	if s.ownedNamespace(app) == nil {
		return pier.Errorf(pier.ENOTFOUND, "app %s has no processes to restart", app)
	}
	deps, err := s.deploys.Deployments(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var todo []*appsv1.Deployment
	var running []string
	for _, dep := range sortedDeployments(deps) {
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas == 0 || dep.DeletionTimestamp != nil {
			continue
		}
		running = append(running, dep.Name)
		if processType == "" || dep.Name == processType {
			todo = append(todo, dep)
		}
	}
	if len(todo) == 0 {
		if len(running) == 0 {
			return pier.Errorf(pier.ENOTFOUND, "app %s has no processes to restart", app)
		}
		return pier.Errorf(pier.ENOTFOUND, "app %s has no %s processes: it runs %s", app, processType, strings.Join(running, ", "))
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	opts := metav1.ApplyOptions{FieldManager: restartFieldManager, Force: true}
	var targets []rolloutTarget
	for _, dep := range todo {
		cfg := appsv1ac.Deployment(dep.Name, ns).
			WithSpec(appsv1ac.DeploymentSpec().
				WithTemplate(corev1ac.PodTemplateSpec().
					WithAnnotations(map[string]string{AnnotationRestartedAt: now})))
		got, err := s.client.AppsV1().Deployments(ns).Apply(ctx, cfg, opts)
		if err != nil {
			return s.apiError(err, "restarting %s of %s", dep.Name, app)
		}
		targets = append(targets, rolloutTarget{typ: dep.Name, generation: got.Generation})
	}
	return s.waitRollout(ctx, app, "the restart", targets)
}

// applySecret writes the config Secret of d's release, and the app's
// registry pull credentials when there are any.
func (s *Scheduler) applySecret(ctx context.Context, d pier.Deployment) error {
	if err := s.applyPullSecret(ctx, d.App); err != nil {
		return err
	}
	_, err := s.client.CoreV1().Secrets(Namespace(d.App)).Apply(ctx, secretConfig(d), applyOpts)
	if apierrors.IsInvalid(err) {
		// The server's message could quote the config: not shown.
		s.log.ErrorContext(ctx, "config secret refused", "app", d.App, "release", d.Release.Version, "reason", apierrors.ReasonForError(err))
		return pier.Errorf(pier.EINVALID, "kubernetes refused the config of v%d of %s: a config key is not valid there", d.Release.Version, d.App)
	}
	if err != nil {
		return s.apiError(err, "writing the config of v%d of %s", d.Release.Version, d.App)
	}
	return nil
}

// applyPullSecret writes the app's registry pull credentials
// (Config.PullCredentials), which its pods' imagePullSecrets name.
func (s *Scheduler) applyPullSecret(ctx context.Context, app string) error {
	if s.cfg.PullCredentials == nil {
		return nil
	}
	registry, user, pass, err := s.cfg.PullCredentials(app)
	if err != nil {
		return fmt.Errorf("registry pull credentials of %s: %w", app, err)
	}
	cfg, err := pullSecretConfig(app, registry, user, pass)
	if err != nil {
		return err
	}
	if _, err := s.client.CoreV1().Secrets(Namespace(app)).Apply(ctx, cfg, applyOpts); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("kubernetes: writing the registry pull credentials of %s: %w", app, err)
		}
		// The server's message could quote the credentials: not shown.
		s.log.ErrorContext(ctx, "registry pull secret refused", "app", app, "reason", apierrors.ReasonForError(err))
		return pier.Errorf(pier.EUNAVAILABLE, "kubernetes refused the registry pull credentials of %s (%s)", app, apierrors.ReasonForError(err))
	}
	return nil
}

// apiError wraps an error of the API server, explaining the ones that
// are the caller's to fix. Never use it for Secrets (see applySecret).
func (s *Scheduler) apiError(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	var pe *pier.Error
	switch {
	case errors.As(err, &pe):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("kubernetes: %s: %w", what, err)
	case apierrors.IsInvalid(err):
		return pier.Errorf(pier.EINVALID, "kubernetes refused %s: %s", what, apiMessage(err))
	case apierrors.IsForbidden(err):
		s.log.Error("kubernetes forbids", "what", what, "err", err)
		return pier.Errorf(pier.EINTERNAL, "kubernetes forbids %s: Pier's service account lacks a permission (the server log has it)", what)
	case apierrors.IsConflict(err):
		return pier.Errorf(pier.ECONFLICT, "kubernetes: %s: changed at the same time by someone else; try again", what)
	}
	return fmt.Errorf("kubernetes: %s: %w", what, err)
}

func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Message
	}
	return err.Error()
}

func sortedDeployments(deps []*appsv1.Deployment) []*appsv1.Deployment {
	out := append([]*appsv1.Deployment(nil), deps...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Name < out[j-1].Name; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
