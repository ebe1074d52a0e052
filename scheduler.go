package pier

import (
	"context"
	"io"
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
	// Addr is host:port where a ready web process accepts connections;
	// the router sends traffic there. Never shown to users.
	Addr string `json:"-"`
}

// Deployment is what an app should run: a release (its build and config)
// and how many processes of each type.
type Deployment struct {
	App       string
	Release   Release
	Formation Formation
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

// RunOptions describe a one-off process (`pier run`).
type RunOptions struct {
	Command []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// Scheduler runs apps' processes. Apply converges an app onto a deployment
// and is idempotent: applying the same deployment twice changes nothing.
// For a new release it starts the new processes, waits until each new web
// process accepts connections, and only then stops the old ones; if the new
// ones do not come up, it stops them, keeps the old ones and returns why.
type Scheduler interface {
	Apply(ctx context.Context, d Deployment) error
	Processes(ctx context.Context, app string) ([]Process, error)
	Restart(ctx context.Context, app, processType string) error // "" restarts every type
	Logs(ctx context.Context, app string, opts LogOptions, fn func(LogLine) error) error
	Run(ctx context.Context, d Deployment, opts RunOptions) (exitCode int, err error)
	Destroy(ctx context.Context, app string) error
}

// BuildRequest asks a build strategy to turn source into something runnable.
type BuildRequest struct {
	App       string
	Commit    string
	SourceDir string    // a checked-out copy of the pushed tree, the build's to use
	Config    Config    // the app's config vars, visible to the build
	Log       io.Writer // build output, streamed to the pusher
}

// BuildResult is a strategy's output: Image names it (an image reference,
// or for the host strategy a path in the build store) and ProcessTypes
// come from the CNB launch metadata or the Procfile.
type BuildResult struct {
	Image        string
	ProcessTypes map[string]string
}

// BuildStrategy builds source: "host" (the CNB lifecycle on this machine)
// or "pack" (pack and a Docker daemon).
type BuildStrategy interface {
	Name() string
	Build(ctx context.Context, req BuildRequest) (*BuildResult, error)
}
