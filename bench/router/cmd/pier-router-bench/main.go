// Command pier-router-bench runs the two servers of the router benchmark
// (BenchmarkRouterVsNginx in bench/, `make bench-router`):
//
//	pier-router-bench backend [-listen 127.0.0.1:0]
//	pier-router-bench router -backend HOST:PORT [-apps N] [-domain pier.localhost] [-listen 127.0.0.1:0] [-cpuprofile FILE]
//
// backend answers every request with a 12-byte body. router is Pier's edge
// router (package router) with apps app1 … appN all routed to the backend,
// served as pierd serves it: rt.NewServer (the fast path, with net/http
// behind it). Each prints
// "listening on HOST:PORT" once it accepts connections and runs until
// SIGINT or SIGTERM. The benchmark sets GOMAXPROCS and the CPU of each.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/pierpaas/pier/router"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pier-router-bench backend|router [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "backend":
		err = runBackend(os.Args[2:])
	case "router":
		err = runRouter(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want backend or router", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pier-router-bench:", err)
		os.Exit(1)
	}
}

// response is the backend's whole answer: a 12-byte body.
var response = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n")

// runBackend serves a canned response per request, on raw TCP: no parsing,
// no allocation per request, one read and one write system call per batch
// of requests. It is there to cost as little CPU per request as possible,
// so that neither proxy waits for it. It understands only what the proxies
// send it here: requests without a body (GET), any number per connection,
// pipelined or not.
func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go answer(c)
		}
	}()
	waitSignal()
	return ln.Close()
}

// answer writes one response per request header that c sends: per
// "\r\n\r\n", followed across reads.
func answer(c net.Conn) {
	defer c.Close()
	const end = "\r\n\r\n"
	buf := make([]byte, 16<<10)
	var out []byte
	m := 0 // bytes of end matched so far
	for {
		n, err := c.Read(buf)
		reqs := 0
		for _, b := range buf[:n] {
			switch {
			case b == end[m]:
				if m++; m == len(end) {
					reqs++
					m = 0
				}
			case b == '\r':
				m = 1
			default:
				m = 0
			}
		}
		if reqs > 0 {
			out = out[:0]
			for range reqs {
				out = append(out, response...)
			}
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// runRouter serves Pier's router with apps app1 … appN, each with the one
// backend, the way `pierd all` serves it.
func runRouter(args []string) error {
	fs := flag.NewFlagSet("router", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	backend := fs.String("backend", "", "the backend's HOST:PORT (required)")
	apps := fs.Int("apps", 1, "number of apps (app1 … appN) in the route table, all on the backend")
	domain := fs.String("domain", "pier.localhost", "the platform domain: appK.DOMAIN reaches appK")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.Parse(args)
	if *backend == "" || *apps < 1 {
		return errors.New("router needs -backend HOST:PORT and -apps ≥ 1")
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	// As pierd's logger (text, stderr), at Warn: the router logs nothing
	// per request unless a backend fails.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt := router.New(router.Config{Domain: *domain, Logger: log})
	routes := make(map[string][]string, *apps)
	for i := 1; i <= *apps; i++ {
		routes[fmt.Sprintf("app%d", i)] = []string{*backend}
	}
	rt.SetRoutes(routes)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := rt.NewServer(nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("listening on %s\n", ln.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		return err
	case <-sig:
	}
	srv.Close()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func waitSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
