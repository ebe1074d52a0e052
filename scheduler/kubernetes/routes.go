package kubernetes

import (
	"net"
	"slices"
	"strconv"

	"github.com/pierpaas/pier"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
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
func (s *Scheduler) Routes() map[string][]string {
	out := map[string][]string{}
	svcs, _ := s.services.List(labels.Everything())
	for _, svc := range svcs {
		app := svc.Labels[LabelApp]
		if svc.Name != webType || pier.ValidateAppName(app) != nil || svc.Namespace != Namespace(app) {
			continue
		}
		out[app] = []string{}
	}
	eps, _ := s.slices.List(labels.Everything())
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
