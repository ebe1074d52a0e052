package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/kube"
)

// kubeBuildOptions are the flags of --build-strategy kubernetes: builds in
// Pods of the cluster (builder/kube).
type kubeBuildOptions struct {
	namespace  string
	sourceURL  string
	fetchImage string
	timeout    time.Duration
	uid, gid   int64
	insecure   bool
}

func (k *kubeBuildOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&k.namespace, "build-namespace", env("PIER_BUILD_NAMESPACE", kube.DefaultNamespace), "--build-strategy kubernetes: the namespace of the build Pods (env PIER_BUILD_NAMESPACE)")
	fs.StringVar(&k.sourceURL, "build-source-url", env("PIER_BUILD_SOURCE_URL", ""), "--build-strategy kubernetes: the URL at which build Pods reach pierd's internal listener (--internal-addr) to fetch the pushed source, such as http://pier-internal.pier.svc:9091 (env PIER_BUILD_SOURCE_URL)")
	fs.StringVar(&k.fetchImage, "build-fetch-image", env("PIER_BUILD_FETCH_IMAGE", kube.DefaultFetchImage), "--build-strategy kubernetes: the Pier image whose `pierd fetch-source` fetches the source in each build Pod (env PIER_BUILD_FETCH_IMAGE)")
	fs.DurationVar(&k.timeout, "build-timeout", envDuration("PIER_BUILD_TIMEOUT", kube.DefaultTimeout), "--build-strategy kubernetes: how long a build Pod may run (its activeDeadlineSeconds) (env PIER_BUILD_TIMEOUT)")
	fs.Int64Var(&k.uid, "build-uid", envInt("PIER_BUILD_UID", kube.DefaultUID), "--build-strategy kubernetes: the uid build Pods run as: the builder image's CNB user, never 0 (env PIER_BUILD_UID)")
	fs.Int64Var(&k.gid, "build-gid", envInt("PIER_BUILD_GID", kube.DefaultGID), "--build-strategy kubernetes: the gid build Pods run as (env PIER_BUILD_GID)")
	fs.BoolVar(&k.insecure, "registry-insecure", env("PIER_REGISTRY_INSECURE", "false") == "true", "--build-strategy kubernetes: the registry speaks plain HTTP, as an in-cluster registry may (env PIER_REGISTRY_INSECURE)")
}

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

// check validates the flags of --build-strategy kubernetes.
func (k *kubeBuildOptions) check(o *options) error {
	if o.scheduler != "kubernetes" {
		return fmt.Errorf("--build-strategy kubernetes builds in Pods of the cluster the kubernetes scheduler runs apps on: add --scheduler kubernetes")
	}
	if k.sourceURL == "" {
		return errors.New("--build-strategy kubernetes needs --build-source-url: the URL at which build Pods reach pierd's internal listener, such as http://pier-internal.pier.svc:9091")
	}
	if u, err := url.Parse(k.sourceURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--build-source-url %q: give an http or https URL, such as http://pier-internal.pier.svc:9091", k.sourceURL)
	}
	if o.internalAddr == "off" {
		return errors.New("--build-strategy kubernetes serves the pushed source on the internal listener: give --internal-addr, not off")
	}
	if k.uid <= 0 || k.gid <= 0 {
		return errors.New("--build-uid and --build-gid must be positive: builds never run as root")
	}
	if k.timeout <= 0 {
		return fmt.Errorf("--build-timeout %s: give a positive duration, such as 15m", k.timeout)
	}
	if err := pier.ValidateImage(k.fetchImage); err != nil {
		return fmt.Errorf("--build-fetch-image: %s", pier.ErrorMessage(err))
	}
	return nil
}

// startKubeBuild makes the kubernetes build strategy, and deletes what
// builds of an earlier pierd left behind.
func (p *platform) startKubeBuild(ctx context.Context, o options, log *slog.Logger) error {
	rc, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "pier-builder"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes build strategy: %w", err)
	}
	reg, err := registryOf(o)
	if err != nil {
		return err
	}
	k := o.kubeBuild
	sources := kube.NewSources()
	s, err := kube.New(kube.Config{
		Client: client,
		Registry: kube.Registry{
			Host: reg.Host, Prefix: reg.Prefix, Username: reg.Username, Password: reg.Password, Insecure: k.insecure,
			// Each build's own credentials, when Pier is the registry's
			// token service; they end with the build, or at its deadline.
			Credentials: o.registryToken.buildCredentials(k.timeout + kube.DefaultStartTimeout + time.Minute),
		},
		Sources: sources, SourceURL: k.sourceURL,
		DefaultBuilder: o.builder, FetchImage: k.fetchImage, Namespace: k.namespace,
		UID: k.uid, GID: k.gid, Timeout: k.timeout, Logger: log,
	})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Cleanup(cctx); err != nil {
		log.Warn("deleting leftover build pods", "err", err)
	}
	p.strategy, p.builder, p.buildSources = s, o.builder, sources
	return nil
}
