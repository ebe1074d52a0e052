// Package docker is Pier's scheduler for one Docker host: every process of
// an app (web.1, web.2, worker.1...) is a container of the release's image,
// run through the Engine API with host networking and its own PORT on
// 127.0.0.1, as a non-root user with every capability dropped.
//
// Containers outlive pierd: their labels (app, type, index, release, port
// and a hash of what defines them) are the scheduler's only record, so a
// new Scheduler over the same daemon takes up where the last one stopped.
// Only containers labelled app.kubernetes.io/managed-by=pier are touched.
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/router"
)

// Config configures a Scheduler. Zero values take their defaults.
type Config struct {
	Client *client.Client // required; made with client.WithAPIVersionNegotiation
	Logger *slog.Logger

	// PortRange holds the loopback ports processes listen on (inclusive):
	// keep it apart from the kernel's ephemeral range and other services.
	PortRange [2]int // default 20000-24999

	StartTimeout time.Duration // a web process must accept connections within this (60s)
	StopGrace    time.Duration // SIGTERM, then SIGKILL after this (10s)
	UpAfter      time.Duration // a non-web process running this long is up (1s)

	// RegistryAuth returns the X-Registry-Auth header (base64 JSON of
	// registry.AuthConfig) for pulling image, or "" for none. It is used
	// only when the image is not on the host yet; containers never see it.
	RegistryAuth func(image string) (encodedAuth string)

	// Instance names this Pier installation (pierd keeps a random one in
	// its database). The scheduler labels its containers with it and
	// adopts, lists and removes only containers of its own instance, so
	// that two installations, or tests, can share one daemon. Default
	// "default".
	Instance string
}

// Default port range: below the kernel's ephemeral ports (32768 and up),
// so that no outgoing connection holds a port a process is to listen on.
var DefaultPortRange = [2]int{20000, 24999}

// drainDelay is how long a replaced web container keeps running after it
// left the routes: a router may have picked it just before the switch.
const drainDelay = time.Second

// Scheduler runs apps' processes as containers. It implements
// pier.Scheduler, pier.ImageRunner and pier.AppLister, and feeds the router
// through Subscribe and Routes (router.RouteSource).
type Scheduler struct {
	cfg   Config
	cli   *client.Client
	log   *slog.Logger
	ports *ports

	ctx    context.Context // ends at Shutdown: the event watch and probes
	cancel context.CancelFunc
	bg     sync.WaitGroup // probes, watchers, background stops

	feed router.Feed // the router follows the ready web addresses (Subscribe)

	mu     sync.Mutex // guards apps, byID and the mutable fields of every ctr
	apps   map[string]*appState
	byID   map[string]*ctr
	closed bool
}

// appState is what the scheduler knows of one app.
type appState struct {
	name     string
	op       sync.Mutex        // one Apply, Restart or Destroy of this app at a time
	deployed bool              // Applied or recovered: the app is in Routes
	current  []*ctr            // committed: these serve (web) or work
	pending  map[*ctr]struct{} // booting, not yet committed
	stopping map[*ctr]struct{} // replaced or scaled down, being stopped
	stops    sync.WaitGroup    // background stops of this app
}

var (
	_ pier.Scheduler   = (*Scheduler)(nil)
	_ pier.ImageRunner = (*Scheduler)(nil)
	_ pier.AppLister   = (*Scheduler)(nil)
)

// New returns a scheduler over the daemon of cfg.Client. It adopts the
// containers an earlier run of pierd left (their routes appear once each
// web container accepts connections again) and removes leftover one-off
// containers, whose sessions are gone.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Client == nil {
		return nil, errors.New("docker scheduler: a Docker client is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.StartTimeout, 60*time.Second)
	def(&cfg.StopGrace, 10*time.Second)
	def(&cfg.UpAfter, time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Instance == "" {
		cfg.Instance = "default"
	}
	if cfg.PortRange == [2]int{} {
		cfg.PortRange = DefaultPortRange
	}
	if r := cfg.PortRange; r[0] < 1 || r[1] > 65535 || r[0] > r[1] {
		return nil, fmt.Errorf("docker scheduler: port range %d-%d is invalid: give two ports from 1 to 65535, the lower first", r[0], r[1])
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{
		cfg:    cfg,
		cli:    cfg.Client,
		log:    cfg.Logger.With("component", "scheduler", "scheduler", "docker"),
		ports:  newPorts(cfg.PortRange),
		ctx:    ctx,
		cancel: cancel,
		apps:   map[string]*appState{},
		byID:   map[string]*ctr{},
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	if _, err := s.cli.Ping(rctx); err != nil {
		cancel()
		return nil, fmt.Errorf("docker scheduler: the Docker daemon does not answer (%w): start it, or point DOCKER_HOST at it", err)
	}
	// The watch starts before the containers are listed, so no start or
	// die between the two goes unseen.
	ready := make(chan struct{})
	s.bg.Add(1)
	go s.watch(ready)
	<-ready
	if err := s.recover(rctx); err != nil {
		cancel()
		s.bg.Wait()
		return nil, err
	}
	return s, nil
}

// Subscribe calls fn whenever the ready web addresses of any app change,
// never concurrently with itself (router.RouteSource). fn should be quick;
// it may call Routes. The returned func unsubscribes.
func (s *Scheduler) Subscribe(fn func()) (cancel func()) { return s.feed.Subscribe(fn) }

// notify tells the subscribers the ready web addresses changed.
func (s *Scheduler) notify() { s.feed.Notify() }

// Routes returns every app this scheduler runs and the 127.0.0.1:port of
// its ready web containers (an empty list: the app exists, nothing serves).
func (s *Scheduler) Routes() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string, len(s.apps))
	for name, a := range s.apps {
		if a.deployed {
			out[name] = a.backendsLocked()
		}
	}
	return out
}

func (a *appState) backendsLocked() []string {
	out := []string{}
	for _, c := range a.current {
		if c.typ == webType && c.ready {
			out = append(out, c.addr())
		}
	}
	sort.Strings(out)
	return out
}

// appFor returns the state of app, made on first use.
func (s *Scheduler) appFor(name string) (*appState, error) {
	if err := pier.ValidateAppName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "the scheduler is shutting down: try again once pierd is back")
	}
	return s.appLocked(name), nil
}

func (s *Scheduler) appLocked(name string) *appState {
	a := s.apps[name]
	if a == nil {
		a = &appState{name: name, pending: map[*ctr]struct{}{}, stopping: map[*ctr]struct{}{}}
		s.apps[name] = a
	}
	return a
}

// CanRunImages says that this scheduler runs container images. See
// pier.ImageRunner.
func (s *Scheduler) CanRunImages() error { return nil }

// Shutdown stops watching the daemon and probing containers, and waits
// (until ctx ends) for background stops already under way. The apps'
// containers keep running: the next Scheduler adopts them.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// daemonError wraps an Engine API error with what was being done. It names
// containers and images, never config.
func daemonError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("docker scheduler: %s: %w", fmt.Sprintf(format, args...), err)
}
