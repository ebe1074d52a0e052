package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Kube is a running control plane: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok with a few fake nodes, all on loopback.
//
// Pods are never really run: kwok marks them scheduled, Running and Ready
// (each pod stage takes 0.1–1 s here; see NeverReadyAnnotations for a pod
// that never becomes Ready), and pod and Service IPs are fake 10.x
// addresses that no test may connect to. A deleted pod is removed within
// its termination grace period (30 s by default). Every pod's log is
// PodLogFile.
type Kube struct {
	Kubeconfig string       // path of an admin kubeconfig (static token)
	Config     *rest.Config // the same, for client-go (QPS/Burst left at zero for callers to set)
	PodLogFile string       // a CRI-format log file that kwok serves (ClusterLogs, follow: true) as the log of every pod; append lines "<RFC3339Nano> stdout F <text>\n" and followers see them
	Nodes      []string     // names of the kwok nodes

	// Dir is the control plane's temp dir (data, kubeconfig, logs/ with each
	// component's output), removed by Stop.
	Dir string

	procs    []*kubeProc
	keep     bool
	borrowed bool // a copy handed out by KubeCluster: Stop does nothing
	exitc    chan error
}

// NeverReadyAnnotations returns pod annotations (for a Deployment: put them
// on its pod template) that delay kwok's pod-ready stage by ten years: the
// pod is scheduled, gets a pod IP and stays Pending with Ready=False
// (ContainersNotReady), so a rollout of such pods never becomes available.
// Both keys are needed: kwok waits delay plus a random part of
// (jitter-delay - delay), or jitter-delay alone when it is the shorter.
// The same pair with a shorter duration ("20s") delays readiness by that
// much; pod-create.stage.kwok.x-k8s.io/... delays the earlier stage.
func NeverReadyAnnotations() map[string]string {
	return map[string]string{
		"pod-ready.stage.kwok.x-k8s.io/delay":        "87600h",
		"pod-ready.stage.kwok.x-k8s.io/jitter-delay": "87600h",
	}
}

// KubeOptions configures StartKube.
type KubeOptions struct {
	Nodes    int       // kwok nodes; default 3
	Progress io.Writer // build and start progress; nil: none
	// Keep leaves Dir in place after Stop (for reading component logs).
	Keep bool
}

// The control plane's client limits: high enough for a benchmark of a
// thousand apps with three replicas each.
const (
	kubeControllerQPS   = 200
	kubeControllerBurst = 400
	kwokParallelism     = 16
)

// EnvKubeKeep, when set to 1, keeps each test control plane's temp dir
// (component logs, etcd data) after the tests, and logs where it is.
const EnvKubeKeep = "PIER_KUBE_KEEP"

var (
	kubeMu     sync.Mutex
	kubeShared *Kube
	kubeErr    error
	kubeSkip   string
)

// KubeCluster returns the control plane shared by the tests of this test binary, starting it on
// first use (it is stopped by testenv.Main after the tests). In -short mode it skips the test,
// unless CI=true; with CI=true a missing dependency fails instead of skipping.
//
// Each call returns its own copy of Kube and Config, so a test may change
// Config (QPS, Burst) freely. The cluster is shared: use unique namespaces
// or names, and unique text in PodLogFile.
//
// The binaries are built by `make kube` (make test depends on it); when
// they are missing, KubeCluster builds them (10–30 minutes, longer than go
// test's default timeout).
func KubeCluster(t testing.TB) *Kube {
	t.Helper()
	if testing.Short() && !isCI() {
		t.Skip("skipping Kubernetes control plane tests in -short mode")
	}
	if !mainCalled.Load() {
		t.Fatal("testenv.KubeCluster needs the package's TestMain to call testenv.Main(m), which stops the control plane after the tests")
	}
	kubeMu.Lock()
	defer kubeMu.Unlock()
	if kubeShared == nil && kubeErr == nil && kubeSkip == "" {
		kubeShared, kubeSkip, kubeErr = startShared(t)
	}
	if kubeSkip != "" {
		if isCI() {
			t.Fatal(kubeSkip + " (CI=true: not skipping)")
		}
		t.Skip(kubeSkip)
	}
	if kubeErr != nil {
		t.Fatalf("testenv: starting the Kubernetes control plane: %v", kubeErr)
	}
	k := *kubeShared
	k.Config = rest.CopyConfig(kubeShared.Config)
	k.Nodes = append([]string(nil), kubeShared.Nodes...)
	k.procs, k.borrowed = nil, true // only Main stops the shared one
	return &k
}

func startShared(t testing.TB) (k *Kube, skip string, err error) {
	if _, ok := KubeBuilt(); !ok {
		if _, err := exec.LookPath("go"); err != nil {
			return nil, "the Kubernetes control plane is not built and there is no go command to build it: run `make kube`", nil
		}
		t.Logf("testenv: building the Kubernetes control plane (10–30 minutes; `make kube` does this before the tests)")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		if _, err := BuildKube(ctx, os.Stderr); err != nil {
			return nil, fmt.Sprintf("cannot build the Kubernetes control plane (run `make kube`): %v", err), nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	k, err = StartKube(ctx, KubeOptions{Keep: os.Getenv(EnvKubeKeep) == "1"})
	if err != nil {
		return nil, "", err
	}
	t.Logf("testenv: Kubernetes control plane started in %s (%s)", time.Since(start).Round(time.Millisecond), k.Dir)
	return k, "", nil
}

// stopKube stops the shared control plane, if this process started one.
func stopKube() error {
	kubeMu.Lock()
	defer kubeMu.Unlock()
	if kubeShared == nil {
		return nil
	}
	err := kubeShared.Stop()
	if kubeShared.Dir != "" && os.Getenv(EnvKubeKeep) == "1" {
		fmt.Fprintf(os.Stderr, "testenv: kept the control plane's files in %s\n", kubeShared.Dir)
	}
	kubeShared = nil
	return err
}

type kubeProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

func (p *kubeProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// StartKube starts a new control plane (building the binaries first if
// the cache lacks them) and waits until it is ready: the apiserver
// answers /readyz, kwok's CRDs and the ClusterLogs object exist, and every
// node is Ready without the not-ready taint. Stop it with Stop.
func StartKube(ctx context.Context, opts KubeOptions) (_ *Kube, err error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	cache, err := BuildKube(ctx, progress)
	if err != nil {
		return nil, err
	}
	removeOrphans()
	dir, err := os.MkdirTemp("", kubeDirPrefix)
	if err != nil {
		return nil, err
	}
	// Records who owns dir, for removeOrphans.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	k := &Kube{Dir: dir, keep: opts.Keep, exitc: make(chan error, 8)}
	defer func() {
		if err != nil {
			k.stop(opts.Keep)
			if opts.Keep {
				err = fmt.Errorf("%w (files kept in %s)", err, dir)
			}
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kwokPort := ports[0], ports[1], ports[2], ports[3]
	bin := func(name string) string { return filepath.Join(cache, "bin", name) }
	step := func(format string, args ...any) {
		fmt.Fprintf(progress, format+"\n", args...)
	}

	// etcd.
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	step("starting etcd on %s", etcdURL)
	etcd, err := k.start("etcd", bin("etcd"),
		"--name=pier",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=pier="+peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync=true", // throwaway data
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := waitFor(ctx, etcd, "etcd /health", func() (bool, error) {
		resp, err := plain.Get(etcdURL + "/health")
		if err != nil {
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200 && bytes.Contains(body, []byte(`"true"`)), nil
	}); err != nil {
		return nil, err
	}

	// kube-apiserver, with a static admin token and a service-account key
	// made here.
	token, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "pki")
	apiURL := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	step("starting kube-apiserver on %s", apiURL)
	apiserver, err := k.start("kube-apiserver", bin("kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none", // a loopback advertise address is refused otherwise
		"--cert-dir="+certDir,             // self-signed serving certificate
		"--token-auth-file="+tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--max-requests-inflight=1000",
		"--max-mutating-requests-inflight=500",
		"--profiling=false",
	)
	if err != nil {
		return nil, err
	}
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // only to poll for readiness; clients verify
	}}
	var lastReadyz string
	if err := waitFor(ctx, apiserver, "kube-apiserver /readyz", func() (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", apiURL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := insecure.Do(req)
		if err != nil {
			lastReadyz = err.Error()
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lastReadyz = fmt.Sprintf("%d %s", resp.StatusCode, body)
		return resp.StatusCode == 200, nil
	}); err != nil {
		return nil, fmt.Errorf("%w; last answer: %s", err, lastReadyz)
	}
	insecure.CloseIdleConnections()
	// The self-signed serving certificate file holds the certificate and
	// the CA that signed it.
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return nil, err
	}
	k.Config = &rest.Config{
		Host:            apiURL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
	}
	k.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(k.Kubeconfig, kubeconfig(apiURL, ca, token), 0o600); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(k.Config)
	cfg.QPS, cfg.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}

	// kube-controller-manager and kube-scheduler, with raised client limits.
	step("starting kube-controller-manager and kube-scheduler")
	if _, err := k.start("kube-controller-manager", bin("kube-controller-manager"),
		"--kubeconfig="+k.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*,-nodeipam", // nodeipam needs a cluster CIDR; nodelifecycle must stay (it lifts the not-ready taint)
		"--service-account-private-key-file="+saKey,
		"--kube-api-qps="+strconv.Itoa(kubeControllerQPS),
		"--kube-api-burst="+strconv.Itoa(kubeControllerBurst),
		"--concurrent-deployment-syncs=20",
		"--concurrent-replicaset-syncs=20",
		"--concurrent-service-endpoint-syncs=20",
		"--concurrent-namespace-syncs=20",
	); err != nil {
		return nil, err
	}
	schedConfig := filepath.Join(dir, "scheduler.yaml")
	if err := os.WriteFile(schedConfig, fmt.Appendf(nil, `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: %d
  burst: %d
leaderElection:
  leaderElect: false
`, k.Kubeconfig, kubeControllerQPS, kubeControllerBurst), 0o644); err != nil {
		return nil, err
	}
	if _, err := k.start("kube-scheduler", bin("kube-scheduler"),
		"--config="+schedConfig,
		"--secure-port=0",
	); err != nil {
		return nil, err
	}

	// kwok's CRDs (ClusterLogs, Logs), and one ClusterLogs for every pod.
	step("applying kwok's CRDs")
	if err := applyKwokCRDs(ctx, dyn, filepath.Join(cache, "kwok", "crds")); err != nil {
		return nil, err
	}
	k.PodLogFile = filepath.Join(dir, "pods.log")
	if err := os.WriteFile(k.PodLogFile, nil, 0o644); err != nil {
		return nil, err
	}
	if err := createClusterLogs(ctx, dyn, k.PodLogFile); err != nil {
		return nil, err
	}

	// kwok: its configuration (parallelism) and stages.
	stages, err := os.ReadFile(filepath.Join(cache, "kwok", "stages.yaml"))
	if err != nil {
		return nil, err
	}
	kwokConfig := filepath.Join(dir, "kwok.yaml")
	kc, err := kwokConfiguration(stages)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(kwokConfig, kc, 0o644); err != nil {
		return nil, err
	}
	step("starting kwok, serving pod logs on 127.0.0.1:%d", kwokPort)
	// Its own work dir: no ~/.kwok/kwok.yaml of the user's is merged in.
	kwok, err := k.startEnv("kwok", bin("kwok"), []string{"KWOK_WORKDIR=" + filepath.Join(dir, "kwok")},
		"--kubeconfig="+k.Kubeconfig,
		"--config="+kwokConfig,
		"--manage-all-nodes=true",
		"--node-lease-duration-seconds=40", // without leases the node lifecycle controller marks every pod NotReady
		"--node-ip=127.0.0.1",              // nodes get InternalIP 127.0.0.1: the apiserver fetches logs from kwok on loopback
		"--node-port="+strconv.Itoa(kwokPort),
		"--server-address="+fmt.Sprintf("127.0.0.1:%d", kwokPort),
		"--enable-crds=ClusterLogs,Logs",
	)
	if err != nil {
		return nil, err
	}

	// Nodes.
	for i := 0; i < opts.Nodes; i++ {
		name := fmt.Sprintf("kwok-node-%d", i)
		_, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
			Annotations: map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
		}}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("creating node %s: %w", name, err)
		}
		k.Nodes = append(k.Nodes, name)
	}
	step("waiting for %d nodes to be Ready", opts.Nodes)
	var nodeState string
	if err := waitFor(ctx, kwok, "nodes Ready", func() (bool, error) {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			nodeState = err.Error()
			return false, nil
		}
		ready := 0
		var states []string
		for _, n := range list.Items {
			ok := nodeReady(&n)
			if ok {
				ready++
			}
			states = append(states, fmt.Sprintf("%s ready=%v taints=%v", n.Name, ok, n.Spec.Taints))
		}
		nodeState = strings.Join(states, "; ")
		return ready == opts.Nodes, nil
	}); err != nil {
		return nil, fmt.Errorf("%w; nodes: %s", err, nodeState)
	}
	for _, p := range k.procs {
		if p.exited() {
			return nil, p.failure()
		}
	}
	return k, nil
}

const (
	kubeDirPrefix = "pier-kube-"
	ownerFile     = "owner.pid"
)

// removeOrphans removes the temp dirs of control planes whose process died
// without stopping them (a killed go test: the kernel killed the
// components, but nobody removed their data).
func removeOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), kubeDirPrefix+"*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// nodeReady: Ready, with addresses, and without the taints that keep pods
// off a node that is not ready yet.
func nodeReady(n *corev1.Node) bool {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Key == "node.kubernetes.io/not-ready" || t.Key == "node.kubernetes.io/unreachable" {
			return false
		}
	}
	return ready && len(n.Status.Addresses) > 0
}

// Stop kills the control plane's processes and removes its temp dir
// (unless KubeOptions.Keep). The data is throwaway, so the processes are
// killed outright.
func (k *Kube) Stop() error {
	return k.stop(k.keep)
}

// Exited delivers an error when a component of the control plane exits
// (before Stop).
func (k *Kube) Exited() <-chan error { return k.exitc }

func (k *Kube) stop(keep bool) error {
	if k.borrowed {
		return nil
	}
	// Reverse order: kwok first, etcd last.
	for i := len(k.procs) - 1; i >= 0; i-- {
		p := k.procs[i]
		if !p.exited() {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, p := range k.procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
	k.procs = nil
	if k.Dir == "" {
		return nil
	}
	if keep || os.Getenv(EnvKubeKeep) == "1" {
		os.Remove(filepath.Join(k.Dir, ownerFile)) // kept: no orphan
		return nil
	}
	return os.RemoveAll(k.Dir)
}

// start runs a component in its own process group, killed when this
// process dies (where the OS allows), with its output in logs/<name>.log.
func (k *Kube) start(name, path string, args ...string) (*kubeProc, error) {
	return k.startEnv(name, path, nil, args...)
}

func (k *Kube) startEnv(name, path string, env []string, args ...string) (*kubeProc, error) {
	logPath := filepath.Join(k.Dir, "logs", name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Dir = k.Dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(childEnv(), env...)
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &kubeProc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		select {
		case k.exitc <- p.failure():
		default:
		}
	}()
	k.procs = append(k.procs, p)
	return p, nil
}

// childEnv is this process's environment without what would point the
// components elsewhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "ETCD_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *kubeProc) failure() error {
	return fmt.Errorf("%s exited (%v); the end of its log %s:\n%s", p.name, p.err, p.log, tail(p.log, 30))
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds, ctx ends or p exits.
func waitFor(ctx context.Context, p *kubeProc, what string, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("waiting for %s: %w", what, p.failure())
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("waiting for %s: %w", what, ctx.Err())
			if p != nil {
				err = fmt.Errorf("%w; the end of %s's log:\n%s", err, p.name, tail(p.log, 30))
			}
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writeRSAKey writes a new RSA key for signing service-account tokens (the
// apiserver reads its public half from the same file).
func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return os.WriteFile(path, data, 0o600)
}

func kubeconfig(server string, ca []byte, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: pier-kube
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: pier-kube
  context:
    cluster: pier-kube
    user: admin
current-context: pier-kube
`, server, base64.StdEncoding.EncodeToString(ca), token)
}

// Pod stages take 1–5 s each as kwok ships them (two stages to Ready);
// here 0.1–1 s, so rollouts in tests are quick. Annotations on a pod
// still override them (NeverReadyAnnotations).
var (
	stageDelay  = regexp.MustCompile(`(?m)^(\s+)durationMilliseconds: 1000$`)
	stageJitter = regexp.MustCompile(`(?m)^(\s+)jitterDurationMilliseconds: 5000$`)
)

func kwokConfiguration(stages []byte) ([]byte, error) {
	var b bytes.Buffer
	// A KwokConfiguration read from a file is not defaulted: every option
	// kwok defaults is spelled out (a missing cidr gives every pod the node's
	// IP, 127.0.0.1; missing enableDebuggingHandlers turns pod logs off).
	fmt.Fprintf(&b, `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 10.0.0.0/16
  enableDebuggingHandlers: true
  enableContentionProfiling: false
  enableProfilingHandler: false
  podPlayStageParallelism: %d
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
`, kwokParallelism)
	stages = stageDelay.ReplaceAll(stages, []byte("${1}durationMilliseconds: 100"))
	stages = stageJitter.ReplaceAll(stages, []byte("${1}jitterDurationMilliseconds: 1000"))
	stages, err := neverReadyStage(stages)
	if err != nil {
		return nil, err
	}
	b.WriteString("---\n")
	b.Write(stages)
	return b.Bytes(), nil
}

// NeverReadyImage is an image whose pods never become Ready on the test
// cluster (kwok's pod-ready stage skips them), as a real image that fails
// its readiness probe or never pulls would: what a test deploys through
// pierd, which puts no annotations of a test's on its pods, to see a
// rollout fail.
const NeverReadyImage = "registry.example/pier/never-ready:1"

// neverReadyStage adds to the pod-ready stage's selector that the first
// container's image is not NeverReadyImage.
func neverReadyStage(stages []byte) ([]byte, error) {
	s := string(stages)
	const sel = "  selector:\n    matchExpressions:\n"
	at := strings.Index(s, "name: pod-ready\n")
	i := -1
	if at >= 0 {
		i = strings.Index(s[at:], sel)
	}
	if i < 0 {
		return nil, errors.New("kwok's stages have no pod-ready stage with a selector of matchExpressions: NeverReadyImage needs one (a kwok upgrade?)")
	}
	i += at + len(sel)
	return []byte(s[:i] + "    - key: '.spec.containers.[0].image'\n      operator: 'NotIn'\n      values:\n      - '" + NeverReadyImage + "'\n" + s[i:]), nil
}

var (
	crdGVR         = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	clusterLogsGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterlogs"}
)

func applyKwokCRDs(ctx context.Context, dyn dynamic.Interface, dir string) error {
	var names []string
	for _, c := range kwokCRDs {
		data, err := os.ReadFile(filepath.Join(dir, c))
		if err != nil {
			return err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(data, &obj); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, err := dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	for _, name := range names {
		err := waitFor(ctx, nil, "CRD "+name+" established", func() (bool, error) {
			u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func createClusterLogs(ctx context.Context, dyn dynamic.Interface, logFile string) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "ClusterLogs",
		"metadata":   map[string]any{"name": "all-pods"},
		"spec": map[string]any{
			// No selector: every pod in every namespace; no containers:
			// every container.
			"logs": []any{map[string]any{"logsFile": logFile, "follow": true}},
		},
	}}
	return waitFor(ctx, nil, "the ClusterLogs resource", func() (bool, error) {
		_, err := dyn.Resource(clusterLogsGVR).Create(ctx, u, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return true, nil
		}
		if apierrors.IsNotFound(err) {
			return false, nil // the new resource is not served yet
		}
		return false, err
	})
}
