package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pierpaas/pier/scheduler/kubernetes"
)

// kubeConfig finds the cluster: --kubeconfig, else $KUBECONFIG or
// ~/.kube/config, else the in-cluster service account (pierd in a pod).
func kubeConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	if path == "" && os.Getenv("KUBECONFIG") == "" {
		if _, err := os.Stat(rules.GetDefaultFilename()); errors.Is(err, os.ErrNotExist) {
			cfg, err := rest.InClusterConfig()
			if err != nil {
				return nil, fmt.Errorf("no kubeconfig (--kubeconfig, KUBECONFIG or ~/.kube/config) and not in a cluster: %w", err)
			}
			return cfg, nil
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// startKube connects the Kubernetes scheduler and waits for its caches.
func startKube(o options, log *slog.Logger) (*kubernetes.Scheduler, error) {
	cfg, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	routerPods, err := kubernetes.ParseSelector(o.routerSelector)
	if err != nil {
		return nil, fmt.Errorf("--router-selector: %w", err)
	}
	s, err := kubernetes.New(kubernetes.Config{
		RESTConfig: cfg, Logger: log, RolloutTimeout: o.rolloutTimeout,
		RouterNamespace: o.routerNamespace, RouterPodLabels: routerPods, DisableNetworkPolicy: !o.networkPolicy,
		PullCredentials: o.registryToken.pullCredentials(o.registry), // registrytoken.go
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes scheduler: %w", err)
	}
	return s, nil
}
