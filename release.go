package pier

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Build is the output of one build of an app's source: an image (or, on the
// host strategy, a build directory) and the process types it defines.
type Build struct {
	ID           int64             `json:"id"`
	App          string            `json:"app"`
	Commit       string            `json:"commit,omitempty"`
	Strategy     string            `json:"strategy"`
	Image        string            `json:"image"`
	ProcessTypes map[string]string `json:"process_types"`
	Status       string            `json:"status"`
	CreatedBy    string            `json:"created_by"`
	CreatedAt    time.Time         `json:"created_at"`
	// Log is what the build strategy wrote, at most BuildLogMax bytes (a
	// longer log keeps its start and its end). Only the single-build
	// endpoint returns it; lists and releases leave it out.
	Log string `json:"log,omitempty"`
}

// BuildLogMax bounds the stored log of one build: a build that prints
// without end must not fill memory or the database.
const BuildLogMax = 1 << 20

// Build statuses.
const (
	BuildPending   = "pending"
	BuildSucceeded = "succeeded"
	BuildFailed    = "failed"
)

// StrategyImage is the strategy of a build made from an existing container
// image (`pier builds:create IMAGE`): its Image is the image reference, and
// each process type's command is a Procfile command line, or "" for the
// image's own entrypoint. Only schedulers that run images can run it (see
// ImageRunner).
const StrategyImage = "image"

// The build strategies that make images from pushed source: "pack" builds
// with Cloud Native Buildpacks through pack and a Docker daemon, and
// "dockerfile" with the daemon from the app's own Dockerfile. Their Image
// is name@sha256:digest in the platform's registry. "host" runs the CNB
// lifecycle on this machine, and its Image is a build directory.
// "kubernetes" runs the CNB lifecycle's creator in a build Pod of the
// cluster, which pushes name@sha256:digest to the registry as pack does.
const (
	StrategyHost       = "host"
	StrategyPack       = "pack"
	StrategyDockerfile = "dockerfile"
	StrategyKubernetes = "kubernetes"
)

// CNB says whether the build's image was made by Cloud Native Buildpacks:
// it then runs each process type as /cnb/process/<type> (the launcher) as
// the image's non-root CNB user. Other images (StrategyImage, Dockerfile
// builds) run their Procfile command or their own entrypoint.
func (b *Build) CNB() bool {
	return b.Strategy != StrategyImage && b.Strategy != StrategyDockerfile
}

// RunsImage says whether the build's output is a container image, which
// only an image-running scheduler (Docker, Kubernetes) can run; the host
// strategy's is a directory on the build host.
func (b *Build) RunsImage() bool { return StrategyRunsImage(b.Strategy) }

// StrategyRunsImage says whether builds of strategy make container images.
func StrategyRunsImage(strategy string) bool {
	switch strategy {
	case StrategyImage, StrategyPack, StrategyDockerfile, StrategyKubernetes:
		return true
	}
	return false
}

// Release is an immutable, numbered snapshot of what runs: a build and the
// config it runs with. Every deploy, config change and rollback adds one.
//
// The only thing that changes on a release is its Status: pending when it
// is written, succeeded once its processes were seen available, or failed
// when they did not become available (a rollout failure), with Failure
// saying why. The app's current release is its newest release that has not
// failed: marking one failed makes the one before it current again.
type Release struct {
	App       string     `json:"app"`
	Version   int        `json:"version"`
	Build     *Build     `json:"build,omitempty"`
	Config    Config     `json:"config,omitempty"`
	Note      string     `json:"note"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	Status    string     `json:"status,omitempty"`  // ReleasePending, ReleaseSucceeded or ReleaseFailed
	Failure   string     `json:"failure,omitempty"` // why a failed release failed
	FailedAt  *time.Time `json:"failed_at,omitempty"`
}

// Release statuses.
const (
	ReleasePending   = "pending"   // written; its processes not yet seen available
	ReleaseSucceeded = "succeeded" // its processes became available at least once
	ReleaseFailed    = "failed"    // its processes did not become available; never current again
)

// ReleaseFailureMax bounds the stored reason of a failed release.
const ReleaseFailureMax = 4 << 10

// ParseVersion accepts "v3" or "3".
func ParseVersion(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V"))
	if err != nil || n < 1 {
		return 0, Errorf(EINVALID, "release version %q is invalid: use a number such as v3", clip(s))
	}
	return n, nil
}

// Config is an app's environment: name → value.
type Config map[string]string

// Limits on config, chosen so that the whole environment fits comfortably in
// a process's argv+env limit and a Kubernetes Secret.
const (
	ConfigKeyMax   = 255
	ConfigValueMax = 32 << 10
	ConfigTotalMax = 256 << 10
	ConfigKeysMax  = 500
)

var configKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateConfigKey says what is wrong with a config variable name.
func ValidateConfigKey(key string) error {
	switch {
	case key == "":
		return Errorf(EINVALID, "config key is empty: use a name such as DATABASE_URL")
	case len(key) > ConfigKeyMax:
		return Errorf(EINVALID, "config key %q is too long: at most %d characters", clip(key), ConfigKeyMax)
	case !configKeyRE.MatchString(key):
		return Errorf(EINVALID, "config key %q is invalid: use letters, digits and '_', not starting with a digit", clip(key))
	case key == "PORT":
		return Errorf(EINVALID, "config key PORT is set by Pier for each process: choose another name")
	case strings.HasPrefix(key, "CNB_"):
		return Errorf(EINVALID, "config key %q is reserved for Cloud Native Buildpacks: choose another name", key)
	}
	return nil
}

// ConfigChange sets and unsets config variables in one release.
type ConfigChange struct {
	Set   Config
	Unset []string
}

// Validate checks every key and value; messages never include a value.
func (c ConfigChange) Validate() error {
	if len(c.Set) == 0 && len(c.Unset) == 0 {
		return Errorf(EINVALID, "no config change given: set KEY=VALUE or unset KEY")
	}
	for k, v := range c.Set {
		if err := ValidateConfigKey(k); err != nil {
			return err
		}
		if len(v) > ConfigValueMax {
			return Errorf(ETOOLARGE, "config value of %s is %d bytes: at most %d", k, len(v), ConfigValueMax)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return Errorf(EINVALID, "config value of %s contains a NUL byte, which no process environment can hold", k)
		}
	}
	for _, k := range c.Unset {
		if err := ValidateConfigKey(k); err != nil {
			return err
		}
		if _, ok := c.Set[k]; ok {
			return Errorf(EINVALID, "config key %s is both set and unset: give it once", k)
		}
	}
	return nil
}

// Apply returns base with the change applied, and a release note such as
// "Set A, B; unset C". It checks the limits of the resulting config.
func (c ConfigChange) Apply(base Config) (Config, string, error) {
	next := make(Config, len(base)+len(c.Set))
	for k, v := range base {
		next[k] = v
	}
	for k, v := range c.Set {
		next[k] = v
	}
	var unset []string
	for _, k := range c.Unset {
		if _, ok := next[k]; ok {
			unset = append(unset, k)
			delete(next, k)
		}
	}
	if len(c.Set) == 0 && len(unset) == 0 {
		return nil, "", Errorf(EINVALID, "config %s is not set: nothing to unset", strings.Join(c.Unset, ", "))
	}
	if len(next) > ConfigKeysMax {
		return nil, "", Errorf(ETOOLARGE, "config would have %d variables: at most %d", len(next), ConfigKeysMax)
	}
	total := 0
	for k, v := range next {
		total += len(k) + len(v)
	}
	if total > ConfigTotalMax {
		return nil, "", Errorf(ETOOLARGE, "config would be %d bytes: at most %d", total, ConfigTotalMax)
	}
	var parts []string
	if keys := sortedKeys(c.Set); len(keys) > 0 {
		parts = append(parts, "Set "+strings.Join(keys, ", "))
	}
	if len(unset) > 0 {
		sort.Strings(unset)
		verb := "Unset "
		if len(parts) > 0 {
			verb = "unset "
		}
		parts = append(parts, verb+strings.Join(unset, ", "))
	}
	return next, strings.Join(parts, "; "), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Formation is how many processes of each type should run.
type Formation map[string]int

// ProcessTypeMax bounds a process type name; ScaleMax bounds a quantity.
const (
	ProcessTypeMax = 30
	ScaleMax       = 100
)

var processTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// ValidateProcessType says what is wrong with a process type name.
func ValidateProcessType(t string) error {
	if len(t) == 0 || len(t) > ProcessTypeMax || !processTypeRE.MatchString(t) {
		return Errorf(EINVALID, "process type %q is invalid: use lowercase letters, digits and dashes, starting with a letter, at most %d characters", clip(t), ProcessTypeMax)
	}
	return nil
}

// Validate checks a scale request.
func (f Formation) Validate() error {
	if len(f) == 0 {
		return Errorf(EINVALID, "no process types given: scale with TYPE=N, such as web=2")
	}
	for t, n := range f {
		if err := ValidateProcessType(t); err != nil {
			return err
		}
		if n < 0 || n > ScaleMax {
			return Errorf(EINVALID, "cannot scale %s to %d: use 0 to %d", t, n, ScaleMax)
		}
	}
	return nil
}

// String renders a formation as "web=2 worker=1", sorted by type.
func (f Formation) String() string {
	var b strings.Builder
	for i, t := range sortedKeys(f) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", t, f[t])
	}
	return b.String()
}
