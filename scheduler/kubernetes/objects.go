package kubernetes

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/pierpaas/pier"
)

// CNB images: the launcher runs a process type when invoked under its
// name in /cnb/process, and any command given after "--" directly.
const (
	cnbProcessDir = "/cnb/process/"
	cnbLauncher   = "/cnb/lifecycle/launcher"
)

// Bounds of the pods' lifecycle.
const (
	revisionHistoryLimit = 3 // old ReplicaSets kept (rollback is a new Apply)
	readinessPeriod      = 2 // seconds between readiness checks of web
	secretPrefix         = "config-v"
	webType              = "web"
	webServicePort       = 80
)

// appLabels are on every object of app.
func appLabels(app string) map[string]string {
	return map[string]string{
		LabelName:      app,
		LabelPartOf:    "pier",
		LabelManagedBy: managedBy,
		LabelApp:       app,
	}
}

// releaseLabels are appLabels with the release and, if given, a process type.
func releaseLabels(app string, version int, typ string) map[string]string {
	l := appLabels(app)
	l[LabelRelease] = "v" + strconv.Itoa(version)
	if typ != "" {
		l[LabelProcessType] = typ
	}
	return l
}

// selector picks the pods of one process type of app; it never changes
// (a Deployment's selector is immutable).
func selector(app, typ string) map[string]string {
	return map[string]string{LabelApp: app, LabelProcessType: typ}
}

func secretName(version int) string { return secretPrefix + strconv.Itoa(version) }

// secretVersion is the release a config Secret belongs to, or 0.
func secretVersion(name string) int {
	if !strings.HasPrefix(name, secretPrefix) {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimPrefix(name, secretPrefix))
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// releaseVersion parses a release label ("v7").
func releaseVersion(label string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(label, "v"))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// checkRunnable says why a deployment's build cannot run on Kubernetes.
func checkRunnable(d pier.Deployment) error {
	b := d.Release.Build
	if b == nil {
		return nil
	}
	if !b.RunsImage() || strings.HasPrefix(b.Image, "/") {
		return pier.Errorf(pier.EINVALID, "v%d of %s was built by the host strategy, whose output runs only on the build host: the Kubernetes scheduler runs images; build with pack, or deploy an image (pier builds:create IMAGE)", d.Release.Version, d.App)
	}
	if err := pier.ValidateImage(b.Image); err != nil {
		return pier.Errorf(pier.EINVALID, "v%d of %s cannot run: %s", d.Release.Version, d.App, pier.ErrorMessage(err))
	}
	for _, t := range sortedKeys(b.ProcessTypes) {
		if err := checkType(t); err != nil {
			return err
		}
	}
	return nil
}

// checkType refuses process types that are not Kubernetes names.
func checkType(t string) error {
	if err := pier.ValidateProcessType(t); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Label(t); len(errs) > 0 {
		return pier.Errorf(pier.EINVALID, "process type %q cannot run on Kubernetes, where it names a Deployment: it must end with a letter or digit", t)
	}
	return nil
}

// isCNB reports whether the build is a Cloud Native Buildpacks image (run
// through its launcher) rather than an image deployed as it is.
func isCNB(b *pier.Build) bool { return b.CNB() }

// processCommand is the container command of a process type, nil for the
// image's own entrypoint.
func processCommand(b *pier.Build, typ string) []string {
	if isCNB(b) {
		return []string{cnbProcessDir + typ}
	}
	if cmd := b.ProcessTypes[typ]; cmd != "" {
		return []string{"/bin/sh", "-c", cmd}
	}
	return nil
}

// runCommand is the container command of a one-off process: argv as
// given, never through a shell (CNB images: through the launcher, which
// sets the buildpacks' environment and then execs argv directly).
func runCommand(b *pier.Build, argv []string) []string {
	if isCNB(b) {
		return append([]string{cnbLauncher, "--"}, argv...)
	}
	return append([]string(nil), argv...)
}

// resources turns Pier limits into a container's requests and limits.
func resources(typ string, l pier.Limits) (*corev1ac.ResourceRequirementsApplyConfiguration, error) {
	if l == (pier.Limits{}) {
		return nil, nil
	}
	rl := corev1.ResourceList{}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceMemory: l.Memory, corev1.ResourceCPU: l.CPU} {
		if v == "" {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			return nil, pier.Errorf(pier.EINVALID, "%s limit %q of %s is not a Kubernetes quantity: use such as 512Mi (memory) or 500m (cpu)", name, v, typ)
		}
		rl[name] = q
	}
	return corev1ac.ResourceRequirements().WithRequests(rl).WithLimits(rl), nil
}

// podSpec is the pod of one process type (or of a one-off process, typ
// RunType, with its command).
func (s *Scheduler) podSpec(d pier.Deployment, typ string, command []string) (*corev1ac.PodSpecApplyConfiguration, error) {
	b := d.Release.Build
	port := int32(s.cfg.Port)
	c := corev1ac.Container().
		WithName(typ).
		WithImage(b.Image).
		WithEnvFrom(corev1ac.EnvFromSource().WithSecretRef(corev1ac.SecretEnvSource().WithName(secretName(d.Release.Version)))).
		WithEnv(corev1ac.EnvVar().WithName("PORT").WithValue(strconv.Itoa(s.cfg.Port)))
	if len(command) > 0 {
		c.WithCommand(command...)
	}
	if typ == webType {
		c.WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(port).WithProtocol(corev1.ProtocolTCP))
		c.WithReadinessProbe(corev1ac.Probe().
			WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromInt32(port))).
			WithPeriodSeconds(readinessPeriod).
			WithFailureThreshold(3))
	}
	r, err := resources(typ, d.Limits[typ])
	if err != nil {
		return nil, err
	}
	if r != nil {
		c.WithResources(r)
	}
	sc := corev1ac.SecurityContext().WithAllowPrivilegeEscalation(false)
	psc := corev1ac.PodSecurityContext().WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
	if isCNB(b) {
		// CNB run images run as their CNB user, never root: hold them
		// to it (the image's USER must be numeric for the kubelet to
		// check). Images deployed as they are may need root.
		psc.WithRunAsNonRoot(true)
		sc.WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))
	}
	c.WithSecurityContext(sc)
	grace := int64(s.cfg.TerminationGracePeriod.Seconds())
	spec := corev1ac.PodSpec().
		WithContainers(c).
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithTerminationGracePeriodSeconds(grace).
		WithSecurityContext(psc)
	if len(s.cfg.NodeSelector) > 0 {
		spec.WithNodeSelector(s.cfg.NodeSelector)
	}
	if s.cfg.PullCredentials != nil {
		spec.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(PullSecretName))
	}
	return spec, nil
}

// deploymentConfig is the Deployment of one process type.
func (s *Scheduler) deploymentConfig(d pier.Deployment, typ string, replicas int32) (*appsv1ac.DeploymentApplyConfiguration, error) {
	spec, err := s.podSpec(d, typ, processCommand(d.Release.Build, typ))
	if err != nil {
		return nil, err
	}
	labels := releaseLabels(d.App, d.Release.Version, typ)
	deadline := int32(s.cfg.RolloutTimeout.Seconds())
	if deadline < 1 {
		deadline = 1
	}
	return appsv1ac.Deployment(typ, Namespace(d.App)).
		WithLabels(labels).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selector(d.App, typ))).
			WithRevisionHistoryLimit(revisionHistoryLimit).
			WithProgressDeadlineSeconds(deadline).
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromString("25%")))).
			WithTemplate(s.podTemplate(labels, spec))), nil
}

// serviceConfig is the Service in front of web.
func (s *Scheduler) serviceConfig(d pier.Deployment) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(webType, Namespace(d.App)).
		WithLabels(releaseLabels(d.App, d.Release.Version, webType)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(selector(d.App, webType)).
			WithPorts(corev1ac.ServicePort().
				WithName("http").
				WithProtocol(corev1.ProtocolTCP).
				WithPort(webServicePort).
				WithTargetPort(intstr.FromInt32(int32(s.cfg.Port)))))
}

// secretConfig is the release's config, which every process gets as its
// environment (envFrom). One Secret per release: the pods of a release
// keep their config while a later release rolls out, and a restarted old
// pod does not pick up config it was not released with.
func secretConfig(d pier.Deployment) *corev1ac.SecretApplyConfiguration {
	// data, not stringData: the API server folds stringData into data,
	// so a key dropped from an applied stringData would stay in data.
	data := make(map[string][]byte, len(d.Release.Config))
	for k, v := range d.Release.Config {
		data[k] = []byte(v)
	}
	return corev1ac.Secret(secretName(d.Release.Version), Namespace(d.App)).
		WithLabels(releaseLabels(d.App, d.Release.Version, "")).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
}

// PullSecretName is the Secret of an app's registry pull credentials
// (Config.PullCredentials), in its namespace.
const PullSecretName = "registry-pull"

// pullSecretConfig is the app's registry pull credentials, as the kubelet
// reads them: only for the platform's registry host, so that they are
// never sent to another registry.
func pullSecretConfig(app, registry, username, password string) (*corev1ac.SecretApplyConfiguration, error) {
	type entry struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Auth     string `json:"auth"`
	}
	dc, err := json.Marshal(map[string]map[string]entry{"auths": {registry: {
		Username: username, Password: password,
		Auth: base64.StdEncoding.EncodeToString([]byte(username + ":" + password)),
	}}})
	if err != nil {
		return nil, err
	}
	return corev1ac.Secret(PullSecretName, Namespace(app)).
		WithLabels(appLabels(app)).
		WithType(corev1.SecretTypeDockerConfigJson).
		WithData(map[string][]byte{corev1.DockerConfigJsonKey: dc}), nil
}

// runPodConfig is a one-off pod.
func (s *Scheduler) runPodConfig(d pier.Deployment, name string, argv []string) (*corev1ac.PodApplyConfiguration, error) {
	spec, err := s.podSpec(d, RunType, runCommand(d.Release.Build, argv))
	if err != nil {
		return nil, err
	}
	spec.WithRestartPolicy(corev1.RestartPolicyNever)
	pod := corev1ac.Pod(name, Namespace(d.App)).
		WithLabels(releaseLabels(d.App, d.Release.Version, RunType)).
		WithSpec(spec)
	if len(s.cfg.PodAnnotations) > 0 {
		pod.WithAnnotations(s.cfg.PodAnnotations)
	}
	return pod, nil
}

func (s *Scheduler) podTemplate(labels map[string]string, spec *corev1ac.PodSpecApplyConfiguration) *corev1ac.PodTemplateSpecApplyConfiguration {
	t := corev1ac.PodTemplateSpec().WithLabels(labels).WithSpec(spec)
	if len(s.cfg.PodAnnotations) > 0 {
		t.WithAnnotations(s.cfg.PodAnnotations)
	}
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
