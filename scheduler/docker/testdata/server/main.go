// Command server is the app the docker scheduler's tests run in a FROM
// scratch image. One static binary plays every part, chosen by the name it
// is invoked under (as busybox does):
//
//	server [MODE]    MODE web (default), worker, echo ARGS..., cat, exit N
//	sh -c "CMD"      a stand-in shell: CMD is split on spaces and run as server
//	launcher -- ARGV a stand-in CNB launcher: execs ARGV
//	web, worker      a stand-in /cnb/process/<type>
//
// A web server listens on 127.0.0.1:$PORT unless BOOT=crash (exit 3 at
// once) or BOOT=nolisten (never listens).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	args := os.Args
	switch filepath.Base(args[0]) {
	case "sh":
		if len(args) != 3 || args[1] != "-c" {
			fmt.Fprintln(os.Stderr, "sh: only sh -c CMD is supported")
			os.Exit(2)
		}
		args = strings.Fields(args[2])
	case "launcher":
		if len(args) < 3 || args[1] != "--" {
			fmt.Fprintln(os.Stderr, "launcher: only launcher -- ARGV is supported")
			os.Exit(2)
		}
		exec(args[2:])
	case "web", "worker":
		args = []string{"server", filepath.Base(args[0])}
	}
	mode := "web"
	if len(args) > 1 {
		mode = args[1]
	}
	switch mode {
	case "web":
		web()
	case "worker":
		fmt.Println("worker started as uid", os.Getuid())
		wait()
	case "echo":
		fmt.Println(strings.Join(args[2:], " "))
		fmt.Fprintln(os.Stderr, "to stderr")
	case "cat":
		io.Copy(os.Stdout, os.Stdin)
	case "exit":
		n, _ := strconv.Atoi(args[2])
		fmt.Println("exiting with", n)
		os.Exit(n)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
}

func exec(argv []string) {
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "launcher:", err)
	os.Exit(127)
}

func wait() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}

func web() {
	switch os.Getenv("BOOT") {
	case "crash":
		fmt.Println("boot failure: DATABASE_URL is not reachable")
		os.Exit(3)
	case "nolisten":
		fmt.Println("thinking about listening")
		wait()
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", os.Getenv("VERSION"))
	})
	mux.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"uid": os.Getuid(), "gid": os.Getgid(), "env": os.Environ()})
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("crashing on request")
		os.Exit(1)
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.URL.Query().Get("msg"))
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	drained := make(chan struct{})
	go func() {
		wait()
		fmt.Println("SIGTERM: draining")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(drained)
	}()
	fmt.Println("listening on", srv.Addr, "as uid", os.Getuid())
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Println(err)
		os.Exit(1)
	}
	// ListenAndServe returns as Shutdown begins: wait for in-flight requests.
	<-drained
}
