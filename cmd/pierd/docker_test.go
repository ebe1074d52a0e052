package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// dockerStack is pierd all with the pack strategy and the docker
// scheduler, pushing to a registry with a password, as the single-host
// install runs it.
func dockerStack(t *testing.T, apps ...string) (*stack, *testenv.Registry) {
	t.Helper()
	skipShort(t)
	testenv.Docker(t)
	builder := testenv.BuilderImage(t)
	reg := testenv.StartRegistry(t)
	pw := filepath.Join(t.TempDir(), "registry-password")
	if err := os.WriteFile(pw, []byte(reg.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// After pierd stops (cleanups run last first): the containers, then
	// the images pack left in the daemon, named after this test's own
	// registry.
	t.Cleanup(func() { removeImages(t, reg.Host+"/*/*") })
	removeAppContainers(t, apps...)
	// Its own range of ports: scheduler/docker's tests and the compose test
	// run docker schedulers at the same time.
	s := startStack(t, "PIER_SCHEDULER=docker", "PIER_PROCESS_PORTS=26000-26999", "PIER_BUILD_STRATEGY=pack", "PIER_REGISTRY="+reg.Host,
		"PIER_REGISTRY_USERNAME="+reg.Username, "PIER_REGISTRY_PASSWORD_FILE="+pw, "PIER_BUILDER="+builder)
	return s, reg
}

// removeAppContainers removes, when the test ends, what the docker
// scheduler left of the test's apps: their containers outlive pierd, by
// design. Only these apps': other packages' tests run containers on the
// same daemon at the same time.
func removeAppContainers(t *testing.T, apps ...string) {
	t.Cleanup(func() {
		for _, app := range apps {
			out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=io.pier.app="+app).Output()
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
			}
		}
	})
}

// latestBuild is the app's newest build.
func (s *stack) latestBuild(app string) pier.Build {
	s.t.Helper()
	var b pier.Build
	jsonOut(s.t, s.c.must("", "builds:info", "latest", "-a", app, "--json"), &b)
	return b
}

// checkInRegistry asks the registry, with its credentials, for the
// manifest the build names by digest.
func checkInRegistry(t *testing.T, reg *testenv.Registry, app, image string) {
	t.Helper()
	repo, digest, ok := strings.Cut(image, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") || repo != reg.Host+"/pier/"+app {
		t.Fatalf("image %q is not %s/pier/%s@sha256:...", image, reg.Host, app)
	}
	req, _ := http.NewRequest("HEAD", "http://"+reg.Host+"/v2/pier/"+app+"/manifests/"+digest, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	req.SetBasicAuth(reg.Username, reg.Password)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Docker-Content-Digest") != digest {
		t.Fatalf("registry: HEAD manifest %s: %d %q", digest, res.StatusCode, res.Header.Get("Docker-Content-Digest"))
	}
}

// TestPackDockerSamples is the pack issue's acceptance 1 and 2: the Go,
// Node.js and Python samples pushed with the pack strategy become images in
// the registry, recorded by digest, run by the docker scheduler and answer
// through the router; a second push of a one-line change reuses the cache.
func TestPackDockerSamples(t *testing.T) {
	s, reg := dockerStack(t, "go-hello", "node-hello", "python-hello", "go-warm")
	samples := []struct{ dir, app, detected, body string }{
		{"go-hello", "go-hello", "Go app detected", "hello from go"},
		{"node-hello", "node-hello", "Node.js app detected", "hello from node, built with "},
		{"python-hello", "python-hello", "Python app detected", "hello from python"},
	}
	for _, sm := range samples {
		t.Run(sm.dir, func(t *testing.T) {
			r := s.newRepo("../../builder/host/testdata/"+sm.dir, sm.app)
			start := time.Now()
			out := r.mustPush()
			t.Logf("%s: cold push to serving in %.1fs", sm.app, time.Since(start).Seconds())
			if !strings.Contains(out, sm.detected) || !strings.Contains(out, "Released v2") {
				t.Fatalf("push of %s:\n%s", sm.dir, out)
			}
			if got := s.body(sm.app, "/"); !strings.HasPrefix(got, sm.body) {
				t.Fatalf("%s serves %q, want %q...", sm.app, got, sm.body)
			}
			b := s.latestBuild(sm.app)
			if b.Strategy != pier.StrategyPack || b.Status != pier.BuildSucceeded {
				t.Fatalf("build %+v", b)
			}
			checkInRegistry(t, reg, sm.app, b.Image)
			// The container runs the digest, as the app's CNB user.
			ids, err := exec.Command("docker", "ps", "-q", "--filter", "label=io.pier.app="+sm.app).Output()
			if err != nil || len(strings.Fields(string(ids))) != 1 {
				t.Fatalf("containers of %s: %q %v", sm.app, ids, err)
			}
			ins, err := exec.Command("docker", "inspect", "-f", "{{.Config.Image}} {{.Config.User}} {{.HostConfig.NetworkMode}}", strings.Fields(string(ids))[0]).Output()
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(string(ins))
			if len(f) != 3 || f[0] != b.Image || f[1] == "" || f[1] == "root" || f[1] == "0" || f[2] != "host" {
				t.Fatalf("container: image, user, network = %q; want %s, non-root, host", ins, b.Image)
			}
		})
	}

	// A one-line change: the second build restores the cache layers.
	t.Run("warm", func(t *testing.T) {
		r := s.newRepo("../../builder/host/testdata/go-hello", "go-warm")
		r.mustPush()
		first := s.latestBuild("go-warm").Image
		main := filepath.Join(r.dir, "main.go")
		src, err := os.ReadFile(main)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(main, []byte(strings.Replace(string(src), "hello from go", "hello again from go", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		r.git("commit", "-qam", "one line")
		start := time.Now()
		out := r.mustPush()
		t.Logf("warm push to serving in %.1fs", time.Since(start).Seconds())
		if !strings.Contains(out, "Restoring") || !strings.Contains(out, "Released v3") {
			t.Fatalf("the warm push restored no cache:\n%s", out)
		}
		if got := s.body("go-warm", "/"); !strings.HasPrefix(got, "hello again from go") {
			t.Fatalf("serves %q after the change", got)
		}
		if second := s.latestBuild("go-warm").Image; second == first {
			t.Fatalf("the change built the same image %s", second)
		}

		// A destroyed app's containers and build cache go with it.
		s.c.must("", "apps:destroy", "-a", "go-warm", "--confirm", "go-warm")
		eventually(t, 30*time.Second, "go-warm's containers and cache volumes are removed", func() (bool, string) {
			ctrs, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=io.pier.app=go-warm").Output()
			vols, _ := exec.Command("docker", "volume", "ls", "-q", "--filter", "name=pier-cache-go-warm-").Output()
			return len(strings.Fields(string(ctrs))) == 0 && len(strings.Fields(string(vols))) == 0, fmt.Sprintf("containers %q, volumes %q", ctrs, vols)
		})
	})
}

// TestPackDockerfile is acceptance 3: a Dockerfile app deploys (its image
// built by the daemon, its Procfile giving the process types), and a broken
// Dockerfile fails the push with the daemon's own error.
func TestPackDockerfile(t *testing.T) {
	s, reg := dockerStack(t, "docker-app")
	dir := t.TempDir()
	server := filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", server, "./testdata/dockerfile-app")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the app's binary: %v\n%s", err, out)
	}
	src := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(src, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(server)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "server"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	write("Dockerfile", "FROM scratch\nCOPY . /\nUSER 65534:65534\nENTRYPOINT [\"/server\"]\n")
	write(".dockerignore", "secret.txt\n")
	write("secret.txt", "not in the image\n")
	r := s.newRepo(src, "docker-app")
	// The sample copy loses the executable bit; git keeps it once set.
	if err := os.Chmod(filepath.Join(r.dir, "server"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.git("commit", "-qam", "server is executable")
	out := r.mustPush()
	if !strings.Contains(out, "Dockerfile app detected") || !strings.Contains(out, "Released v2") {
		t.Fatalf("push:\n%s", out)
	}
	if got := s.body("docker-app", "/"); got != "hello from a Dockerfile" {
		t.Fatalf("serves %q", got)
	}
	if code, _, err := s.get(http.DefaultClient, "docker-app", "/secret"); err != nil || code != 404 {
		t.Fatalf("GET /secret: %d %v: .dockerignore did not keep secret.txt out", code, err)
	}
	bd := s.latestBuild("docker-app")
	if bd.Strategy != pier.StrategyDockerfile || bd.ProcessTypes["web"] != "" {
		t.Fatalf("build %+v", bd)
	}
	checkInRegistry(t, reg, "docker-app", bd.Image)

	// Broken: the daemon's error reaches the pusher, and v2 keeps serving.
	src = r.dir
	write("Dockerfile", "FROM scratch\nCOPY no-such-file /server\n")
	r.git("add", ".")
	r.git("commit", "-qm", "break the Dockerfile")
	out, err = r.push()
	if err == nil || !strings.Contains(out, "Dockerfile build failed") || !strings.Contains(out, "no-such-file") {
		t.Fatalf("broken Dockerfile: err %v\n%s", err, out)
	}
	if got := s.body("docker-app", "/"); got != "hello from a Dockerfile" {
		t.Fatalf("after the failed push, serves %q", got)
	}
	if bd := s.latestBuild("docker-app"); bd.Status != pier.BuildFailed || !strings.Contains(bd.Log, "no-such-file") {
		t.Fatalf("failed build on record: %+v", bd)
	}
}

// TestPackKubernetes is acceptance 4: with the kubernetes scheduler, a git
// push built by pack runs as a Deployment whose image is the digest the
// build pushed to the registry.
func TestPackKubernetes(t *testing.T) {
	skipShort(t)
	kube := testenv.KubeCluster(t)
	testenv.Docker(t)
	builder := testenv.BuilderImage(t)
	reg := testenv.StartRegistry(t)
	s := startStack(t, "PIER_SCHEDULER=kubernetes", "KUBECONFIG="+kube.Kubeconfig, "PIER_REGISTRY="+reg.Host,
		"PIER_REGISTRY_USERNAME="+reg.Username, "PIER_REGISTRY_PASSWORD="+reg.Password, "PIER_BUILDER="+builder)
	r := s.newRepo("../../builder/host/testdata/go-hello", "kgo")
	if out := r.mustPush(); !strings.Contains(out, "Released v2") {
		t.Fatalf("push:\n%s", out)
	}
	b := s.latestBuild("kgo")
	checkInRegistry(t, reg, "kgo", b.Image)
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dep, err := cs.AppsV1().Deployments("pier-kgo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no web Deployment after the push: %v", err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != b.Image || len(c.Command) != 1 || c.Command[0] != "/cnb/process/web" {
		t.Fatalf("web runs %q %q, want %s as /cnb/process/web", c.Image, c.Command, b.Image)
	}
	if dep.Status.ReadyReplicas != 1 {
		t.Fatalf("web: %d ready once the push answered, want 1", dep.Status.ReadyReplicas)
	}
}
