package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
	"github.com/pierpaas/pier/router"
	"github.com/pierpaas/pier/scheduler/kubernetes"
)

const routerUsage = `pierd router runs Pier's router alone, on a machine of its own: it proxies
<app>.<domain> and the apps' custom domains to their processes, serves their
certificates over HTTPS, and passes pier.<domain> and <domain> on to the
controller's API.

It takes no database credentials. It follows the controller's router feed on
the controller's internal listener (pierd all/controller --internal-addr), with
a router service token: routes, domains, certificates, HTTPS and router
settings are pushed to it as they change. While the controller is away it
keeps serving what it last got, and catches up when it is back.

Create the token once, as an admin, and keep it in a file only pierd can read:
  pier service-tokens:create --scope router --description edge-1 > /etc/pier/router.token
  chmod 600 /etc/pier/router.token

Usage:
  pierd router --controller-internal URL --token-file FILE --domain DOMAIN [flags]

Example:
  pierd router --controller-internal http://10.0.0.5:9091 --token-file /etc/pier/router.token \
      --controller-url http://10.0.0.5:8080 --domain pier.example.com \
      --listen :80 --https-addr :443

Flags:
`

// routerOptions are the flags of `pierd router`; each can also be set by
// environment.
type routerOptions struct {
	controllerInternal string
	controllerURL      string
	tokenFile          string
	listen             string
	httpsAddr          string
	endpoints          string // "controller" or "kubernetes"
	kubeconfig         string
	tls                platformCert
	domain             string
	trustedProxies     string
	metricsAddr        string
	accessLog          bool
	logLevel           string
}

func routerFlags(o *routerOptions, out io.Writer) *flag.FlagSet {
	fs := componentFlagSet("pierd router", routerUsage, out)
	fs.StringVar(&o.controllerInternal, "controller-internal", env("PIER_CONTROLLER_INTERNAL", ""), "URL of the controller's internal listener (its --internal-addr), such as http://10.0.0.5:9091; required (env PIER_CONTROLLER_INTERNAL)")
	fs.StringVar(&o.tokenFile, "token-file", env("PIER_TOKEN_FILE", ""), "file holding the router service token (`pier service-tokens:create --scope router`); read again at every reconnection, so it can be rotated in place; required (env PIER_TOKEN_FILE)")
	fs.StringVar(&o.controllerURL, "controller-url", env("PIER_CONTROLLER_URL", ""), "URL of the controller's public API, where requests to pier.<domain> and <domain> go, such as http://10.0.0.5:8080; empty: those hosts answer 404 (env PIER_CONTROLLER_URL)")
	fs.StringVar(&o.domain, "domain", env("PIER_DOMAIN", ""), "the platform domain: <app>.<domain> reaches an app; the same as the host of the controller's public URL, such as pier.example.com (default: the host of --controller-url) (env PIER_DOMAIN)")
	fs.StringVar(&o.listen, "listen", env("PIER_LISTEN", "127.0.0.1:8080"), "address of the router's HTTP listener, such as :80 (env PIER_LISTEN)")
	fs.StringVar(&o.httpsAddr, "https-addr", env("PIER_HTTPS_ADDR", ""), "address of the router's HTTPS listener (HTTP/2 and HTTP/1.1, certificates chosen by SNI), such as :443; empty: off (env PIER_HTTPS_ADDR)")
	fs.StringVar(&o.endpoints, "endpoints", env("PIER_ENDPOINTS", "controller"), "where the apps' ready processes come from: controller (its feed, whatever the scheduler) or kubernetes (the router in the cluster watches the web Services' EndpointSlices itself: pods that come and go change the routes at once; needs get/list/watch on services and endpointslices) (env PIER_ENDPOINTS)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "--endpoints kubernetes: kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)")
	fs.StringVar(&o.tls.certFile, "tls-cert", env("PIER_TLS_CERT", ""), "PEM certificate chain for the platform domain's own names, such as a wildcard *.<domain> with <domain>: served on --https-addr for the API and every app without a certificate of its own; read again when it changes (env PIER_TLS_CERT)")
	fs.StringVar(&o.tls.keyFile, "tls-key", env("PIER_TLS_KEY", ""), "the PEM private key of --tls-cert (env PIER_TLS_KEY)")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", env("PIER_TRUSTED_PROXIES", ""), "comma-separated networks of the proxies in front of the router (a load balancer), such as 10.0.0.0/8: their X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and X-Request-ID are believed; default none (env PIER_TRUSTED_PROXIES)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", env("PIER_METRICS_ADDR", ""), "serve Prometheus metrics (requests and latency per app and status, Go runtime) at http://ADDR/metrics, such as 127.0.0.1:9180; empty: off (env PIER_METRICS_ADDR)")
	fs.BoolVar(&o.accessLog, "access-log", env("PIER_ACCESS_LOG", "true") != "false", "log one line per app request (method, host, path without its query, status, time, request id); --access-log=false turns it off (env PIER_ACCESS_LOG)")
	fs.StringVar(&o.logLevel, "log-level", env("PIER_LOG_LEVEL", "info"), "debug, info, warn or error (env PIER_LOG_LEVEL)")
	return fs
}

// routerMain is `pierd router`.
func routerMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o routerOptions
	return componentMain("pierd router", routerFlags(&o, stderr), args, stderr, func(err error) string {
		if strings.Contains(err.Error(), "database") || strings.Contains(err.Error(), "data-dir") {
			return "it never takes database credentials or a data dir: it follows the controller with --controller-internal and --token-file"
		}
		return ""
	}, func() error { return runRouter(ctx, o, stdout, newLogger(stderr, o.logLevel)) })
}

// componentFlagSet is the flag set of a component that stands alone,
// whose --help prints usage and then the flags.
func componentFlagSet(name, usage string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	return fs
}

// componentMain runs a component that stands alone (pierd router, pierd
// builder) on its own flags: exit status 2 for a usage error, with hint's
// advice for a flag it does not take, 1 for any other error.
func componentMain(name string, fs *flag.FlagSet, args []string, stderr io.Writer, hint func(error) string, run func() error) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if h := hint(err); h != "" {
			fmt.Fprintf(stderr, "%s: %s\n", name, h)
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q: see %s --help\n", name, fs.Arg(0), name)
		return 2
	}
	if err := run(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		var ue usageErr
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// usageErr is a bad flag value: exit status 2.
type usageErr struct{ error }

func (e usageErr) Unwrap() error { return e.error }

// readServiceToken reads a service token file of a component whose token
// has scope.
func readServiceToken(path, scope string) (string, error) {
	create := "`pier service-tokens:create --scope " + scope + "`"
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w: put the token of %s in it", err, create)
	}
	t := strings.TrimSpace(string(b))
	switch {
	case t == "":
		return "", fmt.Errorf("--token-file %s is empty: put the token of %s in it", path, create)
	case !strings.HasPrefix(t, pier.ServiceTokenPrefix) || strings.ContainsAny(t, " \t\r\n"):
		return "", fmt.Errorf("--token-file %s does not hold a service token (%s...): create one with %s; user tokens are refused", path, pier.ServiceTokenPrefix, create)
	}
	return t, nil
}

// checkRouter checks the flags of `pierd router` and returns the
// controller's public URL (nil: none) and the platform domain.
func (o routerOptions) check() (*url.URL, string, error) {
	if o.controllerInternal == "" {
		return nil, "", usageErr{errors.New("--controller-internal is required: the URL of the controller's internal listener, such as http://10.0.0.5:9091 (pierd all/controller --internal-addr)")}
	}
	iu, err := url.Parse(o.controllerInternal)
	if err != nil || (iu.Scheme != "http" && iu.Scheme != "https") || iu.Host == "" || (iu.Path != "" && iu.Path != "/") {
		return nil, "", usageErr{fmt.Errorf("--controller-internal %q is invalid: give http://host:port, such as http://10.0.0.5:9091", o.controllerInternal)}
	}
	if o.tokenFile == "" {
		return nil, "", usageErr{errors.New("--token-file is required: a file holding the router service token from `pier service-tokens:create --scope router`")}
	}
	var api *url.URL
	if o.controllerURL != "" {
		api, err = url.Parse(o.controllerURL)
		if err != nil || (api.Scheme != "http" && api.Scheme != "https") || api.Host == "" {
			return nil, "", usageErr{fmt.Errorf("--controller-url %q is invalid: give the controller's public URL, such as http://10.0.0.5:8080", o.controllerURL)}
		}
		if api.Host == iu.Host {
			return nil, "", usageErr{errors.New("--controller-url is the internal listener: give the controller's public API URL (its --http-addr), never the internal one")}
		}
	}
	domain := strings.TrimSuffix(strings.ToLower(o.domain), ".")
	if domain == "" && api != nil && net.ParseIP(api.Hostname()) == nil {
		domain = strings.ToLower(api.Hostname())
	}
	if domain == "" || strings.ContainsAny(domain, "/: ") || net.ParseIP(domain) != nil {
		return nil, "", usageErr{fmt.Errorf("--domain %q is invalid: give the platform domain, the host of the controller's public URL, such as pier.example.com", o.domain)}
	}
	if err := o.tls.check(o.httpsAddr); err != nil {
		return nil, "", usageErr{err}
	}
	if o.endpoints != "controller" && o.endpoints != "kubernetes" {
		return nil, "", usageErr{fmt.Errorf("--endpoints %q: want controller or kubernetes", o.endpoints)}
	}
	if _, err := router.ParsePrefixes(o.trustedProxies); err != nil {
		return nil, "", usageErr{fmt.Errorf("--trusted-proxies: %v; give networks and addresses separated by commas", err)}
	}
	return api, domain, nil
}

func runRouter(ctx context.Context, o routerOptions, out io.Writer, log *slog.Logger) error {
	api, domain, err := o.check()
	if err != nil {
		return err
	}
	if _, err := readServiceToken(o.tokenFile, pier.ScopeRouter); err != nil {
		return usageErr{err}
	}
	trusted, _ := router.ParsePrefixes(o.trustedProxies)
	rcfg := router.Config{Domain: domain, TrustedProxies: trusted, Logger: log}
	if api != nil {
		rcfg.API = apiProxy(api, log)
	}
	if o.accessLog {
		rcfg.AccessLog = log.With("component", "router")
	}
	if o.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		rcfg.Metrics = reg
		if err := new(platform).serveMetrics(ctx, o.metricsAddr, reg, log, out); err != nil {
			return err
		}
	}
	var httpsLn net.Listener
	if o.httpsAddr != "" {
		// Listen first: redirects to https name the port.
		if httpsLn, err = net.Listen("tcp", o.httpsAddr); err != nil {
			return fmt.Errorf("listen on %s for HTTPS: %w (change it with --https-addr)", o.httpsAddr, err)
		}
		defer httpsLn.Close()
		rcfg.HTTPSPort = httpsLn.Addr().(*net.TCPAddr).Port
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (change it with --listen)", o.listen, err)
	}
	rt := router.New(rcfg)
	if err := o.tls.follow(ctx, rt, log); err != nil {
		return err
	}

	// Follow the controller's feed until the router stops.
	a := &stateApplier{rt: rt, log: log}
	if o.endpoints == "kubernetes" {
		// In the cluster: the apps' ready pods straight from their web
		// Services' EndpointSlices; the rest from the controller.
		kc, err := kubeConfig(o.kubeconfig)
		if err != nil {
			return fmt.Errorf("--endpoints kubernetes: %w", err)
		}
		eps, err := kubernetes.NewEndpoints(kc, 0)
		if err != nil {
			return err
		}
		defer eps.Close()
		defer rt.Follow(eps)()
		a.ownRoutes = true
		fmt.Fprintln(out, "Routes: the apps' web Services' EndpointSlices, from the cluster")
	}
	first := make(chan struct{})
	fctx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	feed := &client.RouterFeed{
		URL:    o.controllerInternal,
		Token:  func() (string, error) { return readServiceToken(o.tokenFile, pier.ScopeRouter) },
		Logger: log.With("component", "router-feed"),
	}
	go func() {
		defer close(followed)
		feed.Run(fctx, func(st *pier.RouterState) {
			a.apply(st)
			if a.applied == 1 {
				close(first)
			}
		})
	}()
	defer func() { cancel(); <-followed }()
	// Serve once the first routing state is here, rather than answer 404
	// for every app; but not never: a router started while its controller
	// is down serves what it can, and catches up.
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		log.Warn("no routing state from the controller yet: serving without it until it comes", "controller", o.controllerInternal)
	case <-ctx.Done():
		ln.Close()
		return nil
	}
	return serveEdge(ctx, edge{router: rt, handler: rt, http: ln, https: httpsLn}, func(addr net.Addr) {
		fmt.Fprintf(out, "Router listening on %s (apps at <app>.%s)\n", addr, domain)
	}, out)
}

// apiProxy passes the platform's API host on to the controller's public
// API. The internal listener's paths are refused here too: the public
// router never exposes them, whatever the controller URL given.
func apiProxy(target *url.URL, log *slog.Logger) http.Handler {
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:     client.NewTransport(),
		FlushInterval: -1, // log streams (pier logs -t) and build output flow as they come
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("the controller's API did not answer", "err", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"the router cannot reach the controller's API: try again in a moment"}}`+"\n")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/internal/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no such endpoint: see /v1/openapi.json"}}`+"\n")
			return
		}
		p.ServeHTTP(w, r)
	})
}

// stateApplier gives the router each snapshot of the routing state,
// setting only the parts that changed: a certificate is parsed again only
// when the certificates change, and backends keep their health.
type stateApplier struct {
	rt      *router.Router
	log     *slog.Logger
	last    *pier.RouterState
	applied int
	// ownRoutes: the routes come from elsewhere (--endpoints kubernetes),
	// not from the controller's snapshots.
	ownRoutes bool
}

func (a *stateApplier) apply(st *pier.RouterState) {
	prev := a.last
	changed := func(f func(*pier.RouterState) any) bool {
		return prev == nil || !reflect.DeepEqual(f(prev), f(st))
	}
	if !a.ownRoutes && changed(func(s *pier.RouterState) any { return s.Routes }) {
		a.rt.SetRoutes(orEmpty(st.Routes))
	}
	if changed(func(s *pier.RouterState) any { return s.Certs }) {
		certs := make([]router.Cert, 0, len(st.Certs))
		for _, c := range st.Certs {
			certs = append(certs, router.Cert{App: c.App, Name: c.Name, Chain: []byte(c.Chain), Key: []byte(c.Key), Names: c.Domains})
		}
		a.rt.SetCerts(certs)
	}
	if changed(func(s *pier.RouterState) any { return s.HTTPS }) {
		https := make(map[string]router.HTTPS, len(st.HTTPS))
		for app, s := range st.HTTPS {
			https[app] = router.HTTPS{Redirect: s.HTTPSRedirect, HSTS: s.HSTS}
		}
		a.rt.SetHTTPS(https)
	}
	if changed(func(s *pier.RouterState) any { return s.Settings }) {
		a.rt.SetSettings(orEmpty(st.Settings))
	}
	// Domains last: a new name is routed once its certificate is there.
	if changed(func(s *pier.RouterState) any { return s.Domains }) {
		a.rt.SetDomains(orEmpty(st.Domains))
	}
	// ACME HTTP-01 challenges, answered whatever the host.
	if changed(func(s *pier.RouterState) any { return s.Challenges }) {
		a.rt.SetChallenges(orEmpty(st.Challenges))
	}
	a.last = st
	a.applied++
	a.log.Debug("routing state applied", "apps", len(st.Routes), "domains", len(st.Domains), "certs", len(st.Certs))
}

func orEmpty[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return maps.Clone(m)
}
