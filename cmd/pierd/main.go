// Command pierd runs Pier's server components. It only wires the concrete
// pieces (Postgres, the controller, later the builder and router) together;
// each lives in its own package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pierpaas/pier/builder/kube"
	"github.com/pierpaas/pier/builder/pack"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/sandbox"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/postgres/embedded"
	"github.com/pierpaas/pier/router"
)

func main() {
	// A re-executed sandbox of an app process or a build (pierd without
	// root, platform.go) does its work here and never returns.
	sandbox.Main()
	// A closed stdout (`pierd all | tee log`, then Ctrl-C) must not kill
	// pierd before it has stopped its embedded Postgres: with SIGPIPE
	// ignored, such writes fail quietly instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `pierd runs the Pier platform.

Usage:
  pierd all         run every component on this machine: API, router, git push
                    builder and scheduler (the embedded default: local processes;
                    --scheduler docker or kubernetes runs images built by pack)
  pierd controller  run the REST API only (with --scheduler docker or kubernetes,
                    it also converges apps onto that host or cluster)
  pierd router      run the router alone, on another machine: it follows the
                    controller's internal listener with a router service token
                    and takes no database credentials (pierd router --help)
  pierd builder     run the git push server alone: it hands pushes to pierd all
                    over its internal listener with a builder service token and
                    takes no database credentials (pierd builder --help)
  pierd migrate     apply database migrations and exit
  pierd backup      write the whole platform (database, SSH host key, git
                    repositories) to one sealed file, while it runs
                    (pierd backup --help)
  pierd restore     put a backup into a new data dir or an empty database
                    (pierd restore --help)

Examples:
  pierd all
  pierd all --scheduler docker --registry 127.0.0.1:5000 --builder pier/builder:latest

Flags (every command):
`

// options are pierd's flags; every flag can also be set by environment.
type options struct {
	dataDir                     string
	databaseURL                 string
	httpAddr                    string
	httpsAddr                   string // "": no TLS listener
	tls                         platformCert
	publicURL                   string
	sessionTTL                  time.Duration
	databaseGrace               time.Duration // /healthz fails once the database is down longer
	logLevel                    string
	sshAddr                     string
	sshPublic                   string // host[:port] in the git remotes handed out; "": localhost
	lifecycleDir, buildpacksDir string
	scheduler                   string // local, docker or kubernetes
	kubeconfig                  string
	rolloutTimeout              time.Duration
	routerNamespace             string // kubernetes: the NetworkPolicy's router peer (kube.go)
	routerSelector              string
	networkPolicy               bool
	serviceTokensSecret         string // NAMESPACE/NAME: the components' service tokens (kubetokens.go)
	processPorts                string // local and docker: "LO-HI", checked into ports
	ports                       [2]int
	appUIDsFlag                 string // --app-uids "LO-HI", checked into appUIDs
	appUIDs                     [2]int

	buildStrategy        string // host or pack ("": host with the local scheduler, else pack)
	registry             string // host[:port] of the image registry (pack)
	registryPrefix       string
	registryUsername     string
	registryPasswordFile string
	builder              string // default CNB builder (pack)
	trustedBuilders      string // comma-separated
	lifecycleImage       string
	buildNetwork         string
	buildDockerHost      string
	kubeBuild            kubeBuildOptions     // --build-strategy kubernetes (kubebuild.go)
	registryToken        registryTokenOptions // --registry-token-service (registrytoken.go)

	trustedProxies string // comma-separated networks, checked by Main
	metricsAddr    string // "": no metrics listener
	accessLog      bool
	router         bool // pierd all: serve the public router in-process

	internalAddr string // the internal listener for components (internal.go); "": the default, if free

	acme acmeOptions // automatic certificates (acme.go)

	backups scheduleOptions // --backup-schedule (backup.go)
}

// Main runs pierd with args and returns its exit status. ctx ends at
// SIGINT/SIGTERM; the servers then drain and the embedded database stops.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, usage)
		newFlags(&options{}, stderr).PrintDefaults()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	cmd := args[0]
	if cmd == "router" {
		// Flags of its own: no database, no data dir (router.go).
		return routerMain(ctx, args[1:], stdout, stderr)
	}
	if cmd == "builder" {
		// The git push server alone (buildercmd.go).
		return builderMain(ctx, args[1:], stdout, stderr)
	}
	if cmd == "backup" || cmd == "restore" {
		// Flags of their own: a file and a passphrase (backup.go).
		if cmd == "backup" {
			return backupMain(ctx, args[1:], stdout, stderr)
		}
		return restoreMain(ctx, args[1:], stdout, stderr)
	}
	if cmd == "fetch-source" {
		// The init container of in-cluster build Pods (builder/kube).
		return kube.FetchMain(ctx, args[1:], stdout, stderr)
	}
	var o options
	fs := newFlags(&o, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if v := os.Getenv("PIER_ROLLOUT_TIMEOUT"); v != "" {
		if _, err := time.ParseDuration(v); err != nil {
			fmt.Fprintf(stderr, "pierd: PIER_ROLLOUT_TIMEOUT=%q is not a duration: give one such as 5m or 90s\n", v)
			return 2
		}
	}
	if v := os.Getenv("PIER_DATABASE_GRACE"); v != "" {
		if _, err := time.ParseDuration(v); err != nil {
			fmt.Fprintf(stderr, "pierd: PIER_DATABASE_GRACE=%q is not a duration: give one such as 2m or 90s\n", v)
			return 2
		}
	}
	if o.databaseGrace <= 0 {
		fmt.Fprintf(stderr, "pierd: --database-grace %s: give a positive duration, such as 2m\n", o.databaseGrace)
		return 2
	}
	if o.rolloutTimeout <= 0 {
		fmt.Fprintf(stderr, "pierd: --rollout-timeout %s: give a positive duration, such as 5m\n", o.rolloutTimeout)
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(stderr, "pierd: %v\n", err)
		return 2
	}
	if err := o.acme.check(); err != nil {
		fmt.Fprintf(stderr, "pierd: %v\n", err)
		return 2
	}
	if err := o.backups.check(); err != nil {
		fmt.Fprintf(stderr, "pierd: %v\n", err)
		return 2
	}
	if _, err := router.ParsePrefixes(o.trustedProxies); err != nil {
		fmt.Fprintf(stderr, "pierd: --trusted-proxies: %v; give networks and addresses separated by commas\n", err)
		return 2
	}
	if (cmd != "all" || !o.router) && (o.httpsAddr != "" || o.tls.certFile != "" || o.metricsAddr != "") {
		fmt.Fprintln(stderr, "pierd: --https-addr, --tls-cert and --metrics-addr are the router's, for pierd all with its router: drop them, or give them to pierd router")
		return 2
	}
	log := newLogger(stderr, o.logLevel)
	var err error
	switch cmd {
	case "all", "controller":
		err = serve(ctx, cmd == "all", o, stdout, log)
	case "migrate":
		err = migrate(ctx, o, stdout)
	default:
		fmt.Fprintf(stderr, "pierd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "pierd: %v\n", err)
		return 1
	}
	return 0
}

func newFlags(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pierd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.dataDir, "data-dir", env("PIER_DATA_DIR", ".pier"), "where pierd keeps its state: the embedded database, bootstrap token (env PIER_DATA_DIR)")
	fs.StringVar(&o.databaseURL, "database-url", env("DATABASE_URL", ""), "Postgres URL; empty: run an embedded Postgres in the data dir (env DATABASE_URL)")
	fs.StringVar(&o.httpAddr, "http-addr", env("PIER_HTTP_ADDR", "127.0.0.1:8080"), "address of the HTTP API (env PIER_HTTP_ADDR)")
	fs.StringVar(&o.httpsAddr, "https-addr", env("PIER_HTTPS_ADDR", ""), "pierd all: address of the router's HTTPS listener (HTTP/2 and HTTP/1.1; certificates from `pier certs:add`, chosen by SNI), such as 127.0.0.1:8443; empty: off (env PIER_HTTPS_ADDR)")
	fs.StringVar(&o.tls.certFile, "tls-cert", env("PIER_TLS_CERT", ""), "pierd all: PEM certificate chain for the platform domain's own names, such as a wildcard *.<domain> with <domain>: served on --https-addr for the API and every app without a certificate of its own; read again when it changes (env PIER_TLS_CERT)")
	fs.StringVar(&o.tls.keyFile, "tls-key", env("PIER_TLS_KEY", ""), "pierd all: the PEM private key of --tls-cert (env PIER_TLS_KEY)")
	fs.StringVar(&o.publicURL, "public-url", env("PIER_PUBLIC_URL", ""), "URL users reach Pier at; apps are served at <app>.<its host> (default http://pier.localhost:<http port>) (env PIER_PUBLIC_URL)")
	fs.StringVar(&o.sshAddr, "ssh-addr", env("PIER_SSH_ADDR", "127.0.0.1:2222"), "pierd all: address of the builder's SSH server for git push; off: none in this process, pushes go to builders running alone (pierd builder), which hand them over on --internal-addr (env PIER_SSH_ADDR)")
	fs.StringVar(&o.sshPublic, "ssh-public-host", env("PIER_SSH_PUBLIC_HOST", ""), "host[:port] users push to, in the git remotes Pier hands out (ssh://git@HOST/<app>.git), when the builder is reached through a load balancer or another name, such as git.pier.example.com or 203.0.113.7:2222; default localhost and --ssh-addr's port (env PIER_SSH_PUBLIC_HOST)")
	fs.StringVar(&o.lifecycleDir, "lifecycle-dir", env("PIER_LIFECYCLE_DIR", ""), "the CNB lifecycle binaries (default: lifecycle/ beside pierd, as make build puts them)")
	fs.StringVar(&o.buildpacksDir, "buildpacks-dir", env("PIER_BUILDPACKS_DIR", ""), "Pier's buildpacks (default: buildpacks/ beside pierd)")
	fs.StringVar(&o.scheduler, "scheduler", env("PIER_SCHEDULER", "local"), "where apps run: local (processes on this machine; pierd all only), docker (containers on this Docker host) or kubernetes (env PIER_SCHEDULER)")
	fs.StringVar(&o.buildStrategy, "build-strategy", env("PIER_BUILD_STRATEGY", ""), "how git pushes are built: host (the CNB lifecycle on this machine; local scheduler only), pack (images with a Docker daemon, pushed to --registry) or kubernetes (the CNB lifecycle in build Pods of the cluster, pushing to --registry; --scheduler kubernetes only); default: host with the local scheduler, else pack (env PIER_BUILD_STRATEGY)")
	fs.StringVar(&o.registry, "registry", env("PIER_REGISTRY", ""), "pack: the registry built images are pushed to, host[:port], such as 127.0.0.1:5000 (env PIER_REGISTRY)")
	fs.StringVar(&o.registryPrefix, "registry-prefix", env("PIER_REGISTRY_PREFIX", "pier"), "pack: the path of the apps' repositories in the registry: <registry>/<prefix>/<app> (env PIER_REGISTRY_PREFIX)")
	fs.StringVar(&o.registryUsername, "registry-username", env("PIER_REGISTRY_USERNAME", ""), "the registry's user (env PIER_REGISTRY_USERNAME); the password comes from PIER_REGISTRY_PASSWORD or --registry-password-file, never from argv")
	fs.StringVar(&o.registryPasswordFile, "registry-password-file", env("PIER_REGISTRY_PASSWORD_FILE", ""), "a file holding the registry's password (env PIER_REGISTRY_PASSWORD_FILE)")
	fs.StringVar(&o.builder, "builder", env("PIER_BUILDER", "pier/builder:latest"), "pack: the default CNB builder image (`make builder-image` makes Pier's); apps may choose another with `pier buildpacks:set-builder` (env PIER_BUILDER)")
	fs.StringVar(&o.trustedBuilders, "trusted-builders", env("PIER_TRUSTED_BUILDERS", ""), "pack: comma-separated builders whose lifecycle runs with trust (access to the Docker daemon); default: --builder only (env PIER_TRUSTED_BUILDERS)")
	fs.StringVar(&o.buildDockerHost, "build-docker-host", env("PIER_BUILD_DOCKER_HOST", ""), "pack: the Docker daemon's address as build containers reach it, seen from the host, such as unix:///var/run/docker.sock; default: pierd's own (DOCKER_HOST); set it when pierd runs in a container with the socket mounted from another path (env PIER_BUILD_DOCKER_HOST)")
	fs.StringVar(&o.buildNetwork, "build-network", env("PIER_BUILD_NETWORK", pack.DefaultBuildNetwork), "pack: the Docker network of build containers (Dockerfile RUN steps, the lifecycle); none: no network, so builds reach none of the host's loopback services; name a bridge network of your own to give builds egress; never host (env PIER_BUILD_NETWORK)")
	fs.StringVar(&o.lifecycleImage, "lifecycle-image", env("PIER_LIFECYCLE_IMAGE", ""), "pack: the image that runs the lifecycle of untrusted builders (default: pack's) (env PIER_LIFECYCLE_IMAGE)")
	fs.StringVar(&o.appUIDsFlag, "app-uids", env("PIER_APP_UIDS", fmt.Sprintf("%d-%d", postgres.DefaultAppUIDLow, postgres.DefaultAppUIDHigh)), "the uids new apps get, LO-HI inclusive, one per app: as root, the local scheduler and host builds run each app as its own; a range no user or service of the host has (env PIER_APP_UIDS)")
	fs.StringVar(&o.processPorts, "process-ports", env("PIER_PROCESS_PORTS", ""), "local and docker schedulers: the loopback ports apps' processes listen on, LO-HI inclusive, a range no other program on the host uses (two Pier installations on one host need ranges of their own); default: any free port (local), 20000-24999 (docker) (env PIER_PROCESS_PORTS)")
	o.kubeBuild.flags(fs)
	o.registryToken.flags(fs)
	o.backups.flags(fs)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for --scheduler=kubernetes (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)")
	fs.StringVar(&o.routerNamespace, "router-namespace", env("PIER_ROUTER_NAMESPACE", "pier"), "with --scheduler=kubernetes: the namespace of the router's pods, the only pods each app namespace's NetworkPolicy admits traffic from (env PIER_ROUTER_NAMESPACE)")
	fs.StringVar(&o.routerSelector, "router-selector", env("PIER_ROUTER_SELECTOR", "app.kubernetes.io/name=pier,app.kubernetes.io/component=router"), "with --scheduler=kubernetes: labels of the router's pods, key=value pairs separated by commas (env PIER_ROUTER_SELECTOR)")
	fs.BoolVar(&o.networkPolicy, "network-policy", env("PIER_NETWORK_POLICY", "true") != "false", "with --scheduler=kubernetes: write a default-deny-ingress NetworkPolicy in every app namespace, admitting only the router; --network-policy=false writes none (env PIER_NETWORK_POLICY)")
	fs.StringVar(&o.serviceTokensSecret, "service-tokens-secret", env("PIER_SERVICE_TOKENS_SECRET", ""), "NAMESPACE/NAME of a Kubernetes Secret that pierd fills at start with a router and a builder service token (keys router and builder) for the router and builder pods to mount, so no one creates them by hand; the Helm chart makes it, empty (env PIER_SERVICE_TOKENS_SECRET)")
	fs.DurationVar(&o.rolloutTimeout, "rollout-timeout", envDuration("PIER_ROLLOUT_TIMEOUT", 5*time.Minute), "with --scheduler=kubernetes: how long a release's pods have to become Ready before the release is marked failed and the previous one restored (env PIER_ROLLOUT_TIMEOUT)")
	fs.DurationVar(&o.databaseGrace, "database-grace", envDuration("PIER_DATABASE_GRACE", controller.DefaultDatabaseGrace), "how long the database may be down before /healthz (liveness) fails, so that a supervisor (a kubelet, systemd, Docker) restarts pierd; shorter outages are answered 503 with Retry-After, and pierd reconnects by itself (env PIER_DATABASE_GRACE)")
	fs.DurationVar(&o.sessionTTL, "session-ttl", 12*time.Hour, "lifetime of a login session token")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", env("PIER_TRUSTED_PROXIES", ""), "comma-separated networks of the proxies in front of pierd (a load balancer), such as 10.0.0.0/8: the router believes their X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and X-Request-ID; default none (env PIER_TRUSTED_PROXIES)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", env("PIER_METRICS_ADDR", ""), "pierd all: serve Prometheus metrics (the router's requests and latency per app and status, Go runtime) at http://ADDR/metrics, such as 127.0.0.1:9180; empty: off (env PIER_METRICS_ADDR)")
	fs.BoolVar(&o.router, "router", env("PIER_ROUTER", "true") != "false", "pierd all: serve the apps through the in-process router on --http-addr; --router=false serves only the API there (as pierd controller) and leaves the apps to routers running alone (pierd router, fed by --internal-addr), while pierd all still runs the scheduler and the git push builder (env PIER_ROUTER)")
	fs.BoolVar(&o.accessLog, "access-log", env("PIER_ACCESS_LOG", "true") != "false", "pierd all: log one line per app request (method, host, path without its query, status, time, request id); --access-log=false turns it off (env PIER_ACCESS_LOG)")
	fs.StringVar(&o.internalAddr, "internal-addr", env("PIER_INTERNAL_ADDR", ""), "pierd all and controller: address of the internal listener, where routers running alone (pierd router) follow the routing state with a router service token; never exposed by the public router; default "+defaultInternalAddr+" (if another process has it, pierd warns and runs without); off: none (env PIER_INTERNAL_ADDR)")
	fs.StringVar(&o.acme.directory, "acme-directory", env("PIER_ACME_DIRECTORY", ""), "pierd all and controller: the ACME directory URL of the CA that issues apps' automatic certificates (pier certs:auto:enable), validated over HTTP-01 through the router on port 80; empty: automatic certificates are off (env PIER_ACME_DIRECTORY)")
	fs.StringVar(&o.acme.email, "acme-email", env("PIER_ACME_EMAIL", ""), "the contact of Pier's ACME account, for the CA's notices (env PIER_ACME_EMAIL)")
	fs.StringVar(&o.acme.caFile, "acme-ca-file", env("PIER_ACME_CA_FILE", ""), "PEM roots to trust, besides the system's, for the ACME CA's HTTPS: a private CA's (env PIER_ACME_CA_FILE)")
	fs.StringVar(&o.logLevel, "log-level", env("PIER_LOG_LEVEL", "info"), "debug, info, warn or error (env PIER_LOG_LEVEL)")
	return fs
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// database returns the DSN to use, starting the embedded Postgres when no
// URL was given. stop stops what was started. log, for a server (nil for a
// one-off command), has the embedded Postgres supervised: started again
// if it dies. A one-off command leaves a cluster it found running (an
// earlier pierd's) running.
func database(ctx context.Context, o options, out io.Writer, log *slog.Logger) (dsn string, stop func(), err error) {
	if o.databaseURL != "" {
		return o.databaseURL, func() {}, nil
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("data dir: %w", err)
	}
	fmt.Fprintf(out, "Starting the embedded Postgres (data in %s)...\n", o.dataDir)
	c := embedded.New(o.dataDir)
	if err := c.Start(ctx); err != nil {
		return "", nil, fmt.Errorf("embedded Postgres: %w", err)
	}
	var sup *embedded.Supervisor
	stop = func() {
		if sup != nil {
			sup.Stop() // first: it would start the stopped cluster again
		} else if c.Adopted {
			return // an earlier pierd's, still serving it
		}
		stopCluster(c, out)
	}
	if err := c.CreateDatabase(ctx, "pier"); err != nil {
		stop()
		return "", nil, err
	}
	dsn = c.DSN("pier")
	if log != nil {
		// From here on only the supervisor touches c, until stop.
		sup = c.Supervise(ctx, log)
	}
	return dsn, stop, nil
}

// stopCluster stops the embedded Postgres that this pierd started, saying
// on out when it could not.
func stopCluster(c *embedded.Cluster, out io.Writer) {
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(sctx); err != nil {
		fmt.Fprintf(out, "stopping the embedded Postgres: %v\n", err)
	}
}

func migrate(ctx context.Context, o options, out io.Writer) error {
	dsn, stop, err := database(ctx, o, out, nil)
	if err != nil {
		return err
	}
	defer stop()
	if err := postgres.Migrate(ctx, dsn); err != nil {
		return err
	}
	fmt.Fprintln(out, "Migrations applied.")
	return nil
}

func serve(ctx context.Context, all bool, o options, out io.Writer, log *slog.Logger) error {
	dsn, stopDB, err := database(ctx, o, out, log)
	if err != nil {
		return err
	}
	defer stopDB()
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if o.databaseURL == "" {
		db.SetDataDir(embedded.New(o.dataDir).Dir) // named by disk-full errors
	}
	if err := db.SetAppUIDs(o.appUIDs[0], o.appUIDs[1]); err != nil {
		return fmt.Errorf("--app-uids: %w", err)
	}
	if err := o.registryToken.start(ctx, o, db, log); err != nil { // registrytoken.go
		return err
	}
	keeper, err := newTokenKeeper(o, db, log) // kubetokens.go
	if err != nil {
		return err
	}
	if keeper != nil {
		if err := keeper.keep(ctx); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another pierd running? change it with --http-addr)", o.httpAddr, err)
	}
	public := o.publicURL
	if public == "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		public = "http://pier.localhost:" + port
	}
	if err := o.tls.check(o.httpsAddr); err != nil {
		ln.Close()
		return err
	}
	cfg := controller.Config{Store: db, Logger: log, PublicURL: public, SessionTTL: o.sessionTTL, DatabaseGrace: o.databaseGrace}
	cfg.ACME = o.acme.directory != ""
	cfg.RegistryAuth = o.registryToken.handler()
	if o.registry != "" {
		reg := pack.Registry{Host: o.registry, Prefix: o.registryPrefix}
		cfg.ImageRepository = reg.Repository
	}
	if keeper != nil {
		cfg.ServiceTokenRevoked = keeper.afterRevoke(ctx)
	}
	var p *platform
	var routes controller.RouteSource // for the internal listener's router feed
	switch {
	case all:
		if p, err = startPlatform(ctx, o, db, log); err != nil {
			ln.Close()
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p.stop(sctx)
		}()
		cfg.Reconciler = p.rec
		cfg.GitURL = p.gitURL
		cfg.DefaultBuilder = p.builder
	case o.scheduler != "local":
		// The API alone, converging apps onto the cluster or Docker host;
		// deploys come from `pier builds:create IMAGE`.
		sched, stop, err := remoteScheduler(ctx, o, db, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
		cfg.Reconciler = controller.NewReconciler(db, sched, log)
		routes, _ = sched.(controller.RouteSource)
		syncApps(ctx, db, cfg.Reconciler, log)
		// What is deleted behind Pier's back comes back.
		go cfg.Reconciler.Watch(ctx)
	}
	api, err := controller.New(ctx, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	var handler http.Handler = api
	if all {
		if handler, err = p.serveAll(ctx, o, db, api, log, out); err != nil {
			ln.Close()
			return err
		}
		if p.routes != nil {
			routes = p.routes
		}
	}
	stopInternal, err := serveInternal(ctx, o, db, routes, internalHandlers(p, db, api, log), log, out)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopInternal()
	var rt *router.Router
	if all {
		rt = p.router // nil with --router=false
	}
	stopIssuer, err := startIssuer(ctx, o.acme, db, hostOf(public), rt, log, out) // acme.go
	if err != nil {
		ln.Close()
		return err
	}
	defer stopIssuer()
	if err := bootstrap(ctx, db, o.dataDir, out); err != nil {
		ln.Close()
		return err
	}
	stopBackups, err := o.backups.start(ctx, dsn, o.dataDir, log, out) // backup.go
	if err != nil {
		ln.Close()
		return err
	}
	defer stopBackups()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if all && o.router {
		// The router's public listeners (edge.go), with the API behind it,
		// which keeps its timeouts per request (serveAll). The apps'
		// processes are stopped only after they drain (the deferred p.stop).
		return serveEdge(ctx, edge{router: p.router, handler: handler, http: ln, https: p.httpsLn}, func(addr net.Addr) {
			fmt.Fprintf(out, "Pier API listening on %s (public URL %s)\n", addr, public)
		}, out)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(out, "Pier API listening on %s (public URL %s)\n", ln.Addr(), public)
	fmt.Fprintf(out, "Ready. Press Ctrl-C to stop.\n")

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(out, "Shutting down...")
	// Shutdown stops accepting and waits for in-flight requests to
	// finish. 25 s fits in Kubernetes' default 30 s grace period.
	sctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// syncApps converges every app at start, until it has listed them, and
// again each time the database answers after an outage: what was changed
// or recorded half-way while it was down is brought back to what it says.
func syncApps(ctx context.Context, db *postgres.DB, rec *controller.Reconciler, log *slog.Logger) {
	go func() {
		if err := rec.Sync(ctx); err != nil {
			log.Error("converge at start", "err", err)
		}
	}()
	db.OnReconnect(func() {
		log.Warn("the database answers again; converging every app")
		if err := rec.ConvergeAll(ctx); err != nil && ctx.Err() == nil {
			log.Error("converge after the database came back", "err", err)
		}
	})
}

// env is the environment variable name's value, or def when it is unset or
// empty: every flag of pierd's commands takes its default from one.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// The API's whole-request timeouts, which bound slow clients of the API.
const (
	apiReadTimeout  = time.Minute
	apiWriteTimeout = 2 * time.Minute
)

// bootstrap makes the one-time token for the first admin on a fresh
// database, prints it and keeps it in the data dir, where `make run` finds
// it. Once a user exists, a leftover token file is removed.
func bootstrap(ctx context.Context, db *postgres.DB, dataDir string, out io.Writer) error {
	path := filepath.Join(dataDir, "bootstrap-token")
	token, err := controller.EnsureBootstrapToken(ctx, db)
	if err != nil {
		return err
	}
	if token != "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
			return fmt.Errorf("save bootstrap token: %w", err)
		}
		fmt.Fprintf(out, "\nFirst start: register the first (admin) user with the one-time bootstrap token\n  %s\n(also saved in %s):\n  pier register URL --bootstrap-token-file %s\n\n", token, path, path)
		return nil
	}
	has, err := db.HasUsers(ctx)
	if err != nil {
		return err
	}
	if has {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		fmt.Fprintf(out, "No user yet: register the first (admin) user with the bootstrap token in %s\n", path)
	}
	return nil
}

// envDuration is the duration in the environment variable name, or def. A
// value that does not parse is taken as 0; Main refuses it, saying why.
func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0
	}
	return d
}
