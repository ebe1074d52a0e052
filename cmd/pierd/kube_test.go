package main_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestKubernetesScheduler: pierd with --scheduler=kubernetes converges apps
// onto a real control plane, as the CLI user drives it: an image deployed
// with builds:create runs as a Deployment, scales, and goes with its app.
func TestKubernetesScheduler(t *testing.T) {
	kube := testenv.KubeCluster(t)
	data := newDataDir(t)
	internal := "127.0.0.1:" + freePort(t)
	d := startPierd(t, []string{"PIER_DATA_DIR=" + data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0", "PIER_INTERNAL_ADDR=" + internal},
		"controller", "--scheduler=kubernetes", "--kubeconfig", kube.Kubeconfig)
	c := newCLI(t)
	c.must("kube test password\n", "register", d.url, "--username", "ops", "--bootstrap-token-file", filepath.Join(data, "bootstrap-token"), "--password-stdin")
	var tok pier.NewServiceToken
	jsonOut(t, c.must("", "service-tokens:create", "--scope", "router", "--json"), &tok)
	c.must("", "apps:create", "kubeapp")
	c.must("", "config:set", "GREETING=hi", "-a", "kubeapp")
	if out := c.must("", "builds:create", "registry.example/team/kubeapp:v1", "-a", "kubeapp"); !strings.Contains(out, "v3") {
		t.Fatalf("builds:create:\n%s", out)
	}
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep, err := cs.AppsV1().Deployments("pier-kubeapp").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no web Deployment after builds:create: %v\n%s", err, d.out)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "registry.example/team/kubeapp:v1" {
		t.Fatalf("web runs %q", img)
	}
	if dep.Status.ReadyReplicas != 1 {
		t.Fatalf("web: %d ready, want 1 once builds:create answered", dep.Status.ReadyReplicas)
	}
	c.must("", "scale", "web=3", "-a", "kubeapp")
	if dep, err = cs.AppsV1().Deployments("pier-kubeapp").Get(ctx, "web", metav1.GetOptions{}); err != nil || dep.Status.ReadyReplicas != 3 {
		t.Fatalf("after scale web=3: %v %+v", err, dep.Status)
	}
	if out := c.must("", "ps", "-a", "kubeapp"); !strings.Contains(out, "=== web (3)") {
		t.Fatalf("ps:\n%s", out)
	}
	// Routers running alone get the app's ready pods from the controller's
	// feed: the web Service's EndpointSlices. (The pod IPs are kwok's:
	// compared, never dialled.)
	pods, err := cs.CoreV1().Pods("pier-kubeapp").List(ctx, metav1.ListOptions{LabelSelector: "pier.dev/process-type=web"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			want = append(want, net.JoinHostPort(p.Status.PodIP, "5000"))
		}
	}
	slices.Sort(want)
	eventually(t, 30*time.Second, "the router feed routes kubeapp to its 3 ready pods", func() (bool, string) {
		got := feedRoutes(t, internal, tok.Token)["kubeapp"]
		return len(got) == 3 && slices.Equal(got, want), fmt.Sprintf("feed %v, pods %v", got, want)
	})
	// A router in the cluster takes the routes from the EndpointSlices
	// itself (scheduler/kubernetes's TestEndpointsFollowSlices follows
	// them with traffic to loopback). Here: it starts on them, and a host
	// that is no app is answered without dialling anything.
	tokenFile := filepath.Join(t.TempDir(), "router.token")
	os.WriteFile(tokenFile, []byte(tok.Token), 0o600)
	r := startRouter(t, "--controller-internal", "http://"+internal, "--token-file", tokenFile, "--controller-url", d.url,
		"--domain", "pier.localhost", "--listen", "127.0.0.1:0", "--endpoints", "kubernetes", "--kubeconfig", kube.Kubeconfig)
	if !strings.Contains(r.out.String(), "EndpointSlices, from the cluster") {
		t.Fatalf("pierd router --endpoints kubernetes:\n%s", r.out)
	}
	if code, _, err := r.get("nope.pier.localhost", "/"); err != nil || code != 404 {
		t.Fatalf("an unknown app through pierd router: %d %v", code, err)
	}
	c.must("", "apps:destroy", "-a", "kubeapp", "--confirm", "kubeapp")
	// The namespace goes in the background (its pods' grace period).
	eventually(t, 30*time.Second, "namespace pier-kubeapp is being deleted", func() (bool, string) {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "pier-kubeapp", metav1.GetOptions{})
		if err != nil {
			return true, ""
		}
		return ns.DeletionTimestamp != nil, fmt.Sprint(ns.Status)
	})
	d.stop(t)
}

// kubeStart starts pierd controller --scheduler=kubernetes on data and
// port, with extra flags.
func kubeStart(t *testing.T, kube *testenv.Kube, data, port string, flags ...string) *daemon {
	t.Helper()
	args := append([]string{"controller", "--scheduler=kubernetes", "--kubeconfig", kube.Kubeconfig}, flags...)
	return startPierd(t, []string{"PIER_DATA_DIR=" + data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:" + port}, args...)
}

// freePort is a loopback port free a moment ago: a pierd restarted on the
// same data dir keeps its URL, so the CLI's login stays good.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// kubeState is what the cluster runs of one process type of an app.
type kubeState struct {
	image          string
	secret         string // the config Secret its pods read
	replicas       int32  // wanted
	ready, updated int32
}

func (k kubeState) String() string {
	return fmt.Sprintf("%s secret=%s %d wanted, %d updated, %d ready", k.image, k.secret, k.replicas, k.updated, k.ready)
}

func deployState(ctx context.Context, cs kubernetes.Interface, app, typ string) (kubeState, error) {
	dep, err := cs.AppsV1().Deployments("pier-"+app).Get(ctx, typ, metav1.GetOptions{})
	if err != nil {
		return kubeState{}, err
	}
	st := kubeState{image: dep.Spec.Template.Spec.Containers[0].Image, ready: dep.Status.ReadyReplicas, updated: dep.Status.UpdatedReplicas}
	if dep.Spec.Replicas != nil {
		st.replicas = *dep.Spec.Replicas
	}
	if dep.Status.ObservedGeneration != dep.Generation {
		st.updated = -1 // not yet seen by the controller-manager
	}
	for _, e := range dep.Spec.Template.Spec.Containers[0].EnvFrom {
		if e.SecretRef != nil {
			st.secret = e.SecretRef.Name
		}
	}
	return st, nil
}

// settled waits until app's typ Deployment runs image with n pods, all
// updated and ready (and, if secret is set, reads that Secret).
func settled(t *testing.T, cs kubernetes.Interface, app, typ, image, secret string, n int32, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	eventually(t, timeout, fmt.Sprintf("%s of %s runs %s ×%d", typ, app, image, n), func() (bool, string) {
		st, err := deployState(ctx, cs, app, typ)
		if err != nil {
			return false, err.Error()
		}
		return st.image == image && (secret == "" || st.secret == secret) && st.replicas == n && st.updated == n && st.ready == n, st.String()
	})
}

// TestKubernetesAutoRollback is acceptance point 2 through pierd on a real
// control plane: a release whose pods never become Ready is marked failed
// once the rollout deadline passes, and the previous release is restored,
// with an event saying why; the command exits non-zero saying so.
func TestKubernetesAutoRollback(t *testing.T) {
	kube := testenv.KubeCluster(t)
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	data := newDataDir(t)
	d := kubeStart(t, kube, data, "0", "--rollout-timeout=8s")
	c := newCLI(t)
	c.must("kube test password\n", "register", d.url, "--username", "ops", "--bootstrap-token-file", filepath.Join(data, "bootstrap-token"), "--password-stdin")
	c.must("", "apps:create", "rollback")
	good := "registry.example/team/rollback:v1"
	c.must("", "builds:create", good, "-a", "rollback") // v2
	settled(t, cs, "rollback", "web", good, "", 1, 30*time.Second)

	// A new image whose pods never become Ready: builds:create fails after
	// the deadline; v3 is on record as failed, v2 still runs.
	out, err := c.run("", "builds:create", testenv.NeverReadyImage, "-a", "rollback")
	if err == nil || !strings.Contains(out, "did not come up") {
		t.Fatalf("builds:create of an image that never becomes ready: %v\n%s", err, out)
	}
	settled(t, cs, "rollback", "web", good, "config-v2", 1, 30*time.Second)
	var rels []pier.Release
	jsonOut(t, c.must("", "releases", "-a", "rollback", "--json"), &rels)
	if rels[0].Version != 3 || rels[0].Status != pier.ReleaseFailed || !strings.Contains(rels[0].Failure, "web") {
		t.Fatalf("releases after a deploy that never became ready: %+v", rels)
	}

	// A config change rolls out (v4); then a rollback to v3, the image
	// that never becomes ready: the pending v5 is marked failed and v4,
	// with its config, restored by the platform.
	c.must("", "config:set", "GREETING=hi", "-a", "rollback")
	settled(t, cs, "rollback", "web", good, "config-v4", 1, 30*time.Second)
	out, err = c.run("", "releases:rollback", "v3", "-a", "rollback")
	if err == nil || !strings.Contains(out, "release v5 failed, so v4 was restored") {
		t.Fatalf("rollback to a release that never becomes ready: %v\n%s", err, out)
	}
	settled(t, cs, "rollback", "web", good, "config-v4", 1, 30*time.Second)
	jsonOut(t, c.must("", "releases", "-a", "rollback", "--json"), &rels)
	if rels[0].Version != 5 || rels[0].Status != pier.ReleaseFailed || rels[1].Version != 4 || rels[1].Status != pier.ReleaseSucceeded {
		t.Fatalf("releases after the failed rollback: %+v", rels[:2])
	}
	if out := c.must("", "config", "-a", "rollback"); !strings.Contains(out, "GREETING") {
		t.Fatalf("v4's config is not current again:\n%s", out)
	}
	if out := c.must("", "events", "-a", "rollback"); !strings.Contains(out, "release v5 failed") || !strings.Contains(out, "v4 restored") {
		t.Fatalf("no event says why v5 was undone:\n%s", out)
	}
	d.stop(t)
}

// TestKubernetesConvergence is acceptance point 3: pierd killed while a
// rollout is under way comes back to what Postgres says with no duplicate
// objects; onto an empty cluster it re-creates every app; and what runs of
// an app that no longer exists is removed, while a namespace Pier did not
// make is left alone.
func TestKubernetesConvergence(t *testing.T) {
	kube := testenv.KubeCluster(t)
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	ctx := context.Background()
	data := newDataDir(t)
	port := freePort(t)
	d := kubeStart(t, kube, data, port)
	c := newCLI(t)
	c.must("kube test password\n", "register", d.url, "--username", "ops", "--bootstrap-token-file", filepath.Join(data, "bootstrap-token"), "--password-stdin")
	imgA, imgB := "registry.example/team/conv-a:v1", "registry.example/team/conv-b:v1"
	c.must("", "apps:create", "conv-a")
	c.must("", "scale", "web=2", "-a", "conv-a") // before the build: it stands
	c.must("", "builds:create", imgA, "-a", "conv-a")
	c.must("", "apps:create", "conv-b")
	c.must("", "builds:create", imgB, "-a", "conv-b")
	settled(t, cs, "conv-a", "web", imgA, "config-v2", 2, 30*time.Second)
	settled(t, cs, "conv-b", "web", imgB, "config-v2", 1, 30*time.Second)

	// What runs of an app destroyed while pierd was down, and a namespace
	// of someone else's that only looks like an app's.
	labels := map[string]string{"app.kubernetes.io/managed-by": "pier", "pier.dev/app": "ghost"}
	for name, l := range map[string]map[string]string{"pier-ghost": labels, "pier-foreign": nil} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Killed mid-rollout, twice over: conv-a's deploy of an image that
	// never becomes ready (not released: the restart goes back to v2), and
	// conv-b's config change (released, pending: the restart finishes it).
	deployA := exec.Command(filepath.Join(binDir, "pier"), "builds:create", testenv.NeverReadyImage, "-a", "conv-a")
	deployA.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.config, "HOME="+c.config)
	if err := deployA.Start(); err != nil {
		t.Fatal(err)
	}
	defer deployA.Process.Kill()
	eventually(t, 30*time.Second, "conv-a's rollout of the new image starts", func() (bool, string) {
		st, err := deployState(ctx, cs, "conv-a", "web")
		return err == nil && st.image == testenv.NeverReadyImage, fmt.Sprint(st, err)
	})
	setB := exec.Command(filepath.Join(binDir, "pier"), "config:set", "COLOUR=blue", "-a", "conv-b")
	setB.Env = deployA.Env
	if err := setB.Start(); err != nil {
		t.Fatal(err)
	}
	defer setB.Process.Kill()
	eventually(t, 30*time.Second, "conv-b's rollout of v3 starts", func() (bool, string) {
		st, err := deployState(ctx, cs, "conv-b", "web")
		return err == nil && st.secret == "config-v3", fmt.Sprint(st, err)
	})
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
	deployA.Wait()
	setB.Wait()

	d = kubeStart(t, kube, data, port)
	settled(t, cs, "conv-a", "web", imgA, "config-v2", 2, time.Minute)
	settled(t, cs, "conv-b", "web", imgB, "config-v3", 1, time.Minute)
	var rels []pier.Release
	eventually(t, 30*time.Second, "conv-b's v3 is succeeded", func() (bool, string) {
		jsonOut(t, c.must("", "releases", "-a", "conv-b", "--json"), &rels)
		return rels[0].Version == 3 && rels[0].Status == pier.ReleaseSucceeded, fmt.Sprintf("%+v", rels[0])
	})
	jsonOut(t, c.must("", "releases", "-a", "conv-a", "--json"), &rels)
	if rels[0].Version != 2 {
		t.Fatalf("conv-a's releases after the restart: %+v", rels[0])
	}
	for app, secrets := range map[string]string{"conv-a": "config-v2", "conv-b": "config-v3"} {
		checkNoDuplicates(t, cs, app, secrets)
	}
	eventually(t, time.Minute, "pier-ghost is deleted", func() (bool, string) {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "pier-ghost", metav1.GetOptions{})
		return err != nil || ns.DeletionTimestamp != nil, fmt.Sprint(err)
	})
	if ns, err := cs.CoreV1().Namespaces().Get(ctx, "pier-foreign", metav1.GetOptions{}); err != nil || ns.DeletionTimestamp != nil {
		t.Fatalf("pier-foreign, not Pier's, was touched: %v %+v", err, ns)
	}
	d.stop(t)

	// An empty cluster: every app namespace gone while pierd is down.
	emptyCluster(t, cs, "pier-conv-a", "pier-conv-b")
	d = kubeStart(t, kube, data, port)
	settled(t, cs, "conv-a", "web", imgA, "config-v2", 2, time.Minute)
	settled(t, cs, "conv-b", "web", imgB, "config-v3", 1, time.Minute)
	checkNoDuplicates(t, cs, "conv-b", "config-v3")
	if out := c.must("", "ps", "-a", "conv-a"); !strings.Contains(out, "=== web (2)") {
		t.Fatalf("ps after the re-creation:\n%s", out)
	}

	// Deleted behind Pier's back while pierd runs: a Deployment, and a
	// whole namespace, come back by themselves.
	if err := cs.AppsV1().Deployments("pier-conv-b").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	emptyCluster(t, cs, "pier-conv-a")
	settled(t, cs, "conv-b", "web", imgB, "config-v3", 1, time.Minute)
	settled(t, cs, "conv-a", "web", imgA, "config-v2", 2, 2*time.Minute)
	checkNoDuplicates(t, cs, "conv-a", "config-v2")
	d.stop(t)
}

// checkNoDuplicates: the app has one Deployment (web), one Service, and the
// one config Secret of its current release.
func checkNoDuplicates(t *testing.T, cs kubernetes.Interface, app, secret string) {
	t.Helper()
	ctx := context.Background()
	ns := "pier-" + app
	deps, err1 := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	svcs, err2 := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	secs, err3 := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=pier"})
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range secs.Items {
		names = append(names, s.Name)
	}
	if len(deps.Items) != 1 || deps.Items[0].Name != "web" || len(svcs.Items) != 1 || len(names) != 1 || names[0] != secret {
		t.Fatalf("%s: %d Deployments, %d Services, Secrets %v; want web, one Service and %s", app, len(deps.Items), len(svcs.Items), names, secret)
	}
}

// emptyCluster deletes the namespaces and waits until they are gone (or,
// with pierd running, made anew). Their pods are deleted first with no
// grace period: kwok would otherwise wait out each pod's 30 s.
func emptyCluster(t *testing.T, cs kubernetes.Interface, namespaces ...string) {
	t.Helper()
	ctx := context.Background()
	zero := int64(0)
	uids := map[string]types.UID{}
	for _, ns := range namespaces {
		got, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uids[ns] = got.UID
		if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 2*time.Minute, "the app namespaces are gone", func() (bool, string) {
		for _, ns := range namespaces {
			if got, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil && got.UID == uids[ns] {
				return false, ns + " is still there"
			}
		}
		return true, ""
	})
}

// feedRoutes reads the first snapshot of the controller's router feed.
func feedRoutes(t *testing.T, internal, token string) map[string][]string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+internal+"/internal/v1/router/watch", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var routes map[string][]string
	errFirst := errors.New("first snapshot read")
	err = client.DecodeRouterFrames(res.Body, func(fr pier.RouterFrame) error {
		if fr.Type == pier.RouterFrameSnapshot && fr.State != nil {
			routes = fr.State.Routes
			return errFirst
		}
		return nil
	})
	if !errors.Is(err, errFirst) {
		t.Fatalf("router feed: %v (status %s)", err, res.Status)
	}
	return routes
}
