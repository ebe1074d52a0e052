package kube

// Builds against a real control plane (internal/testenv: kube-apiserver,
// controller-manager, scheduler and kwok's simulated nodes). kwok runs no
// containers: the test asserts on the build Pod the strategy creates, and
// then plays the kubelet's part by writing the Pod's status, as a creator
// run would end it. It never connects to a pod.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// impersonateBuilder and chartBuildNamespace, when set, make
// newKubeBuildEnv's strategy act as that user in that namespace (made
// beforehand, and left in place): TestKubeBuildChartRBAC runs the
// integration tests as the Helm chart's controller ServiceAccount in the
// chart's build namespace.
var (
	impersonateBuilder  *rest.ImpersonationConfig
	chartBuildNamespace string
)

type kubeBuildEnv struct {
	k      *testenv.Kube
	admin  kubernetes.Interface
	s      *Strategy
	reg    string
	ns     string
	sample string // the config var the builds get: it must never show in a Pod spec
}

func newKubeBuildEnv(t *testing.T) *kubeBuildEnv {
	t.Helper()
	k := testenv.KubeCluster(t)
	rc := rest.CopyConfig(k.Config)
	rc.QPS, rc.Burst = 100, 200
	admin, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	e := &kubeBuildEnv{k: k, admin: admin, reg: testRegistry(t), ns: "pier-test-builds-" + hex.EncodeToString(b), sample: "canary-" + hex.EncodeToString(b)}
	src := rest.CopyConfig(rc)
	if chartBuildNamespace != "" {
		e.ns = chartBuildNamespace
	} else {
		t.Cleanup(func() { admin.CoreV1().Namespaces().Delete(context.Background(), e.ns, metav1.DeleteOptions{}) })
	}
	if impersonateBuilder != nil {
		src.Impersonate = *impersonateBuilder
	}
	client, err := kubernetes.NewForConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	e.s, err = New(Config{
		Client:         client,
		Registry:       Registry{Host: e.reg, Prefix: "pier", Username: "pusher", Password: "s3cret-registry-pass", Insecure: true},
		Sources:        NewSources(),
		SourceURL:      "http://pierd-internal.pier.svc:9091",
		DefaultBuilder: "registry.example/pier/builder:1",
		FetchImage:     "registry.example/pier/pierd:1",
		Namespace:      e.ns,
		UID:            1001, GID: 1002,
		Timeout:  7 * time.Minute,
		LogDrain: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type buildOutcome struct {
	res *pier.BuildResult
	err error
}

// start starts a build of a small app and returns its Pod once created.
func (e *kubeBuildEnv) start(t *testing.T, app string, out *testenv.Buffer) (*corev1.Pod, <-chan buildOutcome) {
	t.Helper()
	done := make(chan buildOutcome, 1)
	go func() {
		res, err := e.s.Build(context.Background(), pier.BuildRequest{
			App: app, Commit: "0123456789abcdef0123", SourceDir: sourceDir(t), Log: out,
			Config: pier.Config{"SAMPLE": e.sample},
		})
		done <- buildOutcome{res, err}
	}()
	var pod *corev1.Pod
	waitUntil(t, 30*time.Second, "the build pod", func() bool {
		l, err := e.admin.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: LabelApp + "=" + app})
		if err == nil && len(l.Items) == 1 {
			pod = &l.Items[0]
		}
		return pod != nil
	})
	return pod, done
}

// end writes the Pod's final status, as the kubelet would, once kwok has it
// running.
func (e *kubeBuildEnv) end(t *testing.T, pod *corev1.Pod, set func(*corev1.Pod)) {
	t.Helper()
	pods := e.admin.CoreV1().Pods(e.ns)
	waitUntil(t, 30*time.Second, "kwok to run the build pod", func() bool {
		p, err := pods.Get(context.Background(), pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		for i := range p.Status.InitContainerStatuses {
			p.Status.InitContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: now, FinishedAt: now}}
			p.Status.InitContainerStatuses[i].Ready = true
		}
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: now, FinishedAt: now}}
			p.Status.ContainerStatuses[i].Ready = false
		}
		set(p)
		_, err = pods.UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *kubeBuildEnv) outcome(t *testing.T, done <-chan buildOutcome) buildOutcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(60 * time.Second):
		t.Fatal("the build did not end after its pod did")
	}
	return buildOutcome{}
}

// assertCleanedUp: the build's Pod and Secret are deleted.
func (e *kubeBuildEnv) assertCleanedUp(t *testing.T, name string) {
	t.Helper()
	waitUntil(t, 30*time.Second, "the build pod and secret to be deleted", func() bool {
		_, perr := e.admin.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		_, serr := e.admin.CoreV1().Secrets(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(perr) && apierrors.IsNotFound(serr)
	})
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func setBuildTerminated(p *corev1.Pod, t corev1.ContainerStateTerminated) {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == "build" {
			t.StartedAt, t.FinishedAt = metav1.Now(), metav1.Now()
			p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &t}
		}
	}
}

// TestKubeBuild is Acceptance 2 of the in-cluster builds: the build Pod as
// created in the cluster, its status driving the build, its logs reaching
// the pusher, and its cleanup.
func TestKubeBuild(t *testing.T) {
	e := newKubeBuildEnv(t)
	app := "kb-" + e.ns[len(e.ns)-6:]
	repo := e.reg + "/pier/" + app
	digest := pushBuiltImage(t, repo, map[string]string{"web": "./server", "worker": "./worker"})

	var out testenv.Buffer
	pod, done := e.start(t, app, &out)
	if pod.Namespace != e.ns {
		t.Fatalf("pod in %s", pod.Namespace)
	}
	checkPod(t, pod, podWant{
		builder: "registry.example/pier/builder:1", fetchImage: "registry.example/pier/pierd:1",
		image: repo + ":git-0123456789ab", cache: repo + ":cache",
		sourceURL: "http://pierd-internal.pier.svc:9091/internal/v1/builds/" + pod.Labels[LabelBuild] + "/source",
		secret:    pod.Name, uid: 1001, gid: 1002, deadline: 420, env: []string{"SAMPLE"},
	})
	if spec := fmt.Sprintf("%+v", pod.Spec); strings.Contains(spec, e.sample) || strings.Contains(spec, "s3cret-registry-pass") {
		t.Fatal("a secret is in the pod spec")
	}
	// The per-build Secret: registry credentials, source token, config;
	// owned by the Pod.
	sec, err := e.admin.CoreV1().Secrets(e.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != corev1.SecretTypeDockerConfigJson || !strings.Contains(string(sec.Data[corev1.DockerConfigJsonKey]), e.reg) || len(sec.Data[keyToken]) != 64 || string(sec.Data["env.SAMPLE"]) != e.sample {
		t.Fatalf("build secret: type %s, keys %v", sec.Type, keysOf(sec.Data))
	}
	waitUntil(t, 10*time.Second, "the secret to be owned by the pod", func() bool {
		sec, err = e.admin.CoreV1().Secrets(e.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		return err == nil && len(sec.OwnerReferences) == 1 && sec.OwnerReferences[0].UID == pod.UID
	})
	// The source token in the Secret fetches the source while the build runs.
	token := string(sec.Data[keyToken])
	if err := fetchWith(e, pod.Labels[LabelBuild], token); err != nil {
		t.Fatalf("fetching the source with the build's token: %v", err)
	}

	// Logs stream to the pusher (kwok serves PodLogFile as every pod's log).
	line := "===> BUILDING " + e.sample
	waitUntil(t, 30*time.Second, "kwok to run the build pod", func() bool {
		p, err := e.admin.CoreV1().Pods(e.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
	appendPodLog(t, e.k.PodLogFile, line)
	waitUntil(t, 30*time.Second, "the build log to reach the pusher", func() bool { return strings.Contains(out.String(), line) })

	// Succeeded: the creator's report carries the digest.
	e.end(t, pod, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodSucceeded
		setBuildTerminated(p, corev1.ContainerStateTerminated{Reason: "Completed", Message: report(repo+":git-0123456789ab", digest)})
	})
	o := e.outcome(t, done)
	if o.err != nil {
		t.Fatalf("build: %v\n%s", o.err, out.String())
	}
	if o.res.Image != repo+"@"+digest || o.res.ProcessTypes["web"] != "./server" || o.res.ProcessTypes["worker"] != "./worker" {
		t.Fatalf("result: %+v", o.res)
	}
	e.assertCleanedUp(t, pod.Name)
	// The build is over: its token no longer fetches the source.
	if err := fetchWith(e, pod.Labels[LabelBuild], token); err == nil {
		t.Fatal("the source was fetched after the build ended")
	}
}

func TestKubeBuildFails(t *testing.T) {
	e := newKubeBuildEnv(t)
	app := "kf-" + e.ns[len(e.ns)-6:]

	// The creator fails: the push fails with its reason and last lines.
	var out testenv.Buffer
	pod, done := e.start(t, app, &out)
	e.end(t, pod, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		setBuildTerminated(p, corev1.ContainerStateTerminated{ExitCode: 51, Reason: "Error", Message: "===> DETECTING\nERROR: No buildpack groups passed detection.\n"})
	})
	o := e.outcome(t, done)
	if o.err == nil || !strings.Contains(o.err.Error(), "No buildpack groups passed detection") || !strings.Contains(o.err.Error(), "exit code 51") {
		t.Fatalf("failed build: %v", o.err)
	}
	e.assertCleanedUp(t, pod.Name)

	// The deadline passes: a clear message.
	pod, done = e.start(t, app, &out)
	e.end(t, pod, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		p.Status.Reason = "DeadlineExceeded"
		p.Status.Message = "Pod was active on the node longer than the specified deadline"
	})
	o = e.outcome(t, done)
	if o.err == nil || !strings.Contains(o.err.Error(), "did not finish within 7m0s") {
		t.Fatalf("deadline: %v", o.err)
	}
	e.assertCleanedUp(t, pod.Name)

	// Leftovers of a pierd that stopped mid-build go at start.
	b := &build{id: "left0", name: "build-" + app + "-left0", app: app, builder: "registry.example/pier/builder:1", image: "x", token: "t"}
	s, _ := e.s.secret(context.Background(), b)
	if _, err := e.admin.CoreV1().Secrets(e.ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CoreV1().Pods(e.ns).Create(context.Background(), e.s.pod(b), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.assertCleanedUp(t, b.name)
}

func fetchWith(e *kubeBuildEnv, id, token string) error {
	srv := httptest.NewServer(e.s.cfg.Sources)
	defer srv.Close()
	dir, err := os.MkdirTemp("", "fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Fetch(ctx, srv.Client(), srv.URL+SourcePathPrefix+id+"/source", token, dir)
}

func appendPodLog(t *testing.T, file, text string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), text)
}

func keysOf(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
