package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder"
	"github.com/pierpaas/pier/builder/host"
	"github.com/pierpaas/pier/builder/pack"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/sandbox"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/postgres/embedded"
	"github.com/pierpaas/pier/router"
	"github.com/pierpaas/pier/scheduler/docker"
	"github.com/pierpaas/pier/scheduler/local"
)

// platform is what `pierd all` runs beside the API: a build strategy (host
// or pack), a scheduler (local, docker or kubernetes), the router and the
// SSH builder.
type platform struct {
	strategy  pier.BuildStrategy
	host      *host.Strategy // the host strategy, when it builds
	sched     pier.Scheduler
	routes    router.RouteSource // where the router finds app processes: the scheduler
	rec       *controller.Reconciler
	router    *router.Router
	ssh       *builder.Server
	sshPublic string       // --ssh-public-host; "": localhost and the listening port
	sshPort   atomic.Value // string, once the builder listens
	unfollow  func()
	builder   string                  // the pack strategy's default CNB builder
	pack      *pack.Strategy          // the pack strategy, when it builds
	closers   []func(context.Context) // stop what startPlatform started, last first

	stopWatch func() // stops following the domains table, and waits

	httpsLn net.Listener // the router's TLS listener (--https-addr), nil when off

	buildSources http.Handler // the kubernetes strategy's source server, served on the internal listener

	trees string // where pushed trees are checked out while they build: <runtime dir>/src, emptied at start
}

// gitURL is where to push an app: --ssh-public-host when set (the
// builder's address as users reach it: a load balancer, a node port), else
// plain localhost and the port the builder listens on, since ssh does not
// resolve *.localhost names the way browsers do.
func (p *platform) gitURL(app string) string {
	if p.sshPublic != "" {
		return "ssh://git@" + p.sshPublic + "/" + app + ".git"
	}
	port, _ := p.sshPort.Load().(string)
	if port == "" {
		return ""
	}
	return "ssh://git@localhost:" + port + "/" + app + ".git"
}

// runtimeDir is where builds and app processes live. They run as
// unprivileged users, which cannot enter a data dir under a 0700 parent
// such as /root; as root, they live under /var/lib/pier instead, keyed by
// the data dir so that two checkouts do not share.
func runtimeDir(dataDir string) (string, error) {
	if os.Geteuid() != 0 {
		return filepath.Abs(filepath.Join(dataDir, "runtime"))
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", err
	}
	dir := embedded.RelocatedDir("rt", abs)
	// App uids must reach their own builds and working dirs below, but not
	// list what is here (every app's names and paths).
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o711)
}

// toolDir finds bin/lifecycle or bin/buildpacks: the flag if given, else
// beside the pierd executable, where `make build` puts them.
func toolDir(flagValue, name string) (string, error) {
	dir := flagValue
	if dir == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(filepath.Dir(exe), name)
	}
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("%s not found at %s: run `make build`, or pass --%s-dir", name, dir, name)
	}
	return dir, nil
}

func startPlatform(ctx context.Context, o options, db *postgres.DB, log *slog.Logger) (_ *platform, err error) {
	p := &platform{}
	defer func() {
		if err != nil {
			p.close(context.Background())
		}
	}()
	rt, err := runtimeDir(o.dataDir)
	if err != nil {
		return nil, fmt.Errorf("runtime dir: %w", err)
	}
	// Trees of pushes a killed pierd was building go now: nothing else
	// would ever remove them.
	p.trees = filepath.Join(rt, "src")
	if err := builder.ResetTreeDir(p.trees); err != nil {
		return nil, err
	}
	switch o.scheduler {
	case "local":
		if err := p.startLocal(o, rt, db, log); err != nil {
			return nil, err
		}
	case "docker":
		cli, err := dockerClient()
		if err != nil {
			return nil, err
		}
		reg, err := registryOf(o)
		if err != nil {
			return nil, err
		}
		instance, err := instanceID(ctx, db)
		if err != nil {
			return nil, err
		}
		s, err := docker.New(docker.Config{Client: cli, Logger: log, RegistryAuth: reg.Auth, Instance: instance, PortRange: o.ports})
		if err != nil {
			return nil, fmt.Errorf("docker scheduler: %w", err)
		}
		p.closers = append(p.closers, func(ctx context.Context) { s.Shutdown(ctx) })
		p.sched, p.routes = s, s
	case "kubernetes":
		s, err := startKube(o, log)
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, func(context.Context) { s.Close() })
		// The router sends requests straight to the ready pods of each
		// app's web Service (its EndpointSlices): pierd runs in the
		// cluster, or on its pod network.
		p.sched, p.routes = s, s
	}
	if o.buildStrategy == pier.StrategyPack {
		if err := p.startPack(o, log); err != nil {
			return nil, err
		}
	}
	if o.buildStrategy == pier.StrategyKubernetes {
		if err := p.startKubeBuild(ctx, o, log); err != nil { // kubebuild.go
			return nil, err
		}
	}
	p.rec = controller.NewReconciler(db, p.sched, log)
	return p, nil
}

// startLocal makes the host strategy and the local scheduler that runs
// its builds.
func (p *platform) startLocal(o options, rt string, db pier.Store, log *slog.Logger) error {
	lifecycle, err := toolDir(o.lifecycleDir, "lifecycle")
	if err != nil {
		return err
	}
	buildpacks, err := toolDir(o.buildpacksDir, "buildpacks")
	if err != nil {
		return err
	}
	hcfg := host.Config{LifecycleDir: lifecycle, BuildpacksDir: buildpacks, WorkDir: filepath.Join(rt, "builds"), Logger: log}
	if os.Geteuid() == 0 {
		// Each app builds as its own uid, the one the store gave it and its
		// processes run as (the same as BuildRequest.UID), so that one
		// app's build cannot read or poison another's cache. An app the
		// store cannot name gives 0, which the host strategy refuses.
		hcfg.BuildUser = func(app string) (int, int) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a, _, err := db.AppAccess(ctx, app, "")
			if err != nil || a.UID <= 0 {
				log.Error("no uid to build the app as", "app", app, "err", err)
				return 0, 0
			}
			return a.UID, a.UID
		}
	}
	appWrap, err := sandboxes(o, &hcfg)
	if err != nil {
		return err
	}
	hs, err := host.New(hcfg)
	if err != nil {
		return err
	}
	p.host, p.strategy = hs, hs
	p.closers = append(p.closers, func(context.Context) { hs.Close() })
	sched, err := local.New(local.Config{
		DataDir:   filepath.Join(rt, "scheduler"),
		Logger:    log,
		PortRange: o.ports,
		// As root, a process runs only as a uid of this range (the store
		// hands them out from it), and the firewall tells apps by it.
		AppUIDs: [2]uint32{uint32(o.appUIDs[0]), uint32(o.appUIDs[1])},
		// As root, apps reach no loopback port but the router's: not each
		// other, nor pierd's internal listener (package firewall).
		AllowedPorts: publicPorts(o),
		Wrap:         appWrap,
		Launch: func(d pier.Deployment, processType string) (*exec.Cmd, error) {
			if d.Release.Build == nil {
				return nil, errors.New("the release has no build")
			}
			path, env := hs.LaunchCommand(d.Release.Build.Image, processType)
			cmd := exec.Command(path)
			cmd.Env = env
			cmd.Dir = filepath.Join(d.Release.Build.Image, "app")
			return cmd, nil
		},
		// `pier run`: the launcher with "--" executes the command as given
		// (no shell) with the layers' environment, as a process type would
		// have it: a Python app's venv, a Node app's node_modules/.bin.
		RunCommand: func(d pier.Deployment, command []string) (*exec.Cmd, error) {
			if d.Release.Build == nil {
				return nil, errors.New("the release has no build")
			}
			_, env := hs.LaunchCommand(d.Release.Build.Image, "web")
			cmd := exec.Command(filepath.Join(d.Release.Build.Image, "cnb", "lifecycle", "launcher"), append([]string{"--"}, command...)...)
			cmd.Env = env
			cmd.Dir = filepath.Join(d.Release.Build.Image, "app")
			return cmd, nil
		},
	})
	if err != nil {
		return err
	}
	p.sched, p.routes = sched, sched
	p.closers = append(p.closers, func(ctx context.Context) { sched.Shutdown(ctx) })
	return nil
}

// sandboxes isolates builds and app processes without root (with root,
// per-app uids do): each runs in user, mount and pid namespaces where the
// data dir (passwords, the SSH host key, repositories) is an empty tmpfs
// with only what it needs bound back: a build the builds' dir, an app
// process its build and its own dir. Without user namespaces pierd refuses
// to start rather than run apps that can read its secrets.
func sandboxes(o options, hcfg *host.Config) (func(*exec.Cmd, string) error, error) {
	if os.Geteuid() == 0 {
		return nil, nil
	}
	if err := sandbox.Available(); err != nil {
		return nil, err
	}
	data, err := filepath.Abs(o.dataDir)
	if err != nil {
		return nil, err
	}
	builds := hcfg.WorkDir
	hcfg.Wrap = func(cmd *exec.Cmd) error {
		return sandbox.Wrap(cmd, sandbox.Spec{Hide: []string{data}, Keep: []string{builds}, PrivateTmp: true})
	}
	return func(cmd *exec.Cmd, home string) error {
		// cmd.Dir is <build>/app (Launch, RunCommand).
		return sandbox.Wrap(cmd, sandbox.Spec{Hide: []string{data}, Keep: []string{filepath.Dir(cmd.Dir), home}, PrivateTmp: true})
	}, nil
}

// publicPorts are the ports of --http-addr and --https-addr; a port 0 is
// chosen later and cannot be named: apps cannot reach that one.
func publicPorts(o options) []int {
	var out []int
	for _, a := range []string{o.httpAddr, o.httpsAddr} {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 {
				out = append(out, n)
			}
		}
	}
	return out
}

// startPack makes the pack strategy: images built with a Docker daemon and
// pushed to the registry.
func (p *platform) startPack(o options, log *slog.Logger) error {
	cli, err := dockerClient()
	if err != nil {
		return err
	}
	reg, err := registryOf(o)
	if err != nil {
		return err
	}
	s, err := pack.New(pack.Config{
		Docker: cli, Registry: reg, DefaultBuilder: o.builder, TrustedBuilders: splitList(o.trustedBuilders),
		LifecycleImage: o.lifecycleImage, BuildDockerHost: o.buildDockerHost, BuildNetwork: o.buildNetwork, Logger: log,
	})
	if err != nil {
		return err
	}
	p.strategy, p.builder, p.pack = s, o.builder, s
	return nil
}

// close stops what startPlatform started, last first.
func (p *platform) close(ctx context.Context) {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i](ctx)
	}
	p.closers = nil
}

// serveAll starts the router (with the API behind it; unless --router=false)
// and the SSH builder, converges every app, and returns the HTTP handler
// for the public port.
func (p *platform) serveAll(ctx context.Context, o options, db *postgres.DB, api *controller.Server, log *slog.Logger, out io.Writer) (http.Handler, error) {
	apiH := apiDeadlines(api)
	if o.router {
		if err := p.startRouter(ctx, o, db, api, apiH, log, out); err != nil {
			return nil, err
		}
	}
	if p.pack != nil {
		p.rec.OnDestroy(p.pack.RemoveApp) // a destroyed app's build cache goes with it
	}
	p.sshPublic = o.sshPublic
	if o.sshAddr == "off" {
		// Builders running alone (pierd builder) take the pushes and hand
		// them over on the internal listener (internalHandlers).
		fmt.Fprintf(out, "Builder: none in this process (--ssh-addr=off); git pushes come from builders running alone (pierd builder)\n")
	} else if err := p.serveSSH(o, db, api, log, out); err != nil {
		return nil, err
	}

	// Bring every app back to what Postgres says it runs, once the host
	// builds a restore left missing are rebuilt (rebuild.go), and again
	// after each outage of the database.
	go func() {
		if n := p.rebuildMissing(ctx, db, o.dataDir, log); n > 0 {
			fmt.Fprintf(out, "Rebuilt %d missing builds from their repositories\n", n)
		}
		syncApps(ctx, db, p.rec, log)
	}()
	// What is deleted behind Pier's back comes back (schedulers that
	// report it: Kubernetes).
	go p.rec.Watch(ctx)

	if !o.router {
		// The router runs elsewhere (pierd router, fed by the internal
		// listener): the public port is the API's, as pierd controller's.
		return api, nil
	}
	// The API answers on its own host name through the router, and on
	// loopback addresses (http://127.0.0.1:8080), which no app can have.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Host
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		if h == "localhost" || net.ParseIP(strings.Trim(h, "[]")) != nil {
			apiH.ServeHTTP(w, r)
			return
		}
		p.router.ServeHTTP(w, r)
	}), nil
}

// startRouter makes pierd all's in-process router, with the API behind it
// (apiH), fed by the scheduler's routes and Postgres' domains,
// certificates, settings and ACME challenges.
func (p *platform) startRouter(ctx context.Context, o options, db *postgres.DB, api *controller.Server, apiH http.Handler, log *slog.Logger, out io.Writer) error {
	u, _ := url.Parse(api.PublicURL())
	trusted, err := router.ParsePrefixes(o.trustedProxies) // checked by Main
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	rcfg := router.Config{
		Domain:         u.Hostname(),
		API:            apiH,
		TrustedProxies: trusted,
		// Asked only for a host without a route, never for an app that
		// serves, so that the router does not depend on the database.
		// While the database is down an app is taken to exist: "no
		// process, try again" rather than a 404 that a browser caches.
		Known: func(app string) bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, _, err := db.AppAccess(ctx, app, "")
			return err == nil || db.Outage(err)
		},
		Logger: log,
	}
	if o.accessLog {
		rcfg.AccessLog = log.With("component", "router")
	}
	if o.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		rcfg.Metrics = reg
		if err := p.serveMetrics(ctx, o.metricsAddr, reg, log, out); err != nil {
			return err
		}
	}
	if o.httpsAddr != "" {
		// Listen first: redirects to https name the port.
		ln, err := net.Listen("tcp", o.httpsAddr)
		if err != nil {
			return fmt.Errorf("listen on %s for HTTPS: %w (change it with --https-addr)", o.httpsAddr, err)
		}
		p.httpsLn = ln
		p.closers = append(p.closers, func(context.Context) { ln.Close() })
		rcfg.HTTPSPort = ln.Addr().(*net.TCPAddr).Port
	}
	p.router = router.New(rcfg)
	if err := o.tls.follow(ctx, p.router, log); err != nil {
		return err
	}
	if p.routes != nil {
		p.unfollow = p.router.Follow(p.routes)
	}
	// Custom domains come from Postgres, whichever controller added them.
	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		db.WatchDomains(wctx, log, p.router.SetDomains)
	}()
	// So do certificates and HTTPS settings (tls.go of the router).
	certsWatched := make(chan struct{})
	go func() {
		defer close(certsWatched)
		db.WatchCerts(wctx, log, func(st pier.TLSState) { setTLS(p.router, st) })
	}()
	p.stopWatch = func() { cancel(); <-watched; <-certsWatched }
	// And the apps' router settings: maintenance, allowlist, limits.
	settingsWatched := make(chan struct{})
	go func() {
		defer close(settingsWatched)
		db.WatchRouterSettings(wctx, log, p.router.SetSettings)
	}()
	// And the ACME challenges under way, for automatic certificates (acme.go).
	challengesWatched := watchChallenges(wctx, db, p.router, log)
	stopOthers := p.stopWatch
	p.stopWatch = func() { stopOthers(); <-settingsWatched; <-challengesWatched }

	return nil
}

// serveMetrics serves reg at http://addr/metrics until ctx ends.
func (p *platform) serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s for metrics: %w (change it with --metrics-addr)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Fprintf(out, "Metrics at http://%s/metrics\n", ln.Addr())
	return nil
}

// apiDeadlines gives each API request the read and write time limits that
// pierd's server gives the API when it serves it alone; the router's server
// has none, so that app streams last. The limits are lifted once the
// request is done: net/http does not reset a write deadline it did not set,
// and the connection may next carry an app's request.
func apiDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		rc.SetReadDeadline(now.Add(apiReadTimeout))
		rc.SetWriteDeadline(now.Add(apiWriteTimeout))
		defer func() {
			rc.SetReadDeadline(time.Time{})
			rc.SetWriteDeadline(time.Time{})
		}()
		h.ServeHTTP(w, r)
	})
}

// deployer builds and releases a push: check out the tree, build it, start
// it, and only then write the release.
func (p *platform) deployer(api *controller.Server) func(ctx context.Context, req builder.DeployRequest) error {
	return func(ctx context.Context, req builder.DeployRequest) error {
		src, remove, err := req.Checkout(ctx)
		if err != nil {
			return err
		}
		defer remove()
		start := time.Now()
		rel, err := p.rec.Deploy(ctx, p.strategy, controller.DeployRequest{
			App: req.App, User: req.User, Commit: req.Commit, SourceDir: src, Log: req.Log,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(req.Log, "-----> Released v%d in %.1fs: %s\n", rel.Version, time.Since(start).Seconds(), api.AppURL(req.App))
		return nil
	}
}

// serveSSH runs the builder's SSH server for git push in this process.
func (p *platform) serveSSH(o options, db *postgres.DB, api *controller.Server, log *slog.Logger, out io.Writer) error {
	var err error
	p.ssh, err = builder.New(builder.Config{
		Addr:     o.sshAddr,
		DataDir:  o.dataDir,
		Store:    db,
		Logger:   log,
		Deployer: builder.DeployerFunc(p.deployer(api)),
		TreeDir:  p.trees,
	})
	if err != nil {
		return err
	}
	// A destroyed app's repository goes with it.
	p.rec.OnDestroy(p.ssh.RemoveRepo)
	ln, err := net.Listen("tcp", o.sshAddr)
	if err != nil {
		return fmt.Errorf("listen on %s for git pushes: %w (change it with --ssh-addr)", o.sshAddr, err)
	}
	go func() {
		if err := p.ssh.Serve(ln); err != nil {
			log.Error("builder", "err", err)
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p.sshPort.Store(port)
	fmt.Fprintf(out, "Builder (git push over SSH) listening on %s\n", ln.Addr())
	return nil
}

func (p *platform) stop(ctx context.Context) {
	if p.ssh != nil {
		p.ssh.Shutdown(ctx)
	}
	if p.unfollow != nil {
		p.unfollow()
	}
	if p.stopWatch != nil {
		p.stopWatch()
	}
	p.close(ctx)
}

// setTLS gives the router what it needs of the certificates and HTTPS
// settings in Postgres.
func setTLS(rt *router.Router, st pier.TLSState) {
	certs := make([]router.Cert, 0, len(st.Certs))
	for _, c := range st.Certs {
		certs = append(certs, router.Cert{App: c.App, Name: c.Name, Chain: []byte(c.Chain), Key: []byte(c.Key), Names: c.Domains})
	}
	rt.SetCerts(certs)
	https := make(map[string]router.HTTPS, len(st.HTTPS))
	for app, s := range st.HTTPS {
		https[app] = router.HTTPS{Redirect: s.HTTPSRedirect, HSTS: s.HSTS}
	}
	rt.SetHTTPS(https)
}
