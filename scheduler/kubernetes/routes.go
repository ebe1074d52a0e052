package kubernetes

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/router"
)

// The scheduler is the router's RouteSource on Kubernetes (router.Follow,
// and the controller's feed for routers running alone): each app's ready
// web addresses are its web Service's EndpointSlices, as the cluster's
// endpoint controller keeps them from pod readiness. A router in the
// cluster sends traffic straight to the pods, as kube-proxy would, with
// no extra hop; a pod that stops being ready, or starts terminating,
// leaves the table on the informer's next event, before its SIGTERM's
// drain delay is over.

// Subscribe implements router.RouteSource: fn is called after every change
// of a web Service or its EndpointSlices.
func (s *Scheduler) Subscribe(fn func()) (cancel func()) { return s.routes.Subscribe(fn) }

// Routes implements router.RouteSource: app → ready web addresses
// (host:port). An app with a web Service and no ready endpoint is present
// with none: the router answers 503 for it, not 404.
func (s *Scheduler) Routes() map[string][]string { return routesFrom(s.services, s.slices) }

func routesFrom(services corelisters.ServiceLister, eslices discoverylisters.EndpointSliceLister) map[string][]string {
	out := map[string][]string{}
	svcs, _ := services.List(labels.Everything())
	for _, svc := range svcs {
		app := svc.Labels[LabelApp]
		if svc.Name != webType || pier.ValidateAppName(app) != nil || svc.Namespace != Namespace(app) {
			continue
		}
		out[app] = []string{}
	}
	eps, _ := eslices.List(labels.Everything())
	for _, es := range eps {
		app := es.Labels[LabelApp]
		have, ok := out[app]
		if !ok || es.Labels[discoveryv1.LabelServiceName] != webType || es.Namespace != Namespace(app) {
			continue
		}
		out[app] = append(have, readyAddrs(es)...)
	}
	for app, addrs := range out {
		slices.Sort(addrs)
		out[app] = slices.Compact(addrs)
	}
	return out
}

// Endpoints is the router's RouteSource when the router runs in the
// cluster on its own (`pierd router --endpoints kubernetes`): the same
// table as the scheduler's, read straight from the cluster through two
// informers (web Services and their EndpointSlices, Pier's only), so a pod
// that becomes ready or goes away changes the routes on the informer's
// event, without a hop through the controller. It needs only get, list
// and watch on services and endpointslices.
type Endpoints struct {
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	feed     router.Feed
	stop     chan struct{}
	once     sync.Once
}

// NewEndpoints connects to the cluster and waits for the two caches.
func NewEndpoints(rc *rest.Config, syncTimeout time.Duration) (*Endpoints, error) {
	if syncTimeout <= 0 {
		syncTimeout = DefaultSyncTimeout
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "pier-router"
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes endpoints: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = LabelManagedBy + "=" + managedBy
		}),
		informers.WithTransform(stripManagedFields),
	)
	svcI := factory.Core().V1().Services()
	esI := factory.Discovery().V1().EndpointSlices()
	e := &Endpoints{services: svcI.Lister(), slices: esI.Lister(), stop: make(chan struct{})}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { e.feed.Notify() },
		UpdateFunc: func(_, _ any) { e.feed.Notify() },
		DeleteFunc: func(any) { e.feed.Notify() },
	}
	for _, i := range []cache.SharedIndexInformer{svcI.Informer(), esI.Informer()} {
		if _, err := i.AddEventHandler(notify); err != nil {
			return nil, fmt.Errorf("kubernetes endpoints: %w", err)
		}
	}
	factory.Start(e.stop)
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			e.Close()
			return nil, fmt.Errorf("kubernetes endpoints: the %v cache did not sync within %s: is the API server reachable, and may this service account list and watch services and endpointslices?", typ, syncTimeout)
		}
	}
	return e, nil
}

// Subscribe implements router.RouteSource.
func (e *Endpoints) Subscribe(fn func()) (cancel func()) { return e.feed.Subscribe(fn) }

// Routes implements router.RouteSource.
func (e *Endpoints) Routes() map[string][]string { return routesFrom(e.services, e.slices) }

// Close stops the informers.
func (e *Endpoints) Close() error {
	e.once.Do(func() { close(e.stop) })
	return nil
}

// readyAddrs returns host:port of the slice's endpoints that are ready and
// not terminating. An unset condition counts as ready, as the API says.
func readyAddrs(es *discoveryv1.EndpointSlice) []string {
	if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
		return nil
	}
	var port int32
	for _, p := range es.Ports {
		if p.Port != nil && (p.Protocol == nil || *p.Protocol == "TCP") {
			port = *p.Port
			break
		}
	}
	if port == 0 {
		return nil
	}
	var out []string
	for _, ep := range es.Endpoints {
		c := ep.Conditions
		if c.Ready != nil && !*c.Ready || c.Terminating != nil && *c.Terminating || len(ep.Addresses) == 0 {
			continue
		}
		// The first address is the endpoint's; the others are the same pod.
		out = append(out, net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port))))
	}
	return out
}
