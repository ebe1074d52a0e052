package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/kube"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/postgres"
)

// defaultInternalAddr is the controller's internal listener when
// --internal-addr is not given: loopback only.
const defaultInternalAddr = "127.0.0.1:9091"

// serveInternal serves the controller's internal listener (--internal-addr):
// the router feed, for routers running alone (`pierd router`), each
// authenticated with its router service token. It is a listener of its
// own, never behind the public router. routes is where the apps' ready
// processes are known (the scheduler), nil if nowhere here. stop closes
// it, cutting the feeds (routers reconnect), and waits for its watches of
// the database to end. more serves other components by path prefix:
// builders running alone, build Pods fetching their source
// (internalHandlers).
func serveInternal(ctx context.Context, o options, db *postgres.DB, routes controller.RouteSource, more map[string]http.Handler, log *slog.Logger, out io.Writer) (stop func(), err error) {
	addr := o.internalAddr
	if addr == "off" {
		return func() {}, nil
	}
	explicit := addr != ""
	if !explicit {
		addr = defaultInternalAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if !explicit && errors.Is(err, syscall.EADDRINUSE) {
			// Another pierd on this machine has the default: this one
			// runs without, and says so.
			log.Warn("the internal listener for routers is off: its default address is taken (another pierd?); give one with --internal-addr", "addr", addr)
			return func() {}, nil
		}
		return nil, fmt.Errorf("listen on %s for the internal listener: %w (change it with --internal-addr, or turn it off with --internal-addr=off)", addr, err)
	}
	feed := controller.NewRouterFeed(controller.RouterFeedConfig{Tokens: db, Routes: routes, Watch: db, Logger: log.With("component", "router-feed")})
	fctx, cancel := context.WithCancel(ctx)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		feed.Run(fctx)
	}()
	handler := controller.InternalHandler(feed, log)
	if len(more) > 0 {
		mux := http.NewServeMux()
		for prefix, h := range more {
			mux.Handle(prefix, h)
		}
		mux.Handle("/", handler)
		handler = mux
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go srv.Serve(ln)
	fmt.Fprintf(out, "Internal listener (router feed, builders; service tokens only) on %s\n", ln.Addr())
	return func() {
		// Feeds never go idle: close, rather than wait for them.
		srv.Close()
		cancel()
		<-fed
	}, nil
}

// internalHandlers are what pierd all serves on the internal listener
// besides the router feed: the builder API, for builders running alone
// (pierd builder), which deploy through this process's build strategy and
// reconciler; and the sources of in-cluster builds. pierd controller has
// neither (p is nil).
func internalHandlers(p *platform, db *postgres.DB, api *controller.Server, log *slog.Logger) map[string]http.Handler {
	if p == nil {
		return nil
	}
	m := map[string]http.Handler{
		controller.BuilderPathPrefix: controller.BuilderAPI(controller.BuilderAPIConfig{
			Tokens: db,
			Store:  db,
			Deploy: func(ctx context.Context, d controller.BuilderDeploy) (*pier.Release, error) {
				return p.rec.Deploy(ctx, p.strategy, controller.DeployRequest{
					App: d.App, User: d.User, Commit: d.Commit, SourceDir: d.SourceDir, Log: d.Log,
				})
			},
			AppURL:  api.AppURL,
			Logger:  log.With("component", "builder-api"),
			TreeDir: p.trees,
		}),
	}
	if p.buildSources != nil {
		m[kube.SourcePathPrefix] = p.buildSources
	}
	return m
}
