// Package kubernetes is Pier's production scheduler: it runs each app in
// its own Namespace (pier-<app>) of a Kubernetes cluster, with one
// Deployment per process type, a Service for web, and the release's config
// in a Secret per release, all written with server-side apply.
//
// It reads the cluster only through shared informers restricted to Pier's
// objects (label app.kubernetes.io/managed-by=pier), and waits for rollouts
// by being woken by their events, never by polling: once the caches are
// synced, a scheduler with nothing to do sends no request at all. It only
// ever changes or deletes namespaces that carry that label; a namespace
// pier-<app> made by someone else is refused.
//
// Apply does not roll back: when a release's processes do not become
// available within the rollout timeout it returns an error of code
// pier.EROLLOUT naming the process types and why, leaving the old processes
// serving (maxUnavailable is 0) and the new ones trying; the controller
// restores the previous release by applying it again.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/router"
)

// Labels and annotations Pier puts on what it creates.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by" // "pier": the only objects Pier changes or deletes
	LabelName        = "app.kubernetes.io/name"       // the app
	LabelPartOf      = "app.kubernetes.io/part-of"    // "pier"
	LabelApp         = "pier.dev/app"
	LabelProcessType = "pier.dev/process-type" // "run" on one-off pods
	LabelRelease     = "pier.dev/release"      // "v7"

	// AnnotationRestartedAt on a pod template is set by Restart; changing
	// it rolls the Deployment's pods.
	AnnotationRestartedAt = "pier.dev/restartedAt"

	managedBy = "pier"

	// FieldManager owns every field Pier applies.
	FieldManager = "pier"
	// restartFieldManager owns only the restartedAt annotation, so that
	// an Apply (which does not name it) does not remove it and roll again.
	restartFieldManager = "pier-restart"

	// NamespacePrefix + app name is an app's namespace.
	NamespacePrefix = "pier-"

	// RunType is the process type label of one-off pods.
	RunType = "run"
)

// Defaults of Config.
const (
	DefaultRolloutTimeout         = 5 * time.Minute
	DefaultQPS                    = 100
	DefaultBurst                  = 200
	DefaultPort                   = 5000
	DefaultTerminationGracePeriod = 30 * time.Second
	DefaultSyncTimeout            = time.Minute
)

// Config configures a Scheduler. Zero values take their defaults.
type Config struct {
	// RESTConfig reaches the cluster. It is copied; QPS and Burst are
	// raised to the values below when it leaves them at zero.
	RESTConfig *rest.Config
	// Client is used instead of a client made from RESTConfig when set
	// (tests give client-go's fake clientset).
	Client kubernetes.Interface
	Logger *slog.Logger

	// RolloutTimeout bounds how long Apply and Restart wait for new
	// processes to become available (5m); it is also each Deployment's
	// progressDeadlineSeconds.
	RolloutTimeout time.Duration
	QPS            float32 // client-side rate limit (100/s); client-go's own default is 5
	Burst          int     // (200)
	// Port is the PORT every process is given and web listens on (5000).
	Port int
	// TerminationGracePeriod is how long a stopped process has between
	// SIGTERM and SIGKILL (30s).
	TerminationGracePeriod time.Duration
	// NodeSelector, when set, keeps app pods on the nodes with these
	// labels (a node pool for apps). Pods that no node matches stay
	// pending, and Apply reports them as unschedulable.
	NodeSelector map[string]string
	// PodAnnotations are put on every app pod (pod templates and one-off
	// pods), for the cluster's own tooling: a service mesh's injection
	// switch, a metrics scraper's, an autoscaler's eviction hint. Pier's
	// own annotations (pier.dev/...) cannot be set here. (Tests use it
	// for kwok's stage delays, to make pods that never become ready.)
	PodAnnotations map[string]string
	// SyncTimeout bounds New's wait for the informer caches (1m).
	SyncTimeout time.Duration

	// Tenancy (netpol.go): each app namespace gets a NetworkPolicy that
	// admits ingress only from the router's pods: those with
	// RouterPodLabels (DefaultRouterPodLabels) in RouterNamespace
	// (DefaultRouterNamespace). DisableNetworkPolicy writes none.
	RouterNamespace      string
	RouterPodLabels      map[string]string
	DisableNetworkPolicy bool

	// PullCredentials, when set, gives each app's pods credentials of the
	// app's own to pull its images from the platform's registry: the
	// registry's host[:port] and a username and password that may pull
	// the app's repository only (registryauth). They are written to a
	// kubernetes.io/dockerconfigjson Secret (PullSecretName) in the app's
	// namespace, named by every pod's imagePullSecrets.
	PullCredentials func(app string) (registry, username, password string, err error)
}

// Scheduler runs apps on a Kubernetes cluster. It implements
// pier.Scheduler. Make it with New and stop it with Close.
type Scheduler struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger

	factory    informers.SharedInformerFactory
	namespaces corelisters.NamespaceLister
	deploys    appslisters.DeploymentLister
	replicas   appslisters.ReplicaSetLister
	pods       corelisters.PodLister
	services   corelisters.ServiceLister
	secrets    corelisters.SecretLister
	slices     discoverylisters.EndpointSliceLister
	netpols    networkinglisters.NetworkPolicyLister
	routes     router.Feed // the router's subscribers (routes.go)
	stop       chan struct{}
	closeOnce  sync.Once

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{} // namespace → woken on any change in it
	drift   func(app string)                // see NotifyDrift
}

var _ pier.Scheduler = (*Scheduler)(nil)

// New connects to the cluster, starts the informers and waits until their
// caches are synced.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RolloutTimeout, DefaultRolloutTimeout)
	def(&cfg.TerminationGracePeriod, DefaultTerminationGracePeriod)
	def(&cfg.SyncTimeout, DefaultSyncTimeout)
	if cfg.QPS <= 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.RouterNamespace == "" {
		cfg.RouterNamespace = DefaultRouterNamespace
	}
	if len(cfg.RouterPodLabels) == 0 {
		cfg.RouterPodLabels = DefaultRouterPodLabels()
	}
	for k := range cfg.PodAnnotations {
		if strings.HasPrefix(k, "pier.dev/") {
			return nil, fmt.Errorf("kubernetes scheduler: pod annotation %s is Pier's own: choose another name", k)
		}
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("kubernetes scheduler: port %d is not a port number", cfg.Port)
	}
	client := cfg.Client
	if client == nil {
		if cfg.RESTConfig == nil {
			return nil, errors.New("kubernetes scheduler: RESTConfig (or Client) is required")
		}
		rc := rest.CopyConfig(cfg.RESTConfig)
		if rc.QPS == 0 {
			rc.QPS = cfg.QPS
		}
		if rc.Burst == 0 {
			rc.Burst = cfg.Burst
		}
		if rc.UserAgent == "" {
			rc.UserAgent = "pier-scheduler"
		}
		var err error
		if client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("kubernetes scheduler: %w", err)
		}
	}
	s := &Scheduler{
		cfg:     cfg,
		client:  client,
		log:     cfg.Logger.With("component", "scheduler", "scheduler", "kubernetes"),
		stop:    make(chan struct{}),
		waiters: map[string]map[*waiter]struct{}{},
	}
	// Every object Pier makes carries the managed-by label, and so do the
	// ReplicaSets and pods made from its pod templates: the caches hold
	// Pier's objects and nothing else of the cluster.
	s.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = LabelManagedBy + "=" + managedBy
		}),
		informers.WithTransform(stripManagedFields),
	)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    s.changed,
		UpdateFunc: func(_, obj any) { s.changed(obj) },
		DeleteFunc: s.changed,
	}
	type informer interface {
		Informer() cache.SharedIndexInformer
	}
	nsI := s.factory.Core().V1().Namespaces()
	depI := s.factory.Apps().V1().Deployments()
	rsI := s.factory.Apps().V1().ReplicaSets()
	podI := s.factory.Core().V1().Pods()
	svcI := s.factory.Core().V1().Services()
	secI := s.factory.Core().V1().Secrets()
	// EndpointSlices mirror their Service's labels (the managed-by one
	// included): the web Service's are the router's table (routes.go).
	esI := s.factory.Discovery().V1().EndpointSlices()
	npI := s.factory.Networking().V1().NetworkPolicies() // netpol.go
	for _, i := range []informer{nsI, depI, rsI, podI, svcI, secI, esI, npI} {
		if _, err := i.Informer().AddEventHandler(handler); err != nil {
			return nil, fmt.Errorf("kubernetes scheduler: %w", err)
		}
	}
	// What an app is made of, deleted: Pier's own deletes (an old process
	// type, a destroyed app) are reported too, and converging such an app
	// again does nothing.
	for _, i := range []informer{nsI, depI, svcI} {
		if _, err := i.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: s.deleted}); err != nil {
			return nil, fmt.Errorf("kubernetes scheduler: %w", err)
		}
	}
	s.namespaces, s.deploys, s.replicas = nsI.Lister(), depI.Lister(), rsI.Lister()
	s.pods, s.services, s.secrets = podI.Lister(), svcI.Lister(), secI.Lister()
	s.slices, s.netpols = esI.Lister(), npI.Lister()
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.routes.Notify() },
		UpdateFunc: func(_, _ any) { s.routes.Notify() },
		DeleteFunc: func(any) { s.routes.Notify() },
	}
	for _, i := range []informer{svcI, esI} {
		if _, err := i.Informer().AddEventHandler(notify); err != nil {
			return nil, fmt.Errorf("kubernetes scheduler: %w", err)
		}
	}
	s.factory.Start(s.stop)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.SyncTimeout)
	defer cancel()
	for typ, ok := range s.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			s.Close()
			return nil, fmt.Errorf("kubernetes scheduler: the %v cache did not sync within %s: is the API server reachable, and may Pier list and watch it?", typ, cfg.SyncTimeout)
		}
	}
	return s, nil
}

// Close stops the informers. Calls in progress end with errors.
func (s *Scheduler) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.factory.Shutdown()
	})
	return nil
}

// stripManagedFields keeps the caches small: Pier never reads managed
// fields, nor what a Secret holds.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	// Only a Secret's metadata is ever read from the cache: an app's
	// config values are not kept in pierd's memory.
	if sec, ok := obj.(*corev1.Secret); ok {
		sec.Data, sec.StringData = nil, nil
	}
	return obj, nil
}

// Namespace is the namespace of app.
func Namespace(app string) string { return NamespacePrefix + app }

// waiter is woken (a coalescing, non-blocking send) whenever an object of
// its namespace changes: a work queue of one key, so a burst of events is
// one evaluation, and nothing is polled.
type waiter struct{ ch chan struct{} }

func (s *Scheduler) watch(ns string) (*waiter, func()) {
	w := &waiter{ch: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.waiters[ns] == nil {
		s.waiters[ns] = map[*waiter]struct{}{}
	}
	s.waiters[ns][w] = struct{}{}
	s.mu.Unlock()
	return w, func() {
		s.mu.Lock()
		delete(s.waiters[ns], w)
		if len(s.waiters[ns]) == 0 {
			delete(s.waiters, ns)
		}
		s.mu.Unlock()
	}
}

// objectOf is the metadata of an informer event's object, a deleted one's
// last known state included.
func objectOf(obj any) (metav1.Object, any, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	a, err := meta.Accessor(obj)
	return a, obj, err == nil
}

func (s *Scheduler) changed(obj any) {
	a, obj, ok := objectOf(obj)
	if !ok {
		return
	}
	ns := a.GetNamespace()
	if _, ok := obj.(*corev1.Namespace); ok {
		ns = a.GetName()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.waiters[ns] {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

// NotifyDrift implements pier.DriftNotifier: fn hears of every app whose
// namespace, Deployment or Service was deleted.
func (s *Scheduler) NotifyDrift(fn func(app string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drift = fn
}

func (s *Scheduler) deleted(obj any) {
	a, _, ok := objectOf(obj)
	if !ok {
		return
	}
	app := a.GetLabels()[LabelApp]
	if pier.ValidateAppName(app) != nil {
		return
	}
	s.mu.Lock()
	fn := s.drift
	s.mu.Unlock()
	if fn != nil {
		fn(app)
	}
}

// errDeadline is what until returns when its deadline passes first.
var errDeadline = errors.New("deadline passed")

// until evaluates check now and after every change in namespace ns, until
// it reports done or an error, ctx ends, or deadline (nil: none) fires.
func (s *Scheduler) until(ctx context.Context, ns string, deadline <-chan time.Time, check func() (bool, error)) error {
	w, cancel := s.watch(ns)
	defer cancel()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
			return pier.Errorf(pier.EUNAVAILABLE, "the Kubernetes scheduler is shutting down")
		case <-deadline:
			return errDeadline
		case <-w.ch:
		}
	}
}

// ownedNamespace returns app's namespace from the cache: nil if the cache
// has none (there is none, or it is not Pier's).
func (s *Scheduler) ownedNamespace(app string) *corev1.Namespace {
	ns, err := s.namespaces.Get(Namespace(app))
	if err != nil || ns.Labels[LabelManagedBy] != managedBy {
		return nil
	}
	return ns
}
