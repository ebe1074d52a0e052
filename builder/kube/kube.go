// Package kube is the "kubernetes" build strategy: pushed source is built
// into an OCI image inside the cluster, by a build Pod that runs the Cloud
// Native Buildpacks lifecycle's creator in the app's CNB builder image and
// exports the image straight to the registry, with no Docker daemon (the
// way kpack and Epinio build).
//
// # One build
//
//  1. pierd packs the checked-out tree into a gzipped tarball and serves it
//     on its internal listener (Sources, GET /internal/v1/builds/<id>/source),
//     to the holder of a random token made for this build alone.
//  2. It creates the build's Secret (type kubernetes.io/dockerconfigjson):
//     the registry credentials, the source token and the app's config
//     vars; and the build Pod, owner of that Secret. The Pod's init
//     container, "source", runs `pierd fetch-source` from the Pier image
//     (builder images need no curl) and unpacks the source into an emptyDir
//     at /workspace; its container, "build", runs /cnb/lifecycle/creator,
//     which exports <registry>/<prefix>/<app>:git-<commit> (and :latest)
//     and keeps the app's build cache in the same repository, tag "cache".
//  3. The Pod runs as the builder's non-root CNB user, with no service
//     account token, no privilege escalation, no capabilities, and an
//     activeDeadlineSeconds of the build timeout. Config vars reach the
//     lifecycle as files in /platform/env, registry credentials as
//     $DOCKER_CONFIG/config.json, the token as a file: all from the Secret,
//     none as plain env in the Pod spec.
//  4. The containers' logs stream to the pusher. The Pod's status decides:
//     Succeeded reads the image digest from the creator's report, which it
//     writes to the container's termination message (-report
//     /dev/termination-log), then reads the image's config from the
//     registry for its process types, and the build is <repository>@<digest>;
//     Failed fails the build with the failing container's reason and its
//     last lines (terminationMessagePolicy FallbackToLogsOnError).
//  5. The Pod and the Secret are deleted when the build ends, whatever the
//     outcome, and the token stops working. At start, pierd deletes what
//     builds left behind (Cleanup).
package kube

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/tarball"
)

// Defaults for Config's zero values.
const (
	DefaultNamespace  = "pier-builds"
	DefaultTimeout    = 15 * time.Minute
	DefaultUID        = 1000 // the CNB user of Pier's builder (builder/stack)
	DefaultGID        = 1000
	DefaultFetchImage = "pier/pierd:latest"
	// PlatformAPI is the CNB platform API Pier speaks to the lifecycle.
	PlatformAPI = "0.13"
)

// Labels of build Pods and Secrets (those of scheduler/kubernetes, and the
// build's id).
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelComponent = "app.kubernetes.io/component"
	LabelApp       = "pier.dev/app"
	LabelBuild     = "pier.dev/build"
	managedBy      = "pier"
	componentBuild = "build"
)

// Paths inside the build Pod.
const (
	workspaceDir = "/workspace"
	layersDir    = "/layers"
	platformDir  = "/platform"
	registryDir  = "/var/run/pier/registry" // $DOCKER_CONFIG
	tokenDir     = "/var/run/pier/source"
	creatorPath  = "/cnb/lifecycle/creator"
	reportPath   = "/dev/termination-log"
)

// Keys of the build's Secret.
const (
	keyToken  = "source-token"
	envPrefix = "env."
)

// DefaultStartTimeout is how long a build Pod may take to start, beyond
// Config.Timeout (Config.StartTimeout).
const DefaultStartTimeout = 5 * time.Minute

// Registry is where built images go, and the credentials that push there.
type Registry struct {
	Host   string // host[:port]
	Prefix string // each app's repository is <Host>/<Prefix>/<app>; "pier" when empty
	// Username and Password are given to each build Pod, in its Secret,
	// for the app's repository.
	Username, Password string
	// Insecure: the registry speaks plain HTTP (or unverified TLS).
	Insecure bool
	// Credentials, when set, gives each build Pod credentials of its own,
	// scoped by the registry to the app's repository (Repository(app),
	// where the cache is a tag too), instead of Username and Password:
	// such as a build's credentials at the registry's token service
	// (registryauth). release, if not nil, is called once the build has
	// ended: the credentials should stop working then.
	Credentials func(ctx context.Context, app string) (username, password string, release func(), err error)
}

// Repository is the app's image repository.
func (r Registry) Repository(app string) string {
	prefix := r.Prefix
	if prefix == "" {
		prefix = "pier"
	}
	return r.Host + "/" + prefix + "/" + app
}

// CacheImage is the app's build cache: a tag of the app's own repository,
// so that no other app's name can ever reach it, and credentials scoped to
// the repository cover it.
func (r Registry) CacheImage(app string) string { return r.Repository(app) + ":cache" }

// Config configures the strategy.
type Config struct {
	Client   kubernetes.Interface
	Registry Registry
	// Sources serves the builds' source; SourceURL is pierd's internal
	// listener as build Pods reach it, such as
	// http://pier-internal.pier.svc:9091.
	Sources   *Sources
	SourceURL string
	// DefaultBuilder builds apps that chose no builder.
	DefaultBuilder string
	// FetchImage is an image holding pierd, whose `pierd fetch-source`
	// fetches the source (DefaultFetchImage when empty).
	FetchImage string
	// Namespace holds the build Pods (DefaultNamespace when empty); it is
	// created, labelled as Pier's, if missing.
	Namespace string
	// UID and GID run the build: the builder image's CNB user
	// (DefaultUID, DefaultGID when zero). Never 0.
	UID, GID int64
	// Timeout is the Pods' activeDeadlineSeconds (DefaultTimeout when
	// zero). A Pod not started within StartTimeout more fails too.
	Timeout      time.Duration
	StartTimeout time.Duration // default 5 min
	// LogDrain is how long the logs may go on once the Pod has ended
	// (default 5 s).
	LogDrain time.Duration
	Logger   *slog.Logger
}

// Strategy is the kubernetes build strategy.
type Strategy struct {
	cfg Config
	log *slog.Logger

	nsOnce sync.Mutex
	nsDone bool
}

// New checks cfg and makes the strategy.
func New(cfg Config) (*Strategy, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("kubernetes build strategy: no Kubernetes client")
	case cfg.Sources == nil:
		return nil, errors.New("kubernetes build strategy: no source server")
	case cfg.SourceURL == "":
		return nil, errors.New("kubernetes build strategy: no source URL: give the address at which build Pods reach pierd's internal listener, such as http://pier-internal.pier.svc:9091")
	case cfg.Registry.Host == "":
		return nil, errors.New("kubernetes build strategy: no registry: name one, such as registry.example:5000")
	case cfg.DefaultBuilder == "":
		return nil, errors.New("kubernetes build strategy: no default builder: name a CNB builder image")
	case cfg.UID < 0 || cfg.GID < 0:
		return nil, errors.New("kubernetes build strategy: the build uid and gid must not be negative")
	}
	if err := pier.ValidateImage(cfg.Registry.Repository("app")); err != nil {
		return nil, fmt.Errorf("kubernetes build strategy: registry %q: %s", cfg.Registry.Host, pier.ErrorMessage(err))
	}
	if err := pier.ValidateImage(cfg.DefaultBuilder); err != nil {
		return nil, fmt.Errorf("kubernetes build strategy: default builder: %s", pier.ErrorMessage(err))
	}
	cfg.SourceURL = strings.TrimRight(cfg.SourceURL, "/")
	if cfg.FetchImage == "" {
		cfg.FetchImage = DefaultFetchImage
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.UID == 0 {
		cfg.UID = DefaultUID
	}
	if cfg.GID == 0 {
		cfg.GID = DefaultGID
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.LogDrain <= 0 {
		cfg.LogDrain = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Strategy{cfg: cfg, log: cfg.Logger.With("component", "builder", "strategy", pier.StrategyKubernetes)}, nil
}

// Name is "kubernetes".
func (s *Strategy) Name() string { return pier.StrategyKubernetes }

// Namespace is where the build Pods run.
func (s *Strategy) Namespace() string { return s.cfg.Namespace }

// build is one build's names.
type build struct {
	id, name     string // name: of the Pod and its Secret
	app, builder string
	image        string // the tag the creator exports
	token        string
	sourceURL    string
	config       pier.Config
	release      func() // ends the build's registry credentials
}

func newBuildID() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tagOf names a build's image by its commit, as the pack strategy does.
func tagOf(commit string) string {
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if commit == "" {
		return "latest"
	}
	return "git-" + commit
}

// Build builds req's source in a Pod and returns the image by digest.
func (s *Strategy) Build(ctx context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	if err := pier.ValidateAppName(req.App); err != nil {
		return nil, err
	}
	if "pier-"+req.App == s.cfg.Namespace {
		return nil, pier.Errorf(pier.EINVALID, "app %q cannot be built: its namespace is the build namespace", req.App)
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout+s.cfg.StartTimeout)
	defer cancel()

	b := &build{id: newBuildID(), app: req.App, builder: req.Builder, config: req.Config}
	if b.builder == "" {
		b.builder = s.cfg.DefaultBuilder
	}
	b.name = "build-" + req.App + "-" + b.id
	b.image = s.cfg.Registry.Repository(req.App) + ":" + tagOf(req.Commit)
	b.sourceURL = s.cfg.SourceURL + SourcePathPrefix + b.id + "/source"

	src, err := os.CreateTemp("", "pier-build-source-*.tar.gz")
	if err != nil {
		return nil, err
	}
	defer os.Remove(src.Name())
	err = tarball.Write(src, req.SourceDir)
	if cerr := src.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pack the source: %w", err)
	}
	token, remove := s.cfg.Sources.Add(b.id, src.Name(), s.cfg.Timeout+s.cfg.StartTimeout)
	defer remove()
	b.token = token

	if err := s.ensureNamespace(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "-----> Building with %s in the cluster (pod %s/%s)\n", b.builder, s.cfg.Namespace, b.name)
	secret, err := s.secret(ctx, b)
	if b.release != nil {
		defer b.release()
	}
	if err != nil {
		return nil, err
	}
	pods, secrets := s.cfg.Client.CoreV1().Pods(s.cfg.Namespace), s.cfg.Client.CoreV1().Secrets(s.cfg.Namespace)
	if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create the build's secret: %w", err)
	}
	defer s.remove(b.name)
	pod, err := pods.Create(ctx, s.pod(b), metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create the build pod: %w", err)
	}
	// The Secret goes with the Pod, should pierd die before it deletes
	// both itself.
	secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}
	if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		s.log.Warn("owning the build secret by its pod", "pod", pod.Name, "err", err)
	}

	tail := newTail(8)
	lctx, stopLogs := context.WithCancel(ctx)
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		s.streamLogs(lctx, pod.Name, io.MultiWriter(log, tail))
	}()
	ended, err := s.wait(ctx, pod)
	// The logs end with the containers; give them a moment to arrive.
	select {
	case <-logsDone:
	case <-time.After(s.cfg.LogDrain):
	}
	stopLogs()
	<-logsDone
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, pier.Errorf(pier.EINVALID, "the build pod did not finish within %s: %s", s.cfg.Timeout+s.cfg.StartTimeout, pendingReason(ended))
		}
		return nil, err
	}
	if ended.Status.Phase != corev1.PodSucceeded {
		return nil, s.failure(ended, tail.lines())
	}
	digest, err := digestOf(ended)
	if err != nil {
		return nil, err
	}
	ref := s.cfg.Registry.Repository(req.App) + "@" + digest
	procs, err := s.processTypes(ctx, ref)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "-----> Built %s in %.1fs\n", ref, time.Since(start).Seconds())
	return &pier.BuildResult{Image: ref, ProcessTypes: procs}, nil
}

// ensureNamespace creates the build namespace, labelled as Pier's, unless
// it exists.
func (s *Strategy) ensureNamespace(ctx context.Context) error {
	s.nsOnce.Lock()
	defer s.nsOnce.Unlock()
	if s.nsDone {
		return nil
	}
	nss := s.cfg.Client.CoreV1().Namespaces()
	if _, err := nss.Get(ctx, s.cfg.Namespace, metav1.GetOptions{}); err == nil {
		s.nsDone = true
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("the build namespace %s: %w", s.cfg.Namespace, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.cfg.Namespace, Labels: map[string]string{
		LabelManagedBy: managedBy, LabelPartOf: "pier", LabelComponent: componentBuild,
	}}}
	if _, err := nss.Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the build namespace %s: %w", s.cfg.Namespace, err)
	}
	s.nsDone = true
	return nil
}

func (s *Strategy) labels(b *build) map[string]string {
	return map[string]string{
		LabelManagedBy: managedBy, LabelPartOf: "pier", LabelComponent: componentBuild,
		LabelApp: b.app, LabelBuild: b.id,
	}
}

// dockerConfig is the registry credentials as the lifecycle reads them
// ($DOCKER_CONFIG/config.json).
func (s *Strategy) dockerConfig(ctx context.Context, b *build) ([]byte, error) {
	app := b.app
	type auth struct {
		Username string `json:"username,omitempty"`
		Password string `json:"password,omitempty"`
		Auth     string `json:"auth,omitempty"`
	}
	auths := map[string]auth{}
	r := s.cfg.Registry
	user, pass := r.Username, r.Password
	if r.Credentials != nil {
		var err error
		var release func()
		user, pass, release, err = r.Credentials(ctx, app)
		if err != nil {
			return nil, fmt.Errorf("registry credentials for %s: %w", app, err)
		}
		if release != nil {
			prev := b.release
			b.release = func() {
				if prev != nil {
					prev()
				}
				release()
			}
		}
	}
	if user != "" {
		auths[r.Host] = auth{Username: user, Password: pass, Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
	}
	return json.Marshal(map[string]any{"auths": auths})
}

// secret is the build's credentials: registry, source token, config vars.
func (s *Strategy) secret(ctx context.Context, b *build) (*corev1.Secret, error) {
	dc, err := s.dockerConfig(ctx, b)
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{corev1.DockerConfigJsonKey: dc, keyToken: []byte(b.token)}
	for k, v := range b.config {
		if err := pier.ValidateConfigKey(k); err != nil {
			return nil, err
		}
		data[envPrefix+k] = []byte(v)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: b.name, Namespace: s.cfg.Namespace, Labels: s.labels(b)},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       data,
	}, nil
}

// creatorArgs are the lifecycle creator's arguments for b.
func (s *Strategy) creatorArgs(b *build) []string {
	r := s.cfg.Registry
	args := []string{
		"-app=" + workspaceDir,
		"-layers=" + layersDir,
		"-platform=" + platformDir,
		"-cache-image=" + r.CacheImage(b.app),
		"-previous-image=" + r.Repository(b.app) + ":latest",
		"-tag=" + r.Repository(b.app) + ":latest",
		"-report=" + reportPath,
		fmt.Sprintf("-uid=%d", s.cfg.UID),
		fmt.Sprintf("-gid=%d", s.cfg.GID),
	}
	if r.Insecure {
		args = append(args, "-insecure-registry="+r.Host)
	}
	return append(args, b.image)
}

// pod is b's build Pod.
func (s *Strategy) pod(b *build) *corev1.Pod {
	uid, gid := s.cfg.UID, s.cfg.GID
	containerSec := &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(uid),
		RunAsGroup:               ptr.To(gid),
		AllowPrivilegeEscalation: ptr.To(false),
		Privileged:               ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	fetchSec := containerSec.DeepCopy()
	fetchSec.ReadOnlyRootFilesystem = ptr.To(true)

	// /platform/env/<KEY> for each config var; the Secret's other keys
	// stay out of the build container.
	platform := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	if len(b.config) > 0 {
		keys := make([]string, 0, len(b.config))
		for k := range b.config {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		items := make([]corev1.KeyToPath, 0, len(keys))
		for _, k := range keys {
			items = append(items, corev1.KeyToPath{Key: envPrefix + k, Path: "env/" + k})
		}
		platform = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: b.name, Items: items, DefaultMode: ptr.To[int32](0o440)}}
	}
	secretItem := func(key, path string) corev1.VolumeSource {
		return corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: b.name, Items: []corev1.KeyToPath{{Key: key, Path: path}}, DefaultMode: ptr.To[int32](0o440),
		}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: b.name, Namespace: s.cfg.Namespace, Labels: s.labels(b)},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         ptr.To(int64(s.cfg.Timeout / time.Second)),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To(uid),
				RunAsGroup:     ptr.To(gid),
				FSGroup:        ptr.To(gid),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: []corev1.Volume{
				{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "layers", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "platform", VolumeSource: platform},
				{Name: "registry", VolumeSource: secretItem(corev1.DockerConfigJsonKey, "config.json")},
				{Name: "source-token", VolumeSource: secretItem(keyToken, "token")},
			},
			InitContainers: []corev1.Container{{
				Name:    "source",
				Image:   s.cfg.FetchImage,
				Command: []string{"pierd", "fetch-source"},
				Env: []corev1.EnvVar{
					{Name: EnvSourceURL, Value: b.sourceURL},
					{Name: EnvSourceTokenFile, Value: tokenDir + "/token"},
					{Name: EnvSourceDir, Value: workspaceDir},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "workspace", MountPath: workspaceDir},
					{Name: "source-token", MountPath: tokenDir, ReadOnly: true},
				},
				SecurityContext:          fetchSec,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Containers: []corev1.Container{{
				Name:    "build",
				Image:   b.builder,
				Command: []string{creatorPath},
				Args:    s.creatorArgs(b),
				Env: []corev1.EnvVar{
					{Name: "CNB_PLATFORM_API", Value: PlatformAPI},
					{Name: "CNB_USER_ID", Value: fmt.Sprint(uid)},
					{Name: "CNB_GROUP_ID", Value: fmt.Sprint(gid)},
					{Name: "DOCKER_CONFIG", Value: registryDir},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "workspace", MountPath: workspaceDir},
					{Name: "layers", MountPath: layersDir},
					{Name: "platform", MountPath: platformDir, ReadOnly: true},
					{Name: "registry", MountPath: registryDir, ReadOnly: true},
				},
				SecurityContext:          containerSec,
				TerminationMessagePath:   reportPath,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
		},
	}
}

// wait follows pod until it has ended (Succeeded or Failed), is deleted,
// or cannot start, and returns its last state.
func (s *Strategy) wait(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	pods := s.cfg.Client.CoreV1().Pods(pod.Namespace)
	last := pod
	rv := pod.ResourceVersion
	started := time.Now()
	for {
		if done, err := s.settled(last, started); done || err != nil {
			return last, err
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
			ResourceVersion: rv,
		})
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			// Watch from now on (the version may be too old).
			p, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			if gerr != nil {
				if apierrors.IsNotFound(gerr) {
					return last, pier.Errorf(pier.EINVALID, "the build pod %s was deleted before it finished", pod.Name)
				}
				return last, fmt.Errorf("follow the build pod: %w", err)
			}
			last, rv = p, p.ResourceVersion
			select {
			case <-ctx.Done():
				return last, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		expired := false
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Error:
				expired = true
			case watch.Deleted:
				w.Stop()
				return last, pier.Errorf(pier.EINVALID, "the build pod %s was deleted before it finished", pod.Name)
			case watch.Added, watch.Modified:
				p, ok := ev.Object.(*corev1.Pod)
				if !ok || p.Name != pod.Name {
					continue
				}
				last, rv = p, p.ResourceVersion
				if done, err := s.settled(last, started); done || err != nil {
					w.Stop()
					return last, err
				}
			}
			if expired {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		if expired {
			p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return last, pier.Errorf(pier.EINVALID, "the build pod %s was deleted before it finished", pod.Name)
			} else if err == nil {
				last, rv = p, p.ResourceVersion
			}
		}
	}
}

// settled says whether p has ended, or cannot start (an error then).
func (s *Strategy) settled(p *corev1.Pod, started time.Time) (bool, error) {
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return true, nil
	}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError":
				return true, pier.Errorf(pier.EINVALID, "the build pod cannot start its %s container (%s): %s: %s", cs.Name, cs.Image, w.Reason, clipMessage(w.Message))
			}
		}
	}
	if p.Status.Phase == corev1.PodPending && p.Status.StartTime == nil && time.Since(started) > s.cfg.StartTimeout {
		return true, pier.Errorf(pier.EUNAVAILABLE, "the build pod did not start within %s: %s", s.cfg.StartTimeout, pendingReason(p))
	}
	return false, nil
}

// pendingReason says why p has not started, from its conditions.
func pendingReason(p *corev1.Pod) string {
	if p == nil {
		return "no status"
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return fmt.Sprintf("%s: %s", c.Type, clipMessage(c.Message))
		}
	}
	return "phase " + string(p.Status.Phase)
}

// failure is the error of a build whose Pod failed: the failing
// container's reason and message (its last log lines, by the Pod's
// terminationMessagePolicy), or what was streamed last.
func (s *Strategy) failure(p *corev1.Pod, tail []string) error {
	if p.Status.Reason == "DeadlineExceeded" {
		return pier.Errorf(pier.EINVALID, "the build did not finish within %s (the build pod's deadline): make it faster, or ask the operator for a longer build timeout", s.cfg.Timeout)
	}
	what := "the build pod failed"
	if p.Status.Reason != "" || p.Status.Message != "" {
		what += ": " + strings.Trim(p.Status.Reason+": "+clipMessage(p.Status.Message), ": ")
	}
	for _, group := range []struct {
		label string
		st    []corev1.ContainerStatus
	}{{"fetching the source", p.Status.InitContainerStatuses}, {"the buildpacks build", p.Status.ContainerStatuses}} {
		for _, cs := range group.st {
			t := cs.State.Terminated
			if t == nil || t.ExitCode == 0 {
				continue
			}
			what = fmt.Sprintf("%s failed (container %s: %s, exit code %d)", group.label, cs.Name, t.Reason, t.ExitCode)
			if msg := lastLines(t.Message, 5); msg != "" {
				return pier.Errorf(pier.EINVALID, "%s:\n%s", what, msg)
			}
			break
		}
	}
	if len(tail) > 0 {
		return pier.Errorf(pier.EINVALID, "%s; the build's last lines:\n%s", what, strings.Join(tail, "\n"))
	}
	return pier.Errorf(pier.EINVALID, "%s", what)
}

var digestRE = regexp.MustCompile(`(?m)^\s*digest\s*=\s*"(sha256:[0-9a-f]{64})"\s*$`)

// digestOf reads the image digest from the creator's report (report.toml,
// written to the build container's termination message).
func digestOf(p *corev1.Pod) (string, error) {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != "build" || cs.State.Terminated == nil {
			continue
		}
		if m := digestRE.FindStringSubmatch(cs.State.Terminated.Message); m != nil {
			return m[1], nil
		}
	}
	return "", pier.Errorf(pier.EINVALID, "the build pod succeeded but reported no image digest (is its builder's lifecycle new enough for platform API %s?)", PlatformAPI)
}

func clipMessage(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// streamLogs copies the build Pod's containers' logs to w, one container
// after the other, as each starts; until ctx ends.
func (s *Strategy) streamLogs(ctx context.Context, name string, w io.Writer) {
	pods := s.cfg.Client.CoreV1().Pods(s.cfg.Namespace)
	for _, c := range []string{"source", "build"} {
		// Wait for the container to start (or end).
		for {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				if ctx.Err() != nil || apierrors.IsNotFound(err) {
					return
				}
			} else if containerStarted(p, c) {
				break
			} else if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		rc, err := pods.GetLogs(name, &corev1.PodLogOptions{Container: c, Follow: true}).Stream(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("build logs", "pod", name, "container", c, "err", err)
			}
			continue
		}
		copyLines(w, rc)
		rc.Close()
		if ctx.Err() != nil {
			return
		}
	}
}

func containerStarted(p *corev1.Pod, name string) bool {
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs.State.Running != nil || cs.State.Terminated != nil
		}
	}
	return false
}

// maxLine bounds one log line sent on; a longer one is cut.
const maxLine = 16 << 10

func copyLines(w io.Writer, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				line = append(line[:len(line):len(line)], '\n')
				// The rest of a cut line is dropped.
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
			}
			w.Write(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// tail keeps the last lines written to it.
type tail struct {
	mu   sync.Mutex
	n    int
	buf  []string
	part []byte
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := strings.IndexByte(string(t.part), '\n')
		if i < 0 {
			break
		}
		t.buf = append(t.buf, string(t.part[:i]))
		t.part = t.part[i+1:]
		if len(t.buf) > t.n {
			t.buf = t.buf[len(t.buf)-t.n:]
		}
	}
	return len(p), nil
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.buf...)
}

// remove deletes a build's Pod and Secret.
func (s *Strategy) remove(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg, GracePeriodSeconds: ptr.To[int64](0)}
	if err := s.cfg.Client.CoreV1().Pods(s.cfg.Namespace).Delete(ctx, name, opts); err != nil && !apierrors.IsNotFound(err) {
		s.log.Warn("delete the build pod", "pod", name, "err", err)
	}
	if err := s.cfg.Client.CoreV1().Secrets(s.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		s.log.Warn("delete the build secret", "secret", name, "err", err)
	}
}

// Cleanup deletes the build Pods and Secrets that builds left behind (a
// pierd that stopped mid-build). Call it at start, before any build: one
// pierd runs the builds of an installation.
func (s *Strategy) Cleanup(ctx context.Context) error {
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy + "," + LabelComponent + "=" + componentBuild}
	bg := metav1.DeletePropagationBackground
	var errs []error
	if err := s.cfg.Client.CoreV1().Pods(s.cfg.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg, GracePeriodSeconds: ptr.To[int64](0)}, sel); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete leftover build pods: %w", err))
	}
	if err := s.cfg.Client.CoreV1().Secrets(s.cfg.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete leftover build secrets: %w", err))
	}
	return errors.Join(errs...)
}
