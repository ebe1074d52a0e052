package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/pierpaas/pier/router"
)

// edge is the router's public side, as `pierd all` and `pierd router` serve
// it: the HTTP listener and, when TLS is on, the HTTPS one.
type edge struct {
	router  *router.Router
	handler http.Handler // what both listeners serve: the router, maybe behind an API switch
	http    net.Listener
	https   net.Listener // nil: no TLS
}

// serveEdge serves e until ctx ends (or a listener fails), then drains:
// new connections are refused and in-flight requests, app streams
// included, get up to 25 s to finish (Kubernetes' default grace period is
// 30 s). announce prints what listens on the HTTP listener, once it
// serves. This is the one place the router's public listeners are served,
// for `pierd all` and `pierd router` alike.
func serveEdge(ctx context.Context, e edge, announce func(addr net.Addr), out io.Writer) error {
	// Plain HTTP: the router's fast path, which hands what is not plain
	// proxying to an app (the API, WebSockets, error pages...) to
	// e.handler through net/http. App traffic streams (SSE, long
	// downloads): no whole-request timeouts; smuggling attempts refused.
	srv := e.router.NewServer(e.handler)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(e.http) }()
	announce(e.http.Addr())
	var tlsSrv *http.Server
	if e.https != nil {
		tlsSrv = e.router.Server("")
		tlsSrv.Handler = e.handler
		tlsSrv.TLSConfig = e.router.TLSConfig()
		go func() { errc <- tlsSrv.ServeTLS(e.https, "", "") }()
		fmt.Fprintf(out, "Router HTTPS listening on %s\n", e.https.Addr())
	}
	fmt.Fprintf(out, "Ready. Press Ctrl-C to stop.\n")

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(out, "Shutting down...")
	sctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var tlsErr error
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		if tlsSrv != nil {
			tlsErr = tlsSrv.Shutdown(sctx)
		}
	}()
	err := srv.Shutdown(sctx)
	<-drained
	return errors.Join(err, tlsErr)
}
