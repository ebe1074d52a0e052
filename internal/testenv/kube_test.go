package testenv_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier/internal/testenv"
)

// kubeClient returns the shared control plane and a client with test
// limits, and a fresh namespace removed after the test.
func kubeClient(t *testing.T) (*testenv.Kube, kubernetes.Interface, string) {
	t.Helper()
	k := testenv.KubeCluster(t)
	if k.Config.QPS != 0 || k.Config.Burst != 0 {
		t.Errorf("Config has QPS %v, Burst %d; want them left at zero", k.Config.QPS, k.Config.Burst)
	}
	k.Config.QPS, k.Config.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("t-%d", time.Now().UnixNano())
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return k, cs, ns
}

func deployment(name string, replicas int32, podAnnotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "web",
					Image: "pier.localhost/" + name + ":v1", // never pulled: kwok runs nothing
				}}},
			},
		},
	}
}

func TestKubeClusterConfig(t *testing.T) {
	k := testenv.KubeCluster(t)
	if len(k.Nodes) == 0 {
		t.Fatal("no nodes")
	}
	data, err := os.ReadFile(k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), k.Config.Host) || !strings.Contains(string(data), k.Config.BearerToken) {
		t.Fatalf("kubeconfig does not name %s and the token:\n%s", k.Config.Host, data)
	}
	if !strings.HasPrefix(k.Config.Host, "https://127.0.0.1:") {
		t.Fatalf("apiserver at %s, want loopback", k.Config.Host)
	}
	// Each call hands out its own Config.
	if k2 := testenv.KubeCluster(t); k2.Config == k.Config || k2.Config.Host != k.Config.Host {
		t.Fatalf("second call: Config %p host %s; first %p host %s", k2.Config, k2.Config.Host, k.Config, k.Config.Host)
	}
	// Clients verify the apiserver's certificate.
	cs, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != testenv.KubernetesVersion {
		t.Errorf("server version %s, want %s", v.GitVersion, testenv.KubernetesVersion)
	}
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != len(k.Nodes) {
		t.Fatalf("%d nodes, want %v", len(nodes.Items), k.Nodes)
	}
	for _, n := range nodes.Items {
		var ip string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		if ip != "127.0.0.1" {
			t.Errorf("node %s: InternalIP %q, want 127.0.0.1", n.Name, ip)
		}
	}
}

func TestKubeDeploymentBecomesReady(t *testing.T) {
	t.Parallel()
	k, cs, ns := kubeClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("web", 3, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var d *appsv1.Deployment
	for {
		var err error
		d, err = cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s := d.Status
		if s.ObservedGeneration == d.Generation && s.UpdatedReplicas == 3 && s.ReadyReplicas == 3 && s.AvailableReplicas == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("deployment not 3/3 ready: %+v", s)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("deployment 3/3 ready in %s", time.Since(start).Round(time.Millisecond))
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("%d pods, want 3", len(pods.Items))
	}
	nodes := map[string]bool{}
	for _, n := range k.Nodes {
		nodes[n] = true
	}
	for _, p := range pods.Items {
		if !nodes[p.Spec.NodeName] || p.Status.Phase != corev1.PodRunning || !podReady(&p) {
			t.Errorf("pod %s: node %q phase %s ready %v", p.Name, p.Spec.NodeName, p.Status.Phase, podReady(&p))
		}
		// Fake pod IPs from kwok's CIDR, never loopback (tests must not
		// mistake them for something to connect to); the host is the node.
		if !strings.HasPrefix(p.Status.PodIP, "10.0.") || p.Status.HostIP != "127.0.0.1" {
			t.Errorf("pod %s: pod IP %q host IP %q, want 10.0.x.x and 127.0.0.1", p.Name, p.Status.PodIP, p.Status.HostIP)
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestKubeNeverReady shows how a test gets a rollout that never becomes
// available.
func TestKubeNeverReady(t *testing.T) {
	t.Parallel()
	_, cs, ns := kubeClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := deployment("stuck", 2, testenv.NeverReadyAnnotations())
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Wait until kwok has taken the pods as far as it will (a pod IP, the
	// Initialized condition), then a little longer than any stage delay.
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created := 0
		for _, p := range pods.Items {
			if p.Status.PodIP != "" {
				created++
			}
		}
		if created == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pods not created: %+v", pods.Items)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	got, err := cs.AppsV1().Deployments(ns).Get(ctx, "stuck", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Replicas != 2 || got.Status.ReadyReplicas != 0 || got.Status.AvailableReplicas != 0 {
		t.Fatalf("status %+v, want 2 replicas, none ready", got.Status)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodPending || podReady(&p) {
			t.Errorf("pod %s: phase %s ready %v, want Pending and not ready", p.Name, p.Status.Phase, podReady(&p))
		}
	}
}

func TestKubePodLogs(t *testing.T) {
	t.Parallel()
	k, cs, ns := kubeClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "logger"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "pier.localhost/logger:v1",
		}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "logger", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodRunning {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pod not running: %+v", p.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}

	first := fmt.Sprintf("first line %d", time.Now().UnixNano())
	appendLog(t, k.PodLogFile, first)
	out, err := cs.CoreV1().Pods(ns).GetLogs("logger", &corev1.PodLogOptions{Container: "web"}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), first+"\n") {
		t.Fatalf("logs %q do not hold %q", out, first)
	}

	// Follow: a line appended later reaches the stream.
	stream, err := cs.CoreV1().Pods(ns).GetLogs("logger", &corev1.PodLogOptions{Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(want string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if l == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %q on the followed stream", want)
			}
		}
	}
	next(first)
	second := fmt.Sprintf("second line %d", time.Now().UnixNano())
	start := time.Now()
	appendLog(t, k.PodLogFile, second)
	next(second)
	t.Logf("appended line reached the follower in %s", time.Since(start).Round(time.Millisecond))
}

func appendLog(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), line); err != nil {
		t.Fatal(err)
	}
}
