package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pierpaas/pier/builder/stack"
)

// The Kubernetes control plane that KubeCluster runs is built from the Go
// module proxy at these versions (FACTS.md records them working here).
const (
	KubernetesVersion = "v1.37.2" // k8s.io/kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler
	EtcdVersion       = "v3.6.16" // go.etcd.io/etcd/server/v3
	KwokVersion       = "v0.8.0"  // sigs.k8s.io/kwok: fake nodes and pods
)

// KubeBinaries are the programs BuildKube puts in <KubeDir>/bin.
var KubeBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// kwokCRDs are the kwok CRDs BuildKube copies into <KubeDir>/kwok/crds and
// KubeCluster applies: what pod logs need.
var kwokCRDs = []string{"kwok.x-k8s.io_clusterlogs.yaml", "kwok.x-k8s.io_logs.yaml"}

// kwokStages are the stage sets (directories of the kwok module's
// kustomize/stage) concatenated into <KubeDir>/kwok/stages.yaml.
var kwokStages = []string{"node/fast", "node/heartbeat-with-lease", "pod/general"}

// KubeDir is where the control plane's binaries and kwok's data are cached:
// $HOME/.cache/pier/kube-<versions>. Versions are in the name, so a version
// bump builds afresh next to the old cache.
func KubeDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "pier",
		fmt.Sprintf("kube-%s-etcd-%s-kwok-%s", KubernetesVersion, EtcdVersion, KwokVersion)), nil
}

// kubeStamp is written last by BuildKube: its presence means the cache is
// complete.
const kubeStamp = "complete"

// KubeBuilt reports whether the cache is complete, without building.
func KubeBuilt() (dir string, ok bool) {
	dir, err := KubeDir()
	if err != nil {
		return "", false
	}
	return dir, kubeComplete(dir)
}

func kubeComplete(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, kubeStamp)); err != nil {
		return false
	}
	for _, b := range KubeBinaries {
		if _, err := os.Stat(filepath.Join(dir, "bin", b)); err != nil {
			return false
		}
	}
	return true
}

// BuildKube builds what KubeCluster runs, unless the cache already holds
// it, and returns the cache directory (see KubeDir). A cold build takes
// 10–30 minutes on two cores (28 minutes measured on a busy machine) and
// needs only Go and the module proxy: each program is built in a
// throwaway module under <KubeDir>/src (for
// k8s.io/kubernetes, with its staging modules replaced by their published
// versions). Progress goes to progress (nil: discarded).
//
// Concurrent callers (test binaries of several packages, make) are
// serialised by a lock file: one builds, the others wait and find the
// cache complete.
func BuildKube(ctx context.Context, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	dir, err := KubeDir()
	if err != nil {
		return "", err
	}
	if kubeComplete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "build.lock"), func() {
		fmt.Fprintf(progress, "waiting for another build of %s to finish\n", dir)
	})
	if err != nil {
		return "", err
	}
	defer unlock()
	if kubeComplete(dir) {
		return dir, nil
	}
	start := time.Now()
	fmt.Fprintf(progress, "building the Kubernetes control plane into %s (a cold build takes 10–30 minutes on two cores)\n", dir)
	b := &kubeBuilder{dir: dir, progress: progress}
	if err := b.build(ctx); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, kubeStamp), []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "built in %s\n", time.Since(start).Round(time.Second))
	return dir, nil
}

// lockFile is builder/stack's: one flock rule for every cache a test
// binary or `make builder-image` may fill at the same time.
var lockFile = stack.LockFile

type kubeBuilder struct {
	dir      string
	progress io.Writer
	step     int
}

func (b *kubeBuilder) build(ctx context.Context) error {
	for _, d := range []string{"bin", "kwok/crds", "src/kubernetes", "src/etcd", "src/kwok"} {
		if err := os.MkdirAll(filepath.Join(b.dir, d), 0o755); err != nil {
			return err
		}
	}
	// Quick ones first, so a broken proxy shows within seconds.
	kwokSrc := filepath.Join(b.dir, "src/kwok")
	if err := writeGoMod(kwokSrc, "sigs.k8s.io/kwok "+KwokVersion, nil); err != nil {
		return err
	}
	if err := b.kwokData(ctx, kwokSrc); err != nil {
		return err
	}
	etcdSrc := filepath.Join(b.dir, "src/etcd")
	if err := writeGoMod(etcdSrc, "go.etcd.io/etcd/server/v3 "+EtcdVersion, nil); err != nil {
		return err
	}
	if err := b.goBuild(ctx, etcdSrc, "etcd", "go.etcd.io/etcd/server/v3", ""); err != nil {
		return err
	}
	kubeSrc := filepath.Join(b.dir, "src/kubernetes")
	if err := b.kubernetesModule(ctx, kubeSrc); err != nil {
		return err
	}
	minor := strings.Split(KubernetesVersion, ".")[1]
	var ld []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld = append(ld, "-X "+pkg+".gitVersion="+KubernetesVersion, "-X "+pkg+".gitMajor=1",
			"-X "+pkg+".gitMinor="+minor, "-X "+pkg+".gitTreeState=clean")
	}
	ldflags := strings.Join(ld, " ")
	// The controller-manager and the scheduler share most packages with the
	// apiserver, so they are quick once it is built.
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if err := b.goBuild(ctx, kubeSrc, c, "k8s.io/kubernetes/cmd/"+c, ldflags); err != nil {
			return err
		}
	}
	return b.goBuild(ctx, kwokSrc, "kwok", "sigs.k8s.io/kwok/cmd/kwok",
		"-X sigs.k8s.io/kwok/pkg/consts.Version="+KwokVersion)
}

// writeGoMod writes the go.mod of a throwaway module that requires req
// ("path version") with the given replace lines. go build -mod=mod fills in
// the rest and go.sum (kept across builds).
func writeGoMod(dir, req string, replaces []string) error {
	var s strings.Builder
	s.WriteString("// Generated by Pier's internal/testenv: a throwaway module to build a tool from the module proxy.\n")
	s.WriteString("module pier.localhost/toolbuild\n\ngo 1.26\n\nrequire " + req + "\n")
	if len(replaces) > 0 {
		s.WriteString("\nreplace (\n")
		for _, r := range replaces {
			s.WriteString("\t" + r + "\n")
		}
		s.WriteString(")\n")
	}
	return os.WriteFile(filepath.Join(dir, "go.mod"), []byte(s.String()), 0o644)
}

// goEnv is the environment of the go commands BuildKube runs: static
// binaries, the throwaway module's own go.mod (whatever GOFLAGS or a
// go.work says around it).
func goEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOFLAGS=") || strings.HasPrefix(kv, "GOWORK=") || strings.HasPrefix(kv, "CGO_ENABLED=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
}

func (b *kubeBuilder) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = goEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, stderr.Bytes())
	}
	return out, nil
}

// goBuild builds pkg into bin/name, through a temp file renamed into place.
func (b *kubeBuilder) goBuild(ctx context.Context, modDir, name, pkg, ldflags string) error {
	b.step++
	out := filepath.Join(b.dir, "bin", name)
	if _, err := os.Stat(out); err == nil {
		fmt.Fprintf(b.progress, "[%d/%d] %s: already built\n", b.step, len(KubeBinaries), name)
		return nil
	}
	fmt.Fprintf(b.progress, "[%d/%d] building %s (%s)...\n", b.step, len(KubeBinaries), name, pkg)
	start := time.Now()
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	defer os.Remove(tmp)
	if ldflags != "" {
		ldflags += " "
	}
	// A minute may pass without a word from go build: say it is alive.
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(b.progress, "[%d/%d] still building %s (%s so far)\n", b.step, len(KubeBinaries), name, time.Since(start).Round(time.Second))
			}
		}
	}()
	if _, err := b.run(ctx, modDir, "build", "-trimpath", "-ldflags", ldflags+"-s -w", "-o", tmp, pkg); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(b.progress, "[%d/%d] %s built in %s\n", b.step, len(KubeBinaries), name, time.Since(start).Round(time.Second))
	return nil
}

// kubernetesModule writes the throwaway module for k8s.io/kubernetes: it
// requires k8s.io/kubernetes and replaces each staging module (replaced by
// ./staging/... in k8s.io/kubernetes's own go.mod) by its published
// version, v0.<minor>.<patch>.
func (b *kubeBuilder) kubernetesModule(ctx context.Context, dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module pier.localhost/toolbuild\n\ngo 1.26\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(b.progress, "fetching k8s.io/kubernetes %s's go.mod\n", KubernetesVersion)
	out, err := b.run(ctx, dir, "mod", "download", "-json", "k8s.io/kubernetes@"+KubernetesVersion)
	if err != nil {
		return err
	}
	var info struct{ GoMod, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("go mod download: %v", err)
	}
	if info.Error != "" || info.GoMod == "" {
		return fmt.Errorf("go mod download k8s.io/kubernetes@%s: %s", KubernetesVersion, info.Error)
	}
	gomod, err := os.ReadFile(info.GoMod)
	if err != nil {
		return err
	}
	staging := "v0." + strings.TrimPrefix(KubernetesVersion, "v1.")
	mods := stagingModules(gomod)
	if len(mods) == 0 {
		return fmt.Errorf("no staging replaces found in %s", info.GoMod)
	}
	var replaces []string
	for _, m := range mods {
		replaces = append(replaces, m+" => "+m+" "+staging)
	}
	return writeGoMod(dir, "k8s.io/kubernetes "+KubernetesVersion, replaces)
}

var stagingReplace = regexp.MustCompile(`^\s*(?:replace\s+)?(\S+)(?:\s+\S+)?\s+=>\s+\./staging/`)

// stagingModules returns the modules that a go.mod replaces with
// directories under ./staging/.
func stagingModules(gomod []byte) []string {
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if m := stagingReplace.FindStringSubmatch(sc.Text()); m != nil {
			seen[m[1]] = true
		}
	}
	var mods []string
	for m := range seen {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	return mods
}

// kwokData copies kwok's stage definitions and CRDs out of the module cache.
func (b *kubeBuilder) kwokData(ctx context.Context, modDir string) error {
	fmt.Fprintf(b.progress, "fetching sigs.k8s.io/kwok %s (stages and CRDs)\n", KwokVersion)
	out, err := b.run(ctx, modDir, "mod", "download", "-json", "sigs.k8s.io/kwok@"+KwokVersion)
	if err != nil {
		return err
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("go mod download: %v", err)
	}
	if info.Error != "" || info.Dir == "" {
		return fmt.Errorf("go mod download sigs.k8s.io/kwok@%s: %s", KwokVersion, info.Error)
	}
	var stages bytes.Buffer
	stages.WriteString("# kwok " + KwokVersion + " stages " + strings.Join(kwokStages, ", ") + ", copied by Pier's internal/testenv.\n")
	for _, s := range kwokStages {
		files, err := filepath.Glob(filepath.Join(info.Dir, "kustomize/stage", s, "*.yaml"))
		if err != nil {
			return err
		}
		n := 0
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			stages.WriteString("---\n# " + s + "/" + filepath.Base(f) + "\n")
			stages.Write(bytes.TrimSpace(data))
			stages.WriteString("\n")
			n++
		}
		if n == 0 {
			return fmt.Errorf("no stage files in %s/kustomize/stage/%s", info.Dir, s)
		}
	}
	if err := writeFileAtomic(filepath.Join(b.dir, "kwok/stages.yaml"), stages.Bytes()); err != nil {
		return err
	}
	for _, c := range kwokCRDs {
		data, err := os.ReadFile(filepath.Join(info.Dir, "kustomize/crd/bases", c))
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(b.dir, "kwok/crds", c), data); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
