package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// HelmVersion is the version of helm.sh/helm/v3 whose CLI Helm builds.
const HelmVersion = "v3.22.0"

// BuildHelm builds the Helm CLI (helm.sh/helm/v3 cmd/helm) from the module
// proxy into $HOME/.cache/pier/helm-<version>/bin/helm, unless it is there,
// and returns its path. Cold, about a minute.
func BuildHelm(ctx context.Context) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return buildTool(ctx, filepath.Join(home, ".cache", "pier", "helm-"+HelmVersion), "helm", "helm.sh/helm/v3", HelmVersion, "helm.sh/helm/v3/cmd/helm")
}

// Helm returns the path of the Helm CLI, building it first if need be. In
// -short mode it skips the test, unless CI=true.
func Helm(t testing.TB) string {
	t.Helper()
	if testing.Short() && !isCI() {
		t.Skip("skipping Helm tests in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := BuildHelm(ctx)
	if err != nil {
		t.Fatalf("building helm: %v", err)
	}
	return bin
}

// RunHelm runs helm with args in a private HELM_* home (no repositories,
// no cluster access: template and lint only) and returns its stdout.
func RunHelm(t testing.TB, helm string, args ...string) string {
	t.Helper()
	out, err := RunHelmErr(t, helm, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunHelmErr is RunHelm for a run that may fail, such as a render the
// chart refuses: the error holds helm's output.
func RunHelmErr(t testing.TB, helm string, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(helm, args...)
	cmd.Env = append(childEnv(),
		"HOME="+dir,
		"HELM_CACHE_HOME="+filepath.Join(dir, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HELM_DATA_HOME="+filepath.Join(dir, "data"),
		"KUBECONFIG="+filepath.Join(dir, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

// Manifests splits a multi-document YAML stream into objects, skipping
// empty documents.
func Manifests(yamlText string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(yamlText), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// ApplyManifests applies objs with server-side apply (field manager
// fieldManager), as `kubectl apply --server-side` does; with dryRun, as
// --dry-run=server: the API server validates and admits each object and
// stores nothing.
func ApplyManifests(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, fieldManager string, dryRun bool) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		body, err := o.MarshalJSON()
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if o.GetNamespace() == "" {
				return fmt.Errorf("%s %s has no namespace", gvk.Kind, o.GetName())
			}
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts); err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}
