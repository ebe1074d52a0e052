package kubernetes

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pierpaas/pier/router"
)

// A router in the cluster (`pierd router --endpoints kubernetes`) follows
// EndpointSlices itself. Here the slices are written by the test, for a
// web Service without a selector. The API refuses loopback addresses in a
// slice, so they name addresses of TEST-NET-1 (192.0.2.0/24, documentation
// only), and the router follows the table through a translation to the
// loopback backends standing for them: the table is the one built from
// the slices, and real requests go only to loopback. Adding and removing
// an endpoint changes where requests go; the time from the API write to
// the table's change is logged (the target is a second).
func TestEndpointsFollowSlices(t *testing.T) {
	e := newKubeEnv(t)
	ctx := kctx(t, 2*time.Minute)
	app := e.appName(t, "it-edge")
	ns := Namespace(app)
	labels := map[string]string{LabelManagedBy: managedBy, LabelApp: app}
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: webType, Labels: labels},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	eps, err := NewEndpoints(e.k.Config, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer eps.Close()
	rt := router.New(router.Config{Domain: "pier.localhost"})
	tr := &translated{src: eps, stand: map[string]string{}, applied: make(chan applied, 64)}
	defer rt.Follow(tr)()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rt.NewServer(nil)
	go srv.Serve(ln)
	defer srv.Close()

	get := func() (int, string) {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		req.Host = app + ".pier.localhost"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get(); code != 503 {
		t.Fatalf("app with a Service and no endpoint: %d, want 503", code)
	}

	// One slice per loopback backend (a slice's port is all its endpoints').
	ready := true
	addSlice := func(name, ip string) (*httptest.Server, time.Time) {
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(be.Close)
		p := int32(5000)
		tr.mu.Lock()
		tr.stand[ip+":5000"] = strings.TrimPrefix(be.URL, "http://")
		tr.mu.Unlock()
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: managedBy, LabelApp: app, discoveryv1.LabelServiceName: webType}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports:       []discoveryv1.EndpointPort{{Port: &p}},
		}
		wrote := time.Now()
		if _, err := e.admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return be, wrote
	}
	// took waits for the router to have taken a table with n backends for
	// the app, and says how long that took from the write.
	took := func(wrote time.Time, n int) time.Duration {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case a := <-tr.applied:
				if len(a.routes[app]) == n {
					return a.at.Sub(wrote)
				}
			case <-deadline:
				t.Fatalf("the router never had %d backends: %v", n, eps.Routes()[app])
			}
		}
	}
	_, wrote := addSlice("a", "192.0.2.1")
	d1 := took(wrote, 1)
	if code, body := get(); code != 200 || body != "a" {
		t.Fatalf("after the first endpoint: %d %q", code, body)
	}
	_, wrote = addSlice("b", "192.0.2.2")
	d2 := took(wrote, 2)
	seen := map[string]bool{}
	for range 10 {
		_, body := get()
		seen[body] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("requests over two endpoints reached %v", seen)
	}
	wrote = time.Now()
	if err := e.admin.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	d3 := took(wrote, 1)
	if got := eps.Routes()[app]; len(got) != 1 || got[0] != "192.0.2.2:5000" {
		t.Fatalf("routes from the slices: %v", got)
	}
	for range 5 {
		if code, body := get(); code != 200 || body != "b" {
			t.Fatalf("after removing a: %d %q", code, body)
		}
	}
	t.Logf("EndpointSlice write to router table: add %s, add %s, remove %s (target: within 1 s)", d1.Round(time.Millisecond), d2.Round(time.Millisecond), d3.Round(time.Millisecond))
}

// translated is src with each address replaced by the loopback backend
// standing for it; an address with none is dropped, never dialled. Each
// time the router following it has taken the routes, applied gets what it
// took: the test waits for the router's table, not for the source's, which
// changes first.
type translated struct {
	src     router.RouteSource
	mu      sync.Mutex
	stand   map[string]string   // slice address → loopback backend
	gave    map[string][]string // what Routes last returned
	applied chan applied
}

type applied struct {
	at     time.Time
	routes map[string][]string
}

func (t *translated) Subscribe(fn func()) func() {
	return t.src.Subscribe(func() {
		fn() // the router's SetRoutes(t.Routes())
		t.mu.Lock()
		gave := t.gave
		t.mu.Unlock()
		a := applied{at: time.Now(), routes: gave}
		// Never block the source's notifications (the watch sees other
		// tests' apps too): when the buffer is full, the oldest goes,
		// since the newest says what the router has now.
		for {
			select {
			case t.applied <- a:
				return
			default:
				select {
				case <-t.applied:
				default:
				}
			}
		}
	})
}

func (t *translated) Routes() map[string][]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string][]string{}
	for app, addrs := range t.src.Routes() {
		out[app] = []string{}
		for _, a := range addrs {
			if l, ok := t.stand[a]; ok {
				out[app] = append(out[app], l)
			}
		}
	}
	t.gave = out
	return out
}
