// Package helm holds the tests of Pier's Helm chart (deploy/helm/pier) and
// of the plain manifests rendered from it (deploy/manifests/pier.yaml).
package helm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	gossh "golang.org/x/crypto/ssh"

	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	chartDir      = "pier"
	manifestsFile = "../manifests/pier.yaml"
	// EnvUpdateManifests=1 makes TestManifestsUpToDate write the manifests
	// instead of comparing them (`make manifests`).
	EnvUpdateManifests = "PIER_UPDATE_MANIFESTS"
)

const manifestsHeader = `# Pier on Kubernetes, for kubectl: deploy/helm/pier rendered with its default
# values (release pier, namespace pier) by ` + "`make manifests`" + `. Do not edit: change
# the chart and run make manifests. Read the README's "Install on Kubernetes"
# first: create the namespace, the database Secret, then apply this file
# (kubectl apply --server-side -f deploy/manifests/pier.yaml); the controller
# writes the routers' service token into the empty Secret pier-service-tokens.
# Change the domain (pier.example.com) and image before applying.
`

// renderManifests is the chart as the committed manifests hold it.
func renderManifests(t *testing.T, helm string) string {
	return manifestsHeader + testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier", "--skip-tests")
}

// builderValues turn the builder on, with the registry it needs.
var builderValues = []string{"--set", "builder.enabled=true", "--set", "registry.host=registry.example"}

func TestChartLint(t *testing.T) {
	helm := testenv.Helm(t)
	start := time.Now()
	out := testenv.RunHelm(t, helm, "lint", "--strict", chartDir)
	t.Logf("helm lint (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, set := range [][]string{
		{"--set", "postgresql.enabled=true", "--set", "router.service.type=NodePort", "--set", "router.service.nodePort=30080"},
		{"--set", "router.endpoints=controller"},
		append([]string{"--set", "router.endpoints=controller"}, builderValues...),
		append([]string{"--set", "builder.service.type=NodePort", "--set", "builder.service.nodePort=30022", "--set", "builder.persistence.enabled=true", "--set", "registry.insecure=true"}, builderValues...),
		append([]string{"--set", "builder.hostKey.existingSecret=my-host-key", "--set", "builder.persistence.enabled=true", "--set", "builder.persistence.existingClaim=my-claim"}, builderValues...),
		append([]string{"--set", "builder.replicas=2", "--set", "builder.tokenSecret=my-builder-token", "--set", "builder.publicHost=git.pier.example.com"}, builderValues...),
		{"--set", "router.tokenSecret=my-router-token"},
	} {
		testenv.RunHelm(t, helm, append([]string{"lint", "--strict", chartDir}, set...)...)
	}
	// helm lint only notes a template's fail; a render stops at it.
	for what, set := range map[string][]string{
		"needs registry.host":      {"--set", "builder.enabled=true"},
		"want kubernetes":          {"--set", "router.endpoints=both"},
		"a namespace of their own": append([]string{"--set", "builder.namespace=pier"}, builderValues...),
		"uid and builder.gid":      append([]string{"--set", "builder.uid=0"}, builderValues...),
		"keep it at 1":             {"--set", "controller.replicas=2"},
		"ReadWriteOnce":            append([]string{"--set", "builder.persistence.enabled=true", "--set", "builder.replicas=2"}, builderValues...),
	} {
		_, err := testenv.RunHelmErr(t, helm, append([]string{"template", "pier", chartDir, "--namespace", "pier"}, set...)...)
		if err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("render with %v: %v, want a refusal saying %q", set, err, what)
		}
	}
}

// kinds counts the rendered objects by kind.
func kinds(t *testing.T, yamlText string) (map[string]int, []*unstructured.Unstructured) {
	t.Helper()
	objs, err := testenv.Manifests(yamlText)
	if err != nil {
		t.Fatal(err)
	}
	k := map[string]int{}
	for _, o := range objs {
		k[o.GetKind()]++
	}
	return k, objs
}

// byKindName indexes rendered objects by "Kind/name".
func byKindName(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		m[o.GetKind()+"/"+o.GetName()] = o
	}
	return m
}

func TestChartTemplate(t *testing.T) {
	helm := testenv.Helm(t)
	// Default values: an external database, no in-chart Postgres, no
	// builder, routers watching EndpointSlices.
	got, objs := kinds(t, testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier"))
	want := map[string]int{"ServiceAccount": 2, "Secret": 1, "ClusterRole": 2, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1, "Service": 2, "Deployment": 2, "PodDisruptionBudget": 1, "Pod": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("default render: %v, want %v", got, want)
	}
	for _, o := range objs {
		if o.GetKind() == "Pod" && o.GetAnnotations()["helm.sh/hook"] != "test" {
			t.Errorf("pod %s is not a helm test hook", o.GetName())
		}
		if o.GetKind() == "Secret" && o.GetName() != "pier-service-tokens" {
			t.Errorf("default render has a Secret %s: the database URL is the operator's", o.GetName())
		}
		if o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && o.GetNamespace() != "pier" {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		fromUnstructured(t, o, &d)
		ps := d.Spec.Template.Spec
		c := ps.Containers[0]
		if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: probes or resource requests missing", d.Name)
		}
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem writable", d.Name)
		}
		switch d.Name {
		case "pier-controller":
			if ps.ServiceAccountName != "pier" || c.Args[0] != "controller" {
				t.Errorf("controller: service account %q, args %v", ps.ServiceAccountName, c.Args)
			}
			if !strings.Contains(strings.Join(c.Args, " "), "--router-selector=app.kubernetes.io/name=pier,app.kubernetes.io/instance=pier,app.kubernetes.io/component=router") {
				t.Errorf("controller args %v: the NetworkPolicy's router selector is not the router's labels", c.Args)
			}
			if len(ps.InitContainers) != 0 || strings.Contains(strings.Join(c.Args, " "), "--build-strategy") {
				t.Errorf("controller without the builder: init containers %d, args %v", len(ps.InitContainers), c.Args)
			}
			if !slices.Contains(c.Args, "--service-tokens-secret=pier/pier-service-tokens") {
				t.Errorf("controller args %v: no --service-tokens-secret=pier/pier-service-tokens", c.Args)
			}
		case "pier-router":
			if ps.AutomountServiceAccountToken == nil || !*ps.AutomountServiceAccountToken || ps.ServiceAccountName != "pier-router" {
				t.Errorf("router with endpoints=kubernetes: service account %q, automount %v", ps.ServiceAccountName, ps.AutomountServiceAccountToken)
			}
			args := strings.Join(c.Args, " ")
			if c.Args[0] != "router" || !strings.Contains(args, "--controller-internal=http://pier-controller:9091") || !strings.Contains(args, "--endpoints=kubernetes") || strings.Contains(args, "--kubeconfig") {
				t.Errorf("router args %v", c.Args)
			}
			for k, v := range map[string]string{"app.kubernetes.io/name": "pier", "app.kubernetes.io/instance": "pier", "app.kubernetes.io/component": "router"} {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("router pod label %s=%q, want %q", k, d.Spec.Template.Labels[k], v)
				}
			}
			checkTokenVolume(t, "router", &d, "/var/run/pier/router-token/token", "pier-service-tokens", "router")
		default:
			t.Errorf("unexpected Deployment %s", d.Name)
		}
	}
	idx := byKindName(objs)
	checkServiceTokens(t, idx, "pier", "pier")

	// The routers' RBAC: read services and endpointslices, nothing else,
	// bound to their own ServiceAccount.
	var cr rbacv1.ClusterRole
	if o := idx["ClusterRole/pier-pier-router"]; o == nil {
		t.Error("no router ClusterRole pier-pier-router")
	} else {
		fromUnstructured(t, o, &cr)
		rules := fmt.Sprint(cr.Rules)
		want := fmt.Sprint([]rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		})
		if rules != want {
			t.Errorf("router ClusterRole rules %s, want %s", rules, want)
		}
	}
	var crb rbacv1.ClusterRoleBinding
	if o := idx["ClusterRoleBinding/pier-pier-router"]; o == nil {
		t.Error("no router ClusterRoleBinding")
	} else {
		fromUnstructured(t, o, &crb)
		if crb.RoleRef.Name != "pier-pier-router" || len(crb.Subjects) != 1 || crb.Subjects[0].Name != "pier-router" || crb.Subjects[0].Namespace != "pier" {
			t.Errorf("router binding: %+v %+v", crb.RoleRef, crb.Subjects)
		}
	}

	// router.endpoints=controller: no Kubernetes credentials for routers.
	got, objs = kinds(t, testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier", "--set", "router.endpoints=controller", "--skip-tests"))
	if got["ServiceAccount"] != 1 || got["ClusterRole"] != 1 || got["ClusterRoleBinding"] != 1 {
		t.Errorf("with router.endpoints=controller: %v", got)
	}
	var d appsv1.Deployment
	fromUnstructured(t, byKindName(objs)["Deployment/pier-router"], &d)
	if ps := d.Spec.Template.Spec; ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken || ps.ServiceAccountName != "" || !slices.Contains(ps.Containers[0].Args, "--endpoints=controller") {
		t.Errorf("router with endpoints=controller: automount %v, service account %q, args %v", ps.AutomountServiceAccountToken, ps.ServiceAccountName, ps.Containers[0].Args)
	}

	// router.tokenSecret: the operator's Secret, key token.
	_, objs = kinds(t, testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier", "--set", "router.tokenSecret=my-router-token", "--skip-tests"))
	fromUnstructured(t, byKindName(objs)["Deployment/pier-router"], &d)
	checkTokenVolume(t, "router with router.tokenSecret", &d, "/var/run/pier/router-token/token", "my-router-token", "token")

	// The in-chart Postgres.
	got, _ = kinds(t, testenv.RunHelm(t, helm, "template", "pier", chartDir, "--namespace", "pier", "--set", "postgresql.enabled=true", "--skip-tests"))
	if got["StatefulSet"] != 1 || got["Secret"] != 2 || got["Service"] != 3 {
		t.Errorf("with postgresql.enabled: %v", got)
	}
}

// checkServiceTokens checks the Secret the controller fills with the
// service tokens (pierd --service-tokens-secret): rendered with no data at
// all (pierd writes it; a rendered token would be everyone's), and a Role
// that lets the controller's ServiceAccount sa get and update it alone.
func checkServiceTokens(t *testing.T, idx map[string]*unstructured.Unstructured, ns, sa string) {
	t.Helper()
	o := idx["Secret/pier-service-tokens"]
	if o == nil {
		t.Fatal("no Secret pier-service-tokens")
	}
	for _, k := range []string{"data", "stringData"} {
		if _, ok := o.Object[k]; ok {
			t.Errorf("the Secret pier-service-tokens has %s: %v; want none, pierd fills it", k, o.Object[k])
		}
	}
	if o.GetNamespace() != ns || o.Object["type"] != "Opaque" || o.GetLabels()["app.kubernetes.io/instance"] != "pier" {
		t.Errorf("the Secret pier-service-tokens: namespace %q, type %v, labels %v", o.GetNamespace(), o.Object["type"], o.GetLabels())
	}
	var role rbacv1.Role
	if o := idx["Role/pier-service-tokens"]; o == nil {
		t.Fatal("no Role pier-service-tokens")
	} else {
		fromUnstructured(t, o, &role)
	}
	want := fmt.Sprint([]rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"pier-service-tokens"}, Verbs: []string{"get", "update"}}})
	if got := fmt.Sprint(role.Rules); got != want || role.Namespace != ns {
		t.Errorf("service tokens Role in %q: rules %s, want %s", role.Namespace, got, want)
	}
	var rb rbacv1.RoleBinding
	if o := idx["RoleBinding/pier-service-tokens"]; o == nil {
		t.Fatal("no RoleBinding pier-service-tokens")
	} else {
		fromUnstructured(t, o, &rb)
	}
	if rb.Namespace != ns || rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != "pier-service-tokens" || len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != sa || rb.Subjects[0].Namespace != ns {
		t.Errorf("service tokens RoleBinding in %q: %+v %+v", rb.Namespace, rb.RoleRef, rb.Subjects)
	}
}

// checkTokenVolume checks that d's pods read their service token at
// tokenFile (--token-file) from the key key of the Secret secret.
func checkTokenVolume(t *testing.T, what string, d *appsv1.Deployment, tokenFile, secret, key string) {
	t.Helper()
	ps := d.Spec.Template.Spec
	c := ps.Containers[0]
	if !slices.Contains(c.Args, "--token-file="+tokenFile) {
		t.Errorf("%s args %v: no --token-file=%s", what, c.Args, tokenFile)
	}
	mount := ""
	for _, m := range c.VolumeMounts {
		if m.Name == "token" {
			mount = m.MountPath
		}
	}
	for _, v := range ps.Volumes {
		if v.Name != "token" {
			continue
		}
		if v.Secret == nil || v.Secret.SecretName != secret || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != key || mount+"/"+v.Secret.Items[0].Path != tokenFile || (v.Secret.Optional != nil && *v.Secret.Optional) {
			t.Errorf("%s token volume %+v mounted at %q: want the key %s of Secret %s at %s, not optional", what, v.Secret, mount, key, secret, tokenFile)
		}
		return
	}
	t.Errorf("%s: no token volume", what)
}

// TestChartTemplateBuilder checks builder.enabled's objects: the
// controller runs pierd all without its router nor SSH server
// (--ssh-addr=off), with the kubernetes build strategy; the builder is a
// Deployment of its own (pierd builder, no Kubernetes credentials, its
// token from a Secret the operator makes), which the SSH Service selects
// and which reaches the controller's internal listener; the host key is a
// Secret pierd can read, copied into the builder's data dir by an init
// container; the build namespace and its Role hold exactly what
// builder/kube does.
func TestChartTemplateBuilder(t *testing.T) {
	helm := testenv.Helm(t)
	got, objs := kinds(t, testenv.RunHelm(t, helm, append([]string{"template", "pier", chartDir, "--namespace", "pier", "--skip-tests"}, builderValues...)...))
	want := map[string]int{"Namespace": 1, "Secret": 2, "Role": 2, "RoleBinding": 2, "ServiceAccount": 2, "ClusterRole": 2, "ClusterRoleBinding": 2, "Service": 3, "Deployment": 3, "PodDisruptionBudget": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("builder render: %v, want %v", got, want)
	}
	idx := byKindName(objs)
	checkServiceTokens(t, idx, "pier", "pier")
	for _, o := range objs {
		switch {
		case o.GetKind() == "Namespace" || o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding":
		case (o.GetKind() == "Role" || o.GetKind() == "RoleBinding") && o.GetName() != "pier-service-tokens":
			if o.GetNamespace() != "pier-builds" {
				t.Errorf("%s %s in %q, want the build namespace pier-builds", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		case o.GetNamespace() != "pier":
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	if idx["Namespace/pier-builds"] == nil {
		t.Error("no build namespace pier-builds")
	}

	// The controller: pierd all --router=false --ssh-addr=off, building in
	// the cluster.
	var d appsv1.Deployment
	fromUnstructured(t, idx["Deployment/pier-controller"], &d)
	ps := d.Spec.Template.Spec
	c := ps.Containers[0]
	if len(c.Args) < 2 || c.Args[0] != "all" || c.Args[1] != "--router=false" {
		t.Errorf("controller args %v, want pierd all --router=false", c.Args)
	}
	for _, a := range []string{
		"--scheduler=kubernetes", "--build-strategy=kubernetes", "--ssh-addr=off", "--internal-addr=:9091",
		"--build-source-url=http://pier-controller.pier.svc:9091", "--build-namespace=pier-builds",
		"--build-fetch-image=pier/pierd:0.1.0", "--build-timeout=15m", "--build-uid=1000", "--build-gid=1000",
		"--service-tokens-secret=pier/pier-service-tokens",
	} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("controller args %v: no %s", c.Args, a)
		}
	}
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--ssh-public-host") }) {
		t.Errorf("controller args %v: --ssh-public-host without builder.publicHost", c.Args)
	}
	// registry.tokenService: per-app credentials from Pier's token realm.
	{
		_, tobjs := kinds(t, testenv.RunHelm(t, helm, append([]string{"template", "pier", chartDir, "--namespace", "pier", "--skip-tests",
			"--set", "registry.tokenService=pier-registry", "--set", "registry.username=pier", "--set", "registry.passwordSecret=reg"}, builderValues...)...))
		var td appsv1.Deployment
		fromUnstructured(t, byKindName(tobjs)["Deployment/pier-controller"], &td)
		found := false
		for _, e := range td.Spec.Template.Spec.Containers[0].Env {
			found = found || e.Name == "PIER_REGISTRY_TOKEN_SERVICE" && e.Value == "pier-registry"
		}
		if !found {
			t.Error("registry.tokenService: no PIER_REGISTRY_TOKEN_SERVICE on the controller")
		}
	}
	if out, err := testenv.RunHelmErr(t, helm, append([]string{"template", "pier", chartDir, "--namespace", "pier", "--set", "registry.tokenService=x"}, builderValues...)...); err == nil || !strings.Contains(out+err.Error(), "registry.tokenService needs registry.username") {
		t.Errorf("tokenService without the platform account: %v\n%s", err, out)
	}
	// builder.publicHost: the git remotes Pier hands out name it.
	_, pobjs := kinds(t, testenv.RunHelm(t, helm, append([]string{"template", "pier", chartDir, "--namespace", "pier", "--skip-tests", "--set", "builder.publicHost=git.pier.example.com"}, builderValues...)...))
	var pd appsv1.Deployment
	fromUnstructured(t, byKindName(pobjs)["Deployment/pier-controller"], &pd)
	if args := pd.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--ssh-public-host=git.pier.example.com") {
		t.Errorf("with builder.publicHost: controller args %v", args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["PIER_REGISTRY"] != "registry.example" || env["PIER_BUILDER"] != "pier/builder:latest" || env["PIER_DATA_DIR"] != "/var/lib/pier" {
		t.Errorf("controller env %v", env)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if _, ssh := ports["ssh"]; ssh || ports["internal"] != 9091 {
		t.Errorf("controller ports %v, want internal and no ssh", ports)
	}
	if ps.AutomountServiceAccountToken == nil || !*ps.AutomountServiceAccountToken || ps.ServiceAccountName != "pier" {
		t.Error("controller: no service account token")
	}
	if len(ps.InitContainers) != 0 {
		t.Errorf("controller init containers: %d, want none (the host key is the builder's)", len(ps.InitContainers))
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	if v, ok := vols["ssh-host-key"]; ok {
		t.Errorf("controller mounts the host key: %+v", v)
	}
	if v := vols["data"]; v.EmptyDir == nil {
		t.Errorf("controller data volume: %+v, want an emptyDir", v)
	}

	// The builder: pierd builder alone, no Kubernetes credentials, the
	// controller's internal listener with its token from a Secret.
	var bd appsv1.Deployment
	if idx["Deployment/pier-builder"] == nil {
		t.Fatal("no builder Deployment pier-builder")
	}
	fromUnstructured(t, idx["Deployment/pier-builder"], &bd)
	bps := bd.Spec.Template.Spec
	bc := bps.Containers[0]
	if bd.Spec.Template.Labels["app.kubernetes.io/component"] != "builder" || *bd.Spec.Replicas != 1 || bd.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("builder Deployment: labels %v, replicas %d, strategy %s", bd.Spec.Template.Labels, *bd.Spec.Replicas, bd.Spec.Strategy.Type)
	}
	if bps.AutomountServiceAccountToken == nil || *bps.AutomountServiceAccountToken || bps.ServiceAccountName != "" {
		t.Errorf("builder pods: automount %v, service account %q, want no Kubernetes credentials", bps.AutomountServiceAccountToken, bps.ServiceAccountName)
	}
	if want := []string{"builder", "--controller-internal=http://pier-controller.pier.svc:9091", "--token-file=/var/run/pier/builder-token/token", "--ssh-addr=:2222", "--data-dir=/var/lib/pier", "--log-level=info"}; !slices.Equal(bc.Args, want) {
		t.Errorf("builder args %v, want %v", bc.Args, want)
	}
	if len(bc.Env) != 0 || len(bc.EnvFrom) != 0 {
		t.Errorf("builder env %v %v: it takes no database credentials", bc.Env, bc.EnvFrom)
	}
	if bc.Image != c.Image || len(bc.Ports) != 1 || bc.Ports[0].Name != "ssh" || bc.Ports[0].ContainerPort != 2222 {
		t.Errorf("builder image %s, ports %+v", bc.Image, bc.Ports)
	}
	for what, p := range map[string]*corev1.Probe{"startup": bc.StartupProbe, "readiness": bc.ReadinessProbe, "liveness": bc.LivenessProbe} {
		if p == nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "ssh" {
			t.Errorf("builder %s probe %+v, want tcpSocket on ssh", what, p)
		}
	}
	if bc.Resources.Requests.Cpu().IsZero() || bc.Resources.Requests.Memory().IsZero() || bc.Resources.Limits.Memory().IsZero() {
		t.Errorf("builder resources %+v", bc.Resources)
	}
	if bc.SecurityContext == nil || bc.SecurityContext.ReadOnlyRootFilesystem == nil || !*bc.SecurityContext.ReadOnlyRootFilesystem ||
		bps.SecurityContext == nil || bps.SecurityContext.RunAsNonRoot == nil || !*bps.SecurityContext.RunAsNonRoot {
		t.Error("builder: not hardened")
	}
	// The host key: from its Secret, installed 0600 into the data dir,
	// where pierd's builder loads it.
	if len(bps.InitContainers) != 1 {
		t.Fatalf("builder init containers: %d, want 1 (the host key)", len(bps.InitContainers))
	}
	ic := bps.InitContainers[0]
	if strings.Join(ic.Command, " ") != "install -m 0600 /var/run/pier/ssh-host-key/ssh_host_ed25519_key /var/lib/pier/ssh_host_ed25519_key" || ic.Image != c.Image {
		t.Errorf("host key init container: %v (image %s)", ic.Command, ic.Image)
	}
	if ic.SecurityContext == nil || ic.SecurityContext.ReadOnlyRootFilesystem == nil || !*ic.SecurityContext.ReadOnlyRootFilesystem || ic.Resources.Requests.Memory().IsZero() {
		t.Error("host key init container: not hardened, or no requests")
	}
	vols = map[string]corev1.Volume{}
	for _, v := range bps.Volumes {
		vols[v.Name] = v
	}
	if v := vols["ssh-host-key"]; v.Secret == nil || v.Secret.SecretName != "pier-builder-ssh" {
		t.Errorf("host key volume: %+v", v)
	}
	checkTokenVolume(t, "builder", &bd, "/var/run/pier/builder-token/token", "pier-service-tokens", "builder")
	if v := vols["data"]; v.EmptyDir == nil {
		t.Errorf("builder data volume without persistence: %+v, want an emptyDir", v)
	}
	mounts := map[string]string{}
	for _, m := range bc.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["data"] != "/var/lib/pier" || mounts["token"] != "/var/run/pier/builder-token" || mounts["tmp"] != "/tmp" {
		t.Errorf("builder mounts %v", mounts)
	}
	var sec corev1.Secret
	fromUnstructured(t, idx["Secret/pier-builder-ssh"], &sec)
	if sec.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("the host key Secret is not kept by helm uninstall")
	}
	signer, err := gossh.ParsePrivateKey([]byte(sec.StringData["ssh_host_ed25519_key"]))
	if err != nil {
		t.Fatalf("the chart's host key does not parse as an SSH private key: %v", err)
	}
	if signer.PublicKey().Type() != gossh.KeyAlgoED25519 {
		t.Errorf("host key type %s, want ed25519", signer.PublicKey().Type())
	}

	// The SSH Service: port 22 to the builder pods' ssh port.
	var svc corev1.Service
	fromUnstructured(t, idx["Service/pier-builder"], &svc)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 22 || svc.Spec.Ports[0].TargetPort.String() != "ssh" {
		t.Errorf("builder Service: type %s, ports %+v", svc.Spec.Type, svc.Spec.Ports)
	}
	if fmt.Sprint(svc.Spec.Selector) != fmt.Sprint(bd.Spec.Selector.MatchLabels) || svc.Spec.Selector["app.kubernetes.io/component"] != "builder" {
		t.Errorf("builder Service selects %v, the builder's pods are %v", svc.Spec.Selector, bd.Spec.Selector.MatchLabels)
	}
	// The internal listener, as build Pods (--build-source-url) and the
	// builder's pods (--controller-internal) reach it: the controller's
	// Service's port 9091.
	fromUnstructured(t, idx["Service/pier-controller"], &svc)
	internal := false
	for _, p := range svc.Spec.Ports {
		internal = internal || (p.Port == 9091 && p.TargetPort.String() == "internal")
	}
	if !internal || fmt.Sprint(svc.Spec.Selector) != fmt.Sprint(d.Spec.Selector.MatchLabels) {
		t.Errorf("controller Service: ports %+v, selector %v: build Pods and builders cannot reach the internal listener", svc.Spec.Ports, svc.Spec.Selector)
	}

	// The build namespace's Role: exactly builder/kube's verbs.
	var role rbacv1.Role
	fromUnstructured(t, idx["Role/pier-builder"], &role)
	wantRules := fmt.Sprint([]rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "watch", "create", "delete", "deletecollection"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "update", "delete", "deletecollection"}},
	})
	if fmt.Sprint(role.Rules) != wantRules {
		t.Errorf("build Role rules %v, want %v", role.Rules, wantRules)
	}
	var rb rbacv1.RoleBinding
	fromUnstructured(t, idx["RoleBinding/pier-builder"], &rb)
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != "pier-builder" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "pier" || rb.Subjects[0].Namespace != "pier" {
		t.Errorf("build RoleBinding: %+v %+v", rb.RoleRef, rb.Subjects)
	}

	// Persistence, NodePort and an operator's host key.
	got, objs = kinds(t, testenv.RunHelm(t, helm, append([]string{"template", "pier", chartDir, "--namespace", "pier", "--skip-tests",
		"--set", "builder.persistence.enabled=true", "--set", "builder.hostKey.existingSecret=my-host-key",
		"--set", "builder.service.type=NodePort", "--set", "builder.service.nodePort=30022", "--set", "builder.namespace=builds"}, builderValues...)...))
	idx = byKindName(objs)
	if got["Secret"] != 1 || idx["Secret/pier-service-tokens"] == nil || got["PersistentVolumeClaim"] != 1 || idx["Namespace/builds"] == nil || idx["Role/pier-builder"].GetNamespace() != "builds" {
		t.Errorf("with persistence and an existing host key: %v", got)
	}
	fromUnstructured(t, idx["Deployment/pier-controller"], &d)
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "data" && v.EmptyDir == nil {
			t.Errorf("controller data volume with builder.persistence: %+v, want an emptyDir (the volume is the builder's)", v)
		}
	}
	if pvc := idx["PersistentVolumeClaim/pier-data"]; pvc == nil || pvc.GetLabels()["app.kubernetes.io/component"] != "builder" {
		t.Errorf("the data PersistentVolumeClaim pier-data: %v", pvc)
	}
	fromUnstructured(t, idx["Deployment/pier-builder"], &bd)
	if bd.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("builder with a ReadWriteOnce volume: strategy %s, want Recreate", bd.Spec.Strategy.Type)
	}
	vols = map[string]corev1.Volume{}
	for _, v := range bd.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["data"]; v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "pier-data" {
		t.Errorf("builder data volume with persistence: %+v", v)
	}
	if v := vols["ssh-host-key"]; v.Secret == nil || v.Secret.SecretName != "my-host-key" {
		t.Errorf("host key volume with an existing Secret: %+v", v)
	}
	fromUnstructured(t, idx["Service/pier-builder"], &svc)
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].NodePort != 30022 {
		t.Errorf("builder Service with NodePort: %s %+v", svc.Spec.Type, svc.Spec.Ports)
	}

	// builder.tokenSecret: the operator's Secret, key token.
	_, objs = kinds(t, testenv.RunHelm(t, helm, append([]string{"template", "pier", chartDir, "--namespace", "pier", "--skip-tests", "--set", "builder.tokenSecret=my-builder-token"}, builderValues...)...))
	fromUnstructured(t, byKindName(objs)["Deployment/pier-builder"], &bd)
	checkTokenVolume(t, "builder with builder.tokenSecret", &bd, "/var/run/pier/builder-token/token", "my-builder-token", "token")
	fromUnstructured(t, byKindName(objs)["Deployment/pier-router"], &d)
	checkTokenVolume(t, "router with builder.tokenSecret", &d, "/var/run/pier/router-token/token", "pier-service-tokens", "router")
}

func TestManifestsUpToDate(t *testing.T) {
	helm := testenv.Helm(t)
	fresh := renderManifests(t, helm)
	if os.Getenv(EnvUpdateManifests) == "1" {
		if err := os.WriteFile(manifestsFile, []byte(fresh), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", manifestsFile)
		return
	}
	committed, err := os.ReadFile(manifestsFile)
	if err != nil {
		t.Fatalf("%v: run make manifests", err)
	}
	if string(committed) != fresh {
		t.Errorf("%s differs from a fresh render of the chart: run make manifests", manifestsFile)
	}
}

func fromUnstructured(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonUnmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}

// TestChartInstallKube applies the rendered chart to the tests' control
// plane (server-side apply: a dry run, then for real) in a fresh namespace
// and waits for every Deployment to be Available on kwok's nodes: the
// controller's and router's with the default values, and the builder's
// too with the builder on (pierd all --router=false --ssh-addr=off, pierd
// builder with no service-account token, its SSH Service, host key
// Secret, build namespace and Role). The service tokens' Secret is made
// empty, and applying the chart again keeps the keys pierd wrote into it.
// kwok runs no containers: pods become Ready by
// kwok's stages, images need not exist, and the helm test Pod cannot run
// (it is left out, as --skip-tests does).
func TestChartInstallKube(t *testing.T) {
	helm := testenv.Helm(t)
	k := testenv.KubeCluster(t)
	t.Run("defaults", func(t *testing.T) { installKube(t, helm, k) })
	t.Run("builder", func(t *testing.T) {
		ns := installKube(t, helm, k, builderValues...)
		cfg := rest.CopyConfig(k.Config)
		admin, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		svc, err := admin.CoreV1().Services(ns).Get(ctx, "pier-builder", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].Port != 22 || svc.Spec.Ports[0].NodePort == 0 {
			t.Errorf("builder Service: %s %+v", svc.Spec.Type, svc.Spec.Ports)
		}
		if _, err := admin.CoreV1().Namespaces().Get(ctx, ns+"-builds", metav1.GetOptions{}); err != nil {
			t.Errorf("the build namespace: %v", err)
		}
		if _, err := admin.RbacV1().Roles(ns+"-builds").Get(ctx, "pier-builder", metav1.GetOptions{}); err != nil {
			t.Errorf("the build Role: %v", err)
		}
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=controller"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("controller pods: %v", err)
		}
		if p := pods.Items[0]; !slices.Contains(p.Spec.Containers[0].Args, "--ssh-addr=off") || len(p.Spec.InitContainers) != 0 {
			t.Errorf("controller pod: args %v, %d init containers; want --ssh-addr=off and none", p.Spec.Containers[0].Args, len(p.Spec.InitContainers))
		}
		pods, err = admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=builder"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("builder pods: %v (%d)", err, len(pods.Items))
		}
		p := pods.Items[0]
		if len(p.Status.InitContainerStatuses) != 1 || p.Status.InitContainerStatuses[0].State.Terminated == nil {
			t.Errorf("the host key init container did not complete: %+v", p.Status.InitContainerStatuses)
		}
		if args := p.Spec.Containers[0].Args; len(args) == 0 || args[0] != "builder" || !slices.Contains(args, "--controller-internal=http://pier-controller."+ns+".svc:9091") {
			t.Errorf("builder pod args %v, want pierd builder and the controller's internal Service", args)
		}
		if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
			t.Errorf("builder pod: automountServiceAccountToken %v, want false", p.Spec.AutomountServiceAccountToken)
		}
		for _, v := range p.Spec.Volumes {
			if v.Projected != nil {
				t.Errorf("builder pod has a projected volume %s (a service-account token?)", v.Name)
			}
		}
		for _, c := range p.Spec.Containers {
			for _, m := range c.VolumeMounts {
				if strings.HasPrefix(m.MountPath, "/var/run/secrets/kubernetes.io") {
					t.Errorf("builder pod mounts %s", m.MountPath)
				}
			}
		}
	})
}

// installKube installs the chart rendered with set into a fresh namespace
// and returns it, once every Deployment is Available.
func installKube(t *testing.T, helm string, k *testenv.Kube, set ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := make([]byte, 3)
	rand.Read(b)
	ns := "pier-chart-" + hex.EncodeToString(b)
	cfg := rest.CopyConfig(k.Config)
	cfg.QPS, cfg.Burst = 50, 100
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, objs := kinds(t, testenv.RunHelm(t, helm, append([]string{"template", "pier", chartDir, "--namespace", ns, "--skip-tests"}, set...)...))

	// Dry run first: the API server validates every object and stores
	// none (the namespace does not even exist yet for namespaced ones, so
	// it is made first, as the README says).
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		admin.CoreV1().Namespaces().Delete(bg, ns, metav1.DeleteOptions{})
		for _, o := range objs {
			switch o.GetKind() {
			case "ClusterRole":
				admin.RbacV1().ClusterRoles().Delete(bg, o.GetName(), metav1.DeleteOptions{})
			case "ClusterRoleBinding":
				admin.RbacV1().ClusterRoleBindings().Delete(bg, o.GetName(), metav1.DeleteOptions{})
			case "Namespace":
				admin.CoreV1().Namespaces().Delete(bg, o.GetName(), metav1.DeleteOptions{})
			}
		}
	})
	// A dry run cannot make the objects of a namespace the chart makes.
	var dry []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetNamespace() == ns || o.GetNamespace() == "" {
			dry = append(dry, o)
		}
	}
	start := time.Now()
	if err := testenv.ApplyManifests(ctx, cfg, dry, "pier-chart-test", true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if _, err := admin.AppsV1().Deployments(ns).Get(ctx, "pier-controller", metav1.GetOptions{}); err == nil {
		t.Fatal("the dry run stored the controller's Deployment")
	}
	t.Logf("server-side apply dry run of %d objects: %s", len(dry), time.Since(start).Round(time.Millisecond))

	// The one Secret the operator makes (README): the database URL, a
	// placeholder (nothing runs it here). The service tokens' Secret is
	// the chart's.
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pier-database", Namespace: ns}, StringData: map[string]string{"url": "postgres://pier:placeholder@db.invalid:5432/pier"}}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := testenv.ApplyManifests(ctx, cfg, objs, "pier-chart-test", false); err != nil {
		t.Fatal(err)
	}
	// The service tokens' Secret, empty; then filled as pierd does (an
	// update, field manager pierd), and applied again as an upgrade
	// would: pierd's keys stay.
	tokens, err := admin.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the service tokens Secret: %v", err)
	}
	if len(tokens.Data) != 0 {
		t.Errorf("the service tokens Secret holds %d keys at install, want none", len(tokens.Data))
	}
	tokens.Data = map[string][]byte{"router": []byte("pier_router_placeholder"), "builder": []byte("pier_builder_placeholder")}
	if _, err := admin.CoreV1().Secrets(ns).Update(ctx, tokens, metav1.UpdateOptions{FieldManager: "pierd"}); err != nil {
		t.Fatal(err)
	}
	if err := testenv.ApplyManifests(ctx, cfg, objs, "pier-chart-test", false); err != nil {
		t.Fatalf("applying the chart again: %v", err)
	}
	if tokens, err = admin.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{}); err != nil || string(tokens.Data["router"]) != "pier_router_placeholder" || string(tokens.Data["builder"]) != "pier_builder_placeholder" {
		t.Errorf("the service tokens Secret after applying the chart again: %v %v, want pierd's keys kept", err, tokens.Data)
	}
	var deployments []string
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deployments = append(deployments, o.GetName())
		}
	}
	for _, name := range deployments {
		for {
			d, err := admin.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if available(d) {
				t.Logf("%s Available (%d/%d ready) %s after apply", name, d.Status.ReadyReplicas, *d.Spec.Replicas, time.Since(start).Round(time.Millisecond))
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s not Available: %+v", name, d.Status)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, n := range k.Nodes {
		nodes[n] = true
	}
	for _, p := range pods.Items {
		if !nodes[p.Spec.NodeName] {
			t.Errorf("pod %s on %q, not a kwok node", p.Name, p.Spec.NodeName)
		}
	}
	wantPods := 3 // 1 controller, 2 routers
	if slices.Contains(deployments, "pier-builder") {
		wantPods++ // 1 builder
	}
	if len(pods.Items) != wantPods {
		t.Errorf("%d pods, want %d (1 controller, 2 routers, and a builder with the builder on)", len(pods.Items), wantPods)
	}
	t.Logf("Deployments Available: %v", deployments)
	return ns
}

func available(d *appsv1.Deployment) bool {
	if d.Status.ObservedGeneration < d.Generation || d.Spec.Replicas == nil || d.Status.AvailableReplicas < *d.Spec.Replicas || d.Status.UpdatedReplicas < *d.Spec.Replicas {
		return false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func jsonUnmarshal(b []byte, into any) error { return json.Unmarshal(b, into) }
