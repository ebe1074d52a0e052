// Command pier-stack makes Pier's offline CNB builder image in the local
// Docker daemon (package builder/stack): `make builder-image` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/docker/docker/client"
	"github.com/pierpaas/pier/builder/stack"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pier-stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg stack.Config
	fs.StringVar(&cfg.LifecycleDir, "lifecycle", "bin/lifecycle", "directory of the lifecycle and launcher binaries (built by make lifecycle)")
	fs.StringVar(&cfg.BuildpacksDir, "buildpacks", "bin/buildpacks", "directory of the buildpacks and order.toml (built by make buildpacks)")
	fs.StringVar(&cfg.GoRoot, "goroot", "/usr/local/go", "Go toolchain copied into the build image")
	fs.StringVar(&cfg.Node, "node", "", "node binary copied into the images, npm next to it (default: node on PATH)")
	fs.StringVar(&cfg.CacheDir, "cache", "", "cache of rootfs tarballs (default ~/.cache/pier/stack)")
	fs.StringVar(&cfg.RunRepo, "run-image", stack.DefaultRunRepo, "run image repository (the tag is a content hash)")
	fs.StringVar(&cfg.BuildRepo, "build-image", stack.DefaultBuildRepo, "build image repository")
	fs.StringVar(&cfg.BuilderRepo, "builder", stack.DefaultBuilderRepo, "builder repository; <repo>:latest is also tagged")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: pier-stack [flags]

Makes Pier's offline Cloud Native Buildpacks builder in the local Docker
daemon, pulling nothing: build and run images from Debian %s (debootstrap,
needs root the first time; set %s to choose the Debian mirror), this
machine's Go and Node.js, the lifecycle and Pier's buildpacks. Images that
exist with the same content hash are kept. Prints the builder's name.

Use it with pack:  pack build myapp --builder <printed name> --pull-policy never --trust-builder --network host

Flags:
`, stack.Suite, stack.MirrorEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pier-stack: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		_, err = d.Ping(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pier-stack: no Docker daemon (%v): start dockerd, or set DOCKER_HOST\n", err)
		return 1
	}
	defer d.Close()
	cfg.Docker, cfg.Log, cfg.Latest = d, stderr, true
	images, err := stack.Ensure(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "pier-stack:", err)
		return 1
	}
	fmt.Fprintf(stderr, "pier-stack: run image %s, build image %s\n", images.Run, images.Build)
	fmt.Fprintln(stdout, images.Builder)
	return 0
}
