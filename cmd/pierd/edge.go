package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
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

// platformCert is the operator's certificate for the platform domain's own
// names (--tls-cert, --tls-key): typically a wildcard *.<domain> plus
// <domain>, so that every app is at https://<app>.<domain> and the API at
// https://pier.<domain> without a certificate each.
type platformCert struct {
	certFile, keyFile string
}

func (p platformCert) check(httpsAddr string) error {
	switch {
	case p.certFile == "" && p.keyFile == "":
		return nil
	case p.certFile == "" || p.keyFile == "":
		return errors.New("--tls-cert and --tls-key go together: give both files (PEM), or neither")
	case httpsAddr == "":
		return errors.New("--tls-cert needs --https-addr, where the router serves TLS: add it, such as --https-addr :443")
	}
	_, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w (both PEM: the chain, leaf first, and its private key)", err)
	}
	return nil
}

// follow loads the certificate into rt, and again whenever one of the
// files changes (a renewal by cert-manager or certbot), until ctx ends. A
// change that does not load is logged and the previous certificate kept.
func (p platformCert) follow(ctx context.Context, rt *router.Router, log *slog.Logger) error {
	if p.certFile == "" {
		return nil
	}
	stamp := func() string {
		var s string
		for _, f := range []string{p.certFile, p.keyFile} {
			if fi, err := os.Stat(f); err == nil {
				s += fi.ModTime().String() + strconv.FormatInt(fi.Size(), 10)
			}
		}
		return s
	}
	last := stamp()
	kp, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	rt.SetPlatformCert(&kp)
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s := stamp(); s != last {
				kp, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
				if err != nil {
					log.Warn("the platform certificate changed but does not load: serving the previous one", "cert", p.certFile, "err", err)
					continue
				}
				last = s
				rt.SetPlatformCert(&kp)
				log.Info("platform certificate loaded again", "cert", p.certFile)
			}
		}
	}()
	return nil
}
