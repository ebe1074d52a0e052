package docker

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pierpaas/pier"
)

// Labels of every container Pier runs. Only containers labelled
// managed-by=pier are ever changed or removed.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "pier"
	LabelApp       = "io.pier.app"
	LabelType      = "io.pier.type"
	LabelIndex     = "io.pier.index"
	LabelRelease   = "io.pier.release"
	LabelPort      = "io.pier.port"
	LabelHash      = "io.pier.hash"
	// LabelInstance names the Pier installation (Config.Instance) that runs
	// the container: two installations sharing a daemon leave each
	// other's containers alone.
	LabelInstance = "io.pier.instance"
	// LabelOneOff marks the container of a one-off process (pier run).
	LabelOneOff = "io.pier.one-off"
)

// CNB images: the launcher runs a process type when invoked under its
// name in /cnb/process, and any command given after "--" directly.
const (
	cnbProcessDir = "/cnb/process/"
	cnbLauncher   = "/cnb/lifecycle/launcher"
	webType       = "web"
	runType       = "run"
	// nobody is the user of images that would run as root.
	nobody = "65534:65534"
)

// Bounds of what the daemon keeps of a container's output.
var logConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}}

// checkRunnable says why a deployment's build cannot run on Docker.
func checkRunnable(d pier.Deployment) error {
	b := d.Release.Build
	if b == nil {
		return nil
	}
	if !b.RunsImage() || strings.HasPrefix(b.Image, "/") {
		return pier.Errorf(pier.EINVALID, "v%d of %s was built by the %s strategy, whose output runs only on the build host: the Docker scheduler runs images; build with pack, or deploy an image (pier builds:create IMAGE)", d.Release.Version, d.App, b.Strategy)
	}
	if err := pier.ValidateImage(b.Image); err != nil {
		return pier.Errorf(pier.EINVALID, "v%d of %s cannot run: %s", d.Release.Version, d.App, pier.ErrorMessage(err))
	}
	if d.Release.Version < 1 {
		return pier.Errorf(pier.EINVALID, "release version %d of %s is invalid: releases are numbered from 1", d.Release.Version, d.App)
	}
	for _, t := range sortedKeys(b.ProcessTypes) {
		if err := pier.ValidateProcessType(t); err != nil {
			return err
		}
	}
	return nil
}

// processEntrypoint is the entrypoint of a process type, nil for the
// image's own entrypoint and command.
func processEntrypoint(b *pier.Build, typ string) []string {
	if b.CNB() {
		return []string{cnbProcessDir + typ}
	}
	if cmd := b.ProcessTypes[typ]; cmd != "" {
		return []string{"/bin/sh", "-c", cmd}
	}
	return nil
}

// runEntrypoint is the entrypoint of a one-off process: argv as given,
// never through a shell (CNB images: through the launcher, which sets the
// buildpacks' environment and then execs argv directly).
func runEntrypoint(b *pier.Build, argv []string) []string {
	if b.CNB() {
		return append([]string{cnbLauncher, "--"}, argv...)
	}
	return append([]string(nil), argv...)
}

// runAs chooses the user of a container from the image's USER: a CNB image
// runs as its CNB user and is refused if that is root; any other image that
// would run as root runs as nobody instead ("" keeps the image's user).
func runAs(d pier.Deployment, imageUser string) (string, error) {
	if !isRoot(imageUser) {
		return "", nil
	}
	if d.Release.Build.CNB() {
		return "", pier.Errorf(pier.EINVALID, "v%d of %s is a Cloud Native Buildpacks image whose USER is root: CNB images run as their non-root CNB user; rebuild it with a builder whose run image sets CNB_USER_ID and USER", d.Release.Version, d.App)
	}
	return nobody, nil
}

// isRoot says whether an image's USER ("name", "uid", "name:group",
// "uid:gid", or empty for root) is root.
func isRoot(user string) bool {
	u, _, _ := strings.Cut(user, ":")
	return u == "" || u == "root" || u == "0"
}

// resources turns Pier limits into a container's memory and CPU limits.
func resources(typ string, l pier.Limits) (container.Resources, error) {
	var r container.Resources
	if l.Memory != "" {
		if err := pier.ValidateMemory(l.Memory); err != nil {
			return r, pier.Errorf(pier.EINVALID, "%s: %s", typ, pier.ErrorMessage(err))
		}
		q, err := resource.ParseQuantity(l.Memory)
		if err != nil {
			return r, pier.Errorf(pier.EINVALID, "%s: memory limit %q is not a Kubernetes quantity: use such as 512Mi", typ, l.Memory)
		}
		// No swap on top, as on Kubernetes: the limit is the limit.
		r.Memory, r.MemorySwap = q.Value(), q.Value()
	}
	if l.CPU != "" {
		if err := pier.ValidateCPU(l.CPU); err != nil {
			return r, pier.Errorf(pier.EINVALID, "%s: %s", typ, pier.ErrorMessage(err))
		}
		q, err := resource.ParseQuantity(l.CPU)
		if err != nil {
			return r, pier.Errorf(pier.EINVALID, "%s: cpu limit %q is not a Kubernetes quantity: use such as 500m", typ, l.CPU)
		}
		r.NanoCPUs = q.MilliValue() * 1e6
	}
	return r, nil
}

// spec is what defines the containers of one process type of a release;
// each container adds its index and port.
type spec struct {
	app        string
	typ        string
	release    int
	image      string
	entrypoint []string // nil: the image's own
	user       string   // "": the image's own
	env        []string // the release's config, sorted; no PORT
	res        container.Resources
	hash       string
}

// newSpec is the spec of process type typ of d, for an image whose USER is
// imageUser.
func newSpec(d pier.Deployment, typ, imageUser string) (*spec, error) {
	res, err := resources(typ, d.Limits[typ])
	if err != nil {
		return nil, err
	}
	user, err := runAs(d, imageUser)
	if err != nil {
		return nil, err
	}
	sp := &spec{
		app:        d.App,
		typ:        typ,
		release:    d.Release.Version,
		image:      d.Release.Build.Image,
		entrypoint: processEntrypoint(d.Release.Build, typ),
		user:       user,
		env:        configEnv(d.Release.Config),
		res:        res,
	}
	sp.hash = sp.fingerprint()
	return sp, nil
}

func configEnv(c pier.Config) []string {
	env := make([]string, 0, len(c))
	for _, k := range sortedKeys(c) {
		env = append(env, k+"="+c[k])
	}
	return env
}

// fingerprint identifies what a container runs: the same hash means an
// existing container is what Apply would create (but for its port). The
// release is part of it: a new release means new containers, as its label
// says which release runs.
func (sp *spec) fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "v%d\x00%s\x00%s\x00", sp.release, sp.image, sp.user)
	for _, a := range sp.entrypoint {
		fmt.Fprintf(h, "%s\x00", a)
	}
	h.Write([]byte{1})
	for _, e := range sp.env {
		fmt.Fprintf(h, "%s\x00", e)
	}
	fmt.Fprintf(h, "\x01%d\x00%d", sp.res.Memory, sp.res.NanoCPUs)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// containerName is such as pier-myapp-web-1-v7-3f9a2c: unique, and
// readable in `docker ps`.
func containerName(app, typ string, index, release int) string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("pier-%s-%s-%d-v%d-%s", app, typ, index, release, hex.EncodeToString(b[:]))
}

// create is the container of process index of sp, listening on port.
func (sp *spec) create(index, port int) (*container.Config, *container.HostConfig) {
	env := append([]string{
		"PORT=" + strconv.Itoa(port),
		"DYNO=" + sp.typ + "." + strconv.Itoa(index),
	}, sp.env...)
	cfg := &container.Config{
		Image:      sp.image,
		Entrypoint: sp.entrypoint,
		User:       sp.user,
		Env:        env,
		Labels: map[string]string{
			LabelManagedBy: managedBy,
			LabelApp:       sp.app,
			LabelType:      sp.typ,
			LabelIndex:     strconv.Itoa(index),
			LabelRelease:   strconv.Itoa(sp.release),
			LabelPort:      strconv.Itoa(port),
			LabelHash:      sp.hash,
		},
	}
	return cfg, hostConfig(sp.res, container.RestartPolicy{Name: container.RestartPolicyUnlessStopped})
}

// hostConfig is what every container of Pier gets: the host's network (the
// process listens on its own PORT on 127.0.0.1), no capabilities, no way to
// gain privileges, and bounded logs.
func hostConfig(res container.Resources, restart container.RestartPolicy) *container.HostConfig {
	return &container.HostConfig{
		NetworkMode:   network,
		RestartPolicy: restart,
		CapDrop:       []string{"ALL"},
		SecurityOpt:   []string{"no-new-privileges"},
		Resources:     res,
		LogConfig:     logConfig,
	}
}

const network = container.NetworkMode("host")

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func clip(s string) string { return clipN(s, 40) }

func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
