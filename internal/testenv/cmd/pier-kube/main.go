// Command pier-kube builds and runs the Kubernetes control plane that Pier's
// tests use (see internal/testenv): etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok with fake nodes, all on
// loopback.
//
//	pier-kube build   build the binaries into the cache (make kube)
//	pier-kube up      start a control plane in the foreground (make kube-up)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pierpaas/pier/internal/testenv"
)

func main() {
	flag.Usage = func() {
		fmt.Fprint(os.Stderr, `usage: pier-kube build | up [-nodes N]

  build   build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
          kwok from the Go module proxy into the cache (a cold build takes 10–30 minutes)
  up      start a control plane with fake nodes on loopback, print its kubeconfig,
          and run until interrupted (Ctrl-C); everything is removed on exit
`)
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch flag.Arg(0) {
	case "build":
		err = build(ctx)
	case "up":
		err = up(ctx, flag.Args()[1:])
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pier-kube:", err)
		os.Exit(1)
	}
}

func build(ctx context.Context) error {
	dir, err := testenv.BuildKube(ctx, os.Stdout)
	if err != nil {
		return err
	}
	fmt.Printf("control plane binaries in %s/bin\n", dir)
	return nil
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	nodes := fs.Int("nodes", 3, "number of kwok `nodes`")
	keep := fs.Bool("keep", false, "keep the temp dir (data, component logs) on exit")
	fs.Parse(args)
	start := time.Now()
	k, err := testenv.StartKube(ctx, testenv.KubeOptions{Nodes: *nodes, Progress: os.Stdout, Keep: *keep})
	if err != nil {
		return err
	}
	fmt.Printf(`
Kubernetes %s control plane up in %s, nodes: %s (kwok: pods are simulated,
never run; their IPs are fake).

  kubeconfig: %s

  export KUBECONFIG=%s
  kubectl get nodes
  pierd all --scheduler=kubernetes --kubeconfig %s

Every pod's log is %s:
  echo "$(date -u +%%Y-%%m-%%dT%%H:%%M:%%S.%%NZ) stdout F hello" >> %s
Component logs: %s/logs/. Ctrl-C stops the control plane and removes %s.
`, testenv.KubernetesVersion, time.Since(start).Round(100*time.Millisecond), strings.Join(k.Nodes, ", "),
		k.Kubeconfig, k.Kubeconfig, k.Kubeconfig, k.PodLogFile, k.PodLogFile, k.Dir, k.Dir)
	select {
	case <-ctx.Done():
		fmt.Println("\nstopping")
		return k.Stop()
	case err := <-k.Exited():
		k.Stop()
		return err
	}
}
