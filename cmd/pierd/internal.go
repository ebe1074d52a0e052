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
// the database to end. builds, when not nil, serves build Pods their
// source (kube.SourcePathPrefix, each build with its own token).
func serveInternal(ctx context.Context, o options, db *postgres.DB, routes controller.RouteSource, builds http.Handler, log *slog.Logger, out io.Writer) (stop func(), err error) {
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
	if builds != nil {
		mux := http.NewServeMux()
		mux.Handle(kube.SourcePathPrefix, builds)
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
	fmt.Fprintf(out, "Internal listener (router feed, service tokens only) on %s\n", ln.Addr())
	return func() {
		// Feeds never go idle: close, rather than wait for them.
		srv.Close()
		cancel()
		<-fed
	}, nil
}
