package pier

import (
	"context"
	"io"
	"strings"
	"time"
)

// Process states, as `pier ps` shows them.
const (
	ProcessStarting = "starting" // started, not yet accepting connections
	ProcessUp       = "up"       // running (web: accepting connections on its port)
	ProcessCrashed  = "crashed"  // exited; waiting for its restart backoff
	ProcessStopping = "stopping" // draining after SIGTERM
)

// Process is one instance of a process type of an app, such as web.2.
type Process struct {
	App       string    `json:"app"`
	Type      string    `json:"type"`
	Index     int       `json:"index"` // 1-based: web.1, web.2...
	Release   int       `json:"release"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at"`
	Restarts  int       `json:"restarts"`
	// Reason says why the process last went down, when the scheduler
	// knows, such as "killed: out of memory (limit 64Mi)".
	Reason string `json:"reason,omitempty"`
	// Addr is host:port where a ready web process accepts connections;
	// the router sends traffic there. Never shown to users.
	Addr string `json:"-"`
}

// Deployment is what an app should run: a release (its build and config),
// how many processes of each type, and the resources each type may use.
type Deployment struct {
	App       string
	Release   Release
	Formation Formation
	Limits    map[string]Limits // by process type; absent: no limits set
	// UID is the app's uid (App.UID): the local scheduler, as root, runs
	// the app's processes as this uid and gid. 0: none allocated.
	UID int
}

// Limits are the resources of each process of one type, in Kubernetes
// quantity syntax (Deis Workflow's limits:set). Empty: not set. The local
// scheduler enforces them with cgroups as root, with rlimits otherwise
// (memory only: see scheduler/local/rlimit_linux.go).
type Limits struct {
	Memory string `json:"memory,omitempty"` // such as 512Mi
	CPU    string `json:"cpu,omitempty"`    // such as 500m
}

// LogLine is one line an app process (or the platform, about it) wrote.
type LogLine struct {
	Time    time.Time `json:"time"`
	App     string    `json:"app"`
	Process string    `json:"process"` // "web.1", "run.1", or "pier" for platform messages
	Text    string    `json:"text"`
}

// LogOptions choose which log lines to read.
type LogOptions struct {
	Lines  int    // the last N lines (0: a default)
	Follow bool   // keep streaming new lines until ctx ends
	Type   string // only this process type ("" for all)
}

// Bounds of what `pier logs` may ask for.
const (
	LogLinesDefault = 100
	LogLinesMax     = 10000
)

// Validate checks a log request. Lines 0 means LogLinesDefault.
func (o LogOptions) Validate() error {
	if o.Lines < 0 || o.Lines > LogLinesMax {
		return Errorf(EINVALID, "cannot show %d log lines: ask for 1 to %d", o.Lines, LogLinesMax)
	}
	if o.Type != "" {
		return ValidateProcessType(o.Type)
	}
	return nil
}

// RunOptions describe a one-off process (`pier run`).
type RunOptions struct {
	Command []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// Bounds of a one-off command: far below the kernel's argv limit, and
// enough for any command line typed or scripted.
const (
	CommandArgsMax  = 1000
	CommandBytesMax = 64 << 10
)

// ValidateCommand checks the argv of a one-off process. The command is run
// as given, never through a shell: to use one, run ["sh", "-c", "..."].
// Messages never echo the arguments, which may hold secrets.
func ValidateCommand(argv []string) error {
	if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
		return Errorf(EINVALID, "no command given: give the program and its arguments, such as [\"sh\", \"-c\", \"echo hi\"]")
	}
	if len(argv) > CommandArgsMax {
		return Errorf(ETOOLARGE, "the command has %d arguments: at most %d", len(argv), CommandArgsMax)
	}
	total := 0
	for i, a := range argv {
		total += len(a) + 1
		if strings.IndexByte(a, 0) >= 0 {
			return Errorf(EINVALID, "argument %d of the command contains a NUL byte, which no process can receive", i+1)
		}
	}
	if total > CommandBytesMax {
		return Errorf(ETOOLARGE, "the command is %d bytes: at most %d", total, CommandBytesMax)
	}
	return nil
}

// Scheduler runs apps' processes. Apply converges an app onto a deployment
// and is idempotent: applying the same deployment twice changes nothing.
// For a new release it starts the new processes, waits until each new web
// process accepts connections, and only then stops the old ones; if the new
// ones do not come up, it stops them, keeps the old ones and returns why.
//
// Apply returns only once the deployment is available, or with an error.
// When the processes did not become available (crashed on boot, failed
// their readiness checks, missed the scheduler's deadline) the error must
// satisfy errors.Is(err, ErrRolloutFailed): an *Error of code EROLLOUT
// whose message says what did not come up, such as
//
//	pier.Errorf(pier.EROLLOUT, "v5 did not come up: web: 0/1 new processes ready within 5m")
//
// The controller then marks that release failed and applies the previous
// one; the scheduler need not roll back itself. Any other error (the API
// server unreachable, ctx ended) is taken as transient and marks nothing.
// The message is shown to users and kept in the audit log: no secrets.
type Scheduler interface {
	Apply(ctx context.Context, d Deployment) error
	Processes(ctx context.Context, app string) ([]Process, error)
	Restart(ctx context.Context, app, processType string) error // "" restarts every type
	Logs(ctx context.Context, app string, opts LogOptions, fn func(LogLine) error) error
	Run(ctx context.Context, d Deployment, opts RunOptions) (exitCode int, err error)
	Destroy(ctx context.Context, app string) error
}

// ImageRunner is an optional interface of a Scheduler. CanRunImages
// returns nil if the scheduler runs builds of strategy StrategyImage (a
// container image reference, from `pier builds:create`), or an *Error
// (EUNAVAILABLE) saying that it cannot and what to do instead. The
// controller asks before it records such a build, and before it applies a
// release of one. A Scheduler that does not implement ImageRunner is taken
// to run images (Kubernetes, Docker); the local scheduler, which runs build
// directories on this host, implements it to refuse them.
type ImageRunner interface {
	CanRunImages() error
}

// BuildRequest asks a build strategy to turn source into something runnable.
type BuildRequest struct {
	App       string
	Commit    string
	SourceDir string // a checked-out copy of the pushed tree, the build's to use
	Config    Config // the app's config vars, visible to the build
	// Builder is the app's CNB builder image (`pier buildpacks:set-builder`),
	// "" for the strategy's default. Strategies without builders ignore it.
	Builder string
	Log     io.Writer // build output, streamed to the pusher
	// UID is the app's uid (App.UID): the host strategy, as root, builds
	// as this uid and gid. 0: none allocated.
	UID int
}

// BuildResult is a strategy's output: Image names it (an image reference,
// or for the host strategy a path in the build store) and ProcessTypes
// come from the CNB launch metadata or the Procfile.
type BuildResult struct {
	Image        string
	ProcessTypes map[string]string
	// Strategy, when set, is the strategy that really built, if not the
	// one asked: the pack strategy builds an app with a Dockerfile as
	// StrategyDockerfile.
	Strategy string
}

// BuildStrategy builds source: "host" (the CNB lifecycle on this machine)
// or "pack" (pack and a Docker daemon).
type BuildStrategy interface {
	Name() string
	Build(ctx context.Context, req BuildRequest) (*BuildResult, error)
}

// BuildDiscarder is an optional interface of a BuildStrategy: Discard
// removes the output of a build that no Build row will ever name, because
// writing the row failed (a full disk, the database gone). The host
// strategy's build dirs would otherwise stay, unreferenced, for good.
type BuildDiscarder interface {
	Discard(res *BuildResult) error
}

// AppLister is an optional interface of a Scheduler: Apps names every app
// it runs something of. At start the reconciler destroys what runs of
// apps that no longer exist (destroyed while pierd was down, or whose
// destroy did not finish). The local scheduler has nothing left running at
// start and does not implement it.
type AppLister interface {
	Apps(ctx context.Context) ([]string, error)
}

// DriftNotifier is an optional interface of a Scheduler: after NotifyDrift,
// the scheduler calls fn with an app's name whenever something it runs of
// the app went away not by its own doing (someone deleted the app's
// Deployment, or its whole namespace). fn must return at once. The
// reconciler converges such an app again (Reconciler.Watch), so what
// Postgres says comes back without a restart of pierd.
type DriftNotifier interface {
	NotifyDrift(fn func(app string))
}
