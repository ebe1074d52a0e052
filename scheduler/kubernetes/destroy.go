package kubernetes

import (
	"context"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pierpaas/pier"
)

// Destroy deletes app's namespace, and with it everything of the app, and
// waits until it is gone or ctx ends. A namespace Pier did not make is
// refused; an app with no namespace is destroyed already.
func (s *Scheduler) Destroy(ctx context.Context, app string) error {
	if err := pier.ValidateAppName(app); err != nil {
		return err
	}
	name := Namespace(app)
	ns := s.ownedNamespace(app)
	if ns == nil {
		// Not in the cache: there is none, it is someone else's, or
		// Pier made it a moment ago. Ask once.
		got, err := s.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return s.apiError(err, "reading namespace %s", name)
		}
		if got.Labels[LabelManagedBy] != managedBy {
			return foreign(app)
		}
		ns = got
	}
	uid := ns.UID
	if ns.DeletionTimestamp == nil {
		bg := metav1.DeletePropagationBackground
		err := s.client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{
			PropagationPolicy: &bg,
			Preconditions:     &metav1.Preconditions{UID: &uid},
		})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			return pier.Errorf(pier.ECONFLICT, "namespace %s was replaced while app %s was being destroyed: try again", name, app)
		case err != nil:
			return s.apiError(err, "deleting namespace %s", name)
		}
	}
	s.log.InfoContext(ctx, "deleting namespace", "app", app, "namespace", name)
	err := s.until(ctx, name, nil, func() (bool, error) {
		got, err := s.namespaces.Get(name)
		return err != nil || got.UID != uid, nil
	})
	if err != nil {
		return s.apiError(err, "waiting for namespace %s to be deleted", name)
	}
	return nil
}

// Apps names the apps that have a namespace Pier made, except those being
// deleted: see pier.AppLister. It reads the informer cache only.
func (s *Scheduler) Apps(ctx context.Context) ([]string, error) {
	all, err := s.namespaces.List(labels.SelectorFromSet(labels.Set{LabelManagedBy: managedBy}))
	if err != nil {
		return nil, err
	}
	var apps []string
	for _, ns := range all {
		app := ns.Labels[LabelApp]
		if ns.DeletionTimestamp != nil || ns.Name != Namespace(app) || pier.ValidateAppName(app) != nil {
			continue // not one of an app's, as Pier names them
		}
		apps = append(apps, app)
	}
	sort.Strings(apps)
	return apps, nil
}
