package kube

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// testRegistry is an in-memory OCI registry on loopback.
func testRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushBuiltImage puts an image with CNB build metadata (the process types
// a real creator run records) at repo:tag and returns its digest.
func pushBuiltImage(t *testing.T, repo string, procs map[string]string) string {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The lifecycle's build metadata, as a creator run writes it.
	var processes []map[string]any
	for typ, cmd := range procs {
		processes = append(processes, map[string]any{"type": typ, "command": []string{cmd}})
	}
	md := map[string]any{"processes": processes}
	raw, _ := json.Marshal(md)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Labels = map[string]string{pier.BuildMetadataLabel: string(raw)}
	if img, err = mutate.Config(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(repo + ":git-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// report is what the creator writes to -report (report.toml).
func report(image, digest string) string {
	return "[image]\n  tags = [\"" + image + "\"]\n  digest = \"" + digest + "\"\n  manifest-size = 1083\n"
}

func newTestStrategy(t *testing.T, client kubernetes.Interface, reg string) *Strategy {
	t.Helper()
	s, err := New(Config{
		Client:         client,
		Registry:       Registry{Host: reg, Prefix: "pier", Username: "pusher", Password: "s3cret-registry-pass", Insecure: true},
		Sources:        NewSources(),
		SourceURL:      "http://pierd-internal.pier.svc:9091/",
		DefaultBuilder: "registry.example/pier/builder:1",
		FetchImage:     "registry.example/pier/pierd:1",
		Timeout:        10 * time.Minute,
		LogDrain:       200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sourceDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Procfile"), []byte("web: ./server\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n"), 0o644)
	return dir
}

func TestPodSpec(t *testing.T) {
	s := newTestStrategy(t, fake.NewClientset(), "registry.example:5000")
	b := &build{id: "abc123", name: "build-myapp-abc123", app: "myapp", builder: "registry.example/cnb/builder:2",
		image: "registry.example:5000/pier/myapp:git-0123456789ab", token: "tok", sourceURL: "http://x/internal/v1/builds/abc123/source",
		config: pier.Config{"SECRET_KEY": "v", "A": "b"}}
	checkPod(t, s.pod(b), podWant{
		builder: b.builder, fetchImage: "registry.example/pier/pierd:1",
		image: b.image, cache: "registry.example:5000/pier/myapp:cache", sourceURL: b.sourceURL,
		secret: b.name, uid: DefaultUID, gid: DefaultGID, deadline: 600, env: []string{"A", "SECRET_KEY"},
	})
	sec, err := s.secret(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != corev1.SecretTypeDockerConfigJson || string(sec.Data[keyToken]) != "tok" || string(sec.Data["env.SECRET_KEY"]) != "v" {
		t.Fatalf("secret: %+v", sec)
	}
	var dc struct {
		Auths map[string]struct{ Username, Password, Auth string }
	}
	if err := json.Unmarshal(sec.Data[corev1.DockerConfigJsonKey], &dc); err != nil || dc.Auths["registry.example:5000"].Username != "pusher" || dc.Auths["registry.example:5000"].Password != "s3cret-registry-pass" || len(dc.Auths) != 1 {
		t.Fatalf("docker config: %s (%v)", sec.Data[corev1.DockerConfigJsonKey], err)
	}

	// Credentials scoped to the app's repository replace the shared ones.
	released := 0
	s.cfg.Registry.Credentials = func(_ context.Context, app string) (string, string, func(), error) {
		return "scoped-" + app, "repo-token", func() { released++ }, nil
	}
	if sec, err = s.secret(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	raw := string(sec.Data[corev1.DockerConfigJsonKey])
	if !strings.Contains(raw, `"username":"scoped-myapp"`) || strings.Contains(raw, "s3cret-registry-pass") {
		t.Fatalf("scoped docker config: %s", raw)
	}
	if b.release == nil {
		t.Fatal("the build keeps no way to end its registry credentials")
	}
	b.release()
	if released != 1 {
		t.Fatalf("release called %d times, want 1", released)
	}
}

// podWant is what a build Pod must be (Acceptance 2 of the issue).
type podWant struct {
	builder, fetchImage, image, cache, sourceURL, secret string
	uid, gid, deadline                                   int64
	env                                                  []string // config keys in /platform/env
}

func checkPod(t *testing.T, p *corev1.Pod, w podWant) {
	t.Helper()
	sp := p.Spec
	if sp.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q", sp.RestartPolicy)
	}
	if sp.AutomountServiceAccountToken == nil || *sp.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken: %v, want false", sp.AutomountServiceAccountToken)
	}
	if sp.ActiveDeadlineSeconds == nil || *sp.ActiveDeadlineSeconds != w.deadline {
		t.Errorf("activeDeadlineSeconds: %v, want %d", sp.ActiveDeadlineSeconds, w.deadline)
	}
	psc := sp.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != w.uid || psc.RunAsGroup == nil || *psc.RunAsGroup != w.gid {
		t.Errorf("pod security context: %+v", psc)
	}
	if p.Labels[LabelManagedBy] != "pier" || p.Labels[LabelApp] == "" || p.Labels[LabelBuild] == "" {
		t.Errorf("labels: %v", p.Labels)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range sp.Volumes {
		vols[v.Name] = v
	}
	for _, v := range sp.Volumes {
		if v.Secret != nil && (v.Secret.SecretName != w.secret || len(v.Secret.Items) == 0) {
			t.Errorf("volume %s: secret %s with items %v: want only chosen keys of %s", v.Name, v.Secret.SecretName, v.Secret.Items, w.secret)
		}
	}
	if len(sp.InitContainers) != 1 || len(sp.Containers) != 1 {
		t.Fatalf("containers: %d init, %d", len(sp.InitContainers), len(sp.Containers))
	}
	for _, c := range append(slices.Clone(sp.InitContainers), sp.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != w.uid || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s security context: %+v", c.Name, sc)
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil && (strings.Contains(e.Value, "s3cret") || strings.Contains(strings.ToLower(e.Name), "password") || strings.Contains(strings.ToLower(e.Name), "token") && !strings.HasSuffix(e.Name, "_FILE")) {
				t.Errorf("container %s: a secret as plain env: %s", c.Name, e.Name)
			}
		}
	}
	mounts := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, vm := range c.VolumeMounts {
			m[vm.Name] = vm.MountPath
		}
		return m
	}
	env := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, e := range c.Env {
			m[e.Name] = e.Value
		}
		return m
	}
	// The source: fetched with the build's token, from a Secret file.
	fc := sp.InitContainers[0]
	fe, fm := env(fc), mounts(fc)
	if fc.Image != w.fetchImage || !slices.Equal(fc.Command, []string{"pierd", "fetch-source"}) || fe[EnvSourceURL] != w.sourceURL || fe[EnvSourceDir] != "/workspace" || fm["workspace"] != "/workspace" {
		t.Errorf("source container: %+v", fc)
	}
	tv := vols["source-token"]
	if tokMount := fm["source-token"]; tokMount == "" || tv.Secret == nil || tv.Secret.Items[0].Key != keyToken || fe[EnvSourceTokenFile] != tokMount+"/"+tv.Secret.Items[0].Path {
		t.Errorf("source token: env %s, mount %q, volume %+v", fe[EnvSourceTokenFile], tokMount, tv)
	}
	// The build: the creator in the builder image.
	bc := sp.Containers[0]
	be, bm := env(bc), mounts(bc)
	if bc.Image != w.builder {
		t.Errorf("build image %q, want %q", bc.Image, w.builder)
	}
	if !slices.Equal(bc.Command, []string{"/cnb/lifecycle/creator"}) {
		t.Errorf("build command %q", bc.Command)
	}
	args := bc.Args
	if len(args) == 0 || args[len(args)-1] != w.image {
		t.Errorf("creator args %q: the app image %s must come last", args, w.image)
	}
	for _, want := range []string{"-app=/workspace", "-layers=/layers", "-platform=/platform", "-cache-image=" + w.cache, "-report=/dev/termination-log"} {
		if !slices.Contains(args, want) {
			t.Errorf("creator args %q: no %s", args, want)
		}
	}
	if be["CNB_PLATFORM_API"] != PlatformAPI || bm["workspace"] != "/workspace" || bm["layers"] != "/layers" || bm["platform"] != "/platform" {
		t.Errorf("build env %v, mounts %v", be, bm)
	}
	rv := vols["registry"]
	if rv.Secret == nil || rv.Secret.Items[0].Key != corev1.DockerConfigJsonKey || rv.Secret.Items[0].Path != "config.json" || bm["registry"] == "" || be["DOCKER_CONFIG"] != bm["registry"] {
		t.Errorf("registry credentials: volume %+v, DOCKER_CONFIG %q, mount %q", rv, be["DOCKER_CONFIG"], bm["registry"])
	}
	if bc.TerminationMessagePath != "/dev/termination-log" || bc.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("termination message: %q %q", bc.TerminationMessagePath, bc.TerminationMessagePolicy)
	}
	pv := vols["platform"]
	var keys []string
	if pv.Secret != nil {
		for _, it := range pv.Secret.Items {
			if it.Path != "env/"+strings.TrimPrefix(it.Key, envPrefix) {
				t.Errorf("platform item %+v", it)
			}
			keys = append(keys, strings.TrimPrefix(it.Key, envPrefix))
		}
	}
	if !slices.Equal(keys, w.env) {
		t.Errorf("config in /platform/env: %v, want %v", keys, w.env)
	}
}

// fakeBuild runs a build on a fake clientset and ends its Pod with end.
func fakeBuild(t *testing.T, s *Strategy, client *fake.Clientset, app string, end func(*corev1.Pod)) (*pier.BuildResult, string, error) {
	t.Helper()
	var out testenv.Buffer
	type result struct {
		res *pier.BuildResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := s.Build(context.Background(), pier.BuildRequest{App: app, Commit: "0123456789abcdef", SourceDir: sourceDir(t), Log: &out})
		done <- result{res, err}
	}()
	var pod *corev1.Pod
	deadline := time.Now().Add(10 * time.Second)
	for pod == nil {
		l, _ := client.CoreV1().Pods(s.Namespace()).List(context.Background(), metav1.ListOptions{})
		if len(l.Items) > 0 {
			pod = &l.Items[0]
		} else if time.Now().After(deadline) {
			t.Fatal("no build pod")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	end(pod)
	if _, err := client.CoreV1().Pods(s.Namespace()).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	return r.res, out.String(), r.err
}

func TestBuildOnFakeCluster(t *testing.T) {
	reg := testRegistry(t)
	client := fake.NewClientset()
	s := newTestStrategy(t, client, reg)
	digest := pushBuiltImage(t, reg+"/pier/myapp", map[string]string{"web": "./server"})

	res, out, err := fakeBuild(t, s, client, "myapp", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodSucceeded
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "build", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Message: report(reg+"/pier/myapp:git-0123456789ab", digest)}}}}
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if res.Image != reg+"/pier/myapp@"+digest || res.ProcessTypes["web"] != "./server" {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(out, "Built "+res.Image) {
		t.Errorf("pusher saw:\n%s", out)
	}
	assertGone(t, client, s.Namespace())

	// A failed creator fails the build with its last lines.
	_, out, err = fakeBuild(t, s, client, "myapp", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "build", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", Message: "===> BUILDING\nERROR: failed to build: exit status 1\n"}}}}
	})
	if err == nil || !strings.Contains(err.Error(), "ERROR: failed to build: exit status 1") || !strings.Contains(err.Error(), "exit code 1") {
		t.Fatalf("failed build: %v\n%s", err, out)
	}
	assertGone(t, client, s.Namespace())

	// Succeeded, but no report: no digest to release.
	_, _, err = fakeBuild(t, s, client, "myapp", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	if err == nil || !strings.Contains(err.Error(), "no image digest") {
		t.Fatalf("no report: %v", err)
	}
}

func assertGone(t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	pods, _ := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	secs, _ := client.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
	if len(pods.Items)+len(secs.Items) > 0 {
		t.Fatalf("left behind: %d pods, %d secrets", len(pods.Items), len(secs.Items))
	}
}

func TestNewRefuses(t *testing.T) {
	ok := Config{Client: fake.NewClientset(), Sources: NewSources(), SourceURL: "http://x", Registry: Registry{Host: "registry.example"}, DefaultBuilder: "registry.example/b:1"}
	for name, mut := range map[string]func(*Config){
		"no client":   func(c *Config) { c.Client = nil },
		"no url":      func(c *Config) { c.SourceURL = "" },
		"no registry": func(c *Config) { c.Registry.Host = "" },
		"no builder":  func(c *Config) { c.DefaultBuilder = "" },
		"bad builder": func(c *Config) { c.DefaultBuilder = "Bad Image" },
	} {
		c := ok
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
}
