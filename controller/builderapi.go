package controller

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/tarball"
)

// BuilderPathPrefix is where builders running alone (`pierd builder`) ask
// who a key belongs to, what a user may do to an app, and hand over a
// pushed commit to deploy, on the internal listener, each request with a
// builder service token. The builder keeps the git repositories and the
// SSH server; the controller keeps the users, the build strategy and the
// rollout, so a builder needs neither database credentials nor cluster
// rights.
const BuilderPathPrefix = "/internal/v1/builder/"

// The builder API's endpoints, under BuilderPathPrefix.
const (
	// GET ?fingerprint=SHA256:...: the user (pier.User) the SSH key is
	// registered to; 404 if none.
	BuilderUserPath = BuilderPathPrefix + "user"
	// GET ?app=NAME&user=USERNAME: BuilderAccess; 404 if the app does not
	// exist or the user may not see it.
	BuilderAccessPath = BuilderPathPrefix + "access"
	// POST ?app=NAME&user=USERNAME&commit=SHA with the checked-out tree
	// as a gzipped tarball (builder/tarball): answers 200 and a stream of
	// BuilderFrame, one JSON object a line, the build's output as it comes,
	// then the release or the error; errors found before the deploy starts
	// answer as every API error does.
	BuilderDeployPath = BuilderPathPrefix + "deploys"
)

// BuilderAccess is a user's access to an app.
type BuilderAccess struct {
	App  pier.App `json:"app"`
	Role string   `json:"role"`
}

// BuilderFrame is one line of a deploy's answer: exactly one field is set.
type BuilderFrame struct {
	Log     string        `json:"log,omitempty"`     // output for the pusher's terminal
	Release *pier.Release `json:"release,omitempty"` // the deploy served: the last frame
	URL     string        `json:"url,omitempty"`     // with Release: where the app answers
	Error   *pier.Error   `json:"error,omitempty"`   // the deploy failed: the last frame
}

// BuilderDeploy is a pushed commit to deploy, its tree unpacked in
// SourceDir.
type BuilderDeploy struct {
	App, User, Commit, SourceDir string
	Log                          io.Writer // the pusher's terminal
}

// BuilderAuthorizer is what the builder API answers from (pier.Store).
type BuilderAuthorizer interface {
	UserForKey(ctx context.Context, fingerprint string) (*pier.User, error)
	AppAccess(ctx context.Context, name, username string) (*pier.App, string, error)
	FindUser(ctx context.Context, username string) (*pier.User, error)
}

// BuilderAPIConfig configures BuilderAPI.
type BuilderAPIConfig struct {
	Tokens pier.ServiceTokenStore // checks the builders' service tokens
	Store  BuilderAuthorizer
	// Deploy builds and releases a push, as pierd all does one of its own
	// builder's; it returns once the release serves.
	Deploy func(ctx context.Context, d BuilderDeploy) (*pier.Release, error)
	AppURL func(app string) string
	Logger *slog.Logger
	// TreeDir is where the pushed trees are unpacked while they build; the
	// caller empties it at start. "": the system's temporary directory.
	TreeDir string
}

// BuilderAPI serves the builder API (BuilderPathPrefix) on the internal
// listener.
func BuilderAPI(cfg BuilderAPIConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &builderAPI{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+BuilderUserPath, b.user)
	mux.HandleFunc("GET "+BuilderAccessPath, b.access)
	mux.HandleFunc("POST "+BuilderDeployPath, b.deploy)
	mux.HandleFunc(BuilderPathPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, cfg.Logger, pier.Errorf(pier.ENOTFOUND, "no such builder endpoint %s %s: builders use GET %s, GET %s and POST %s", r.Method, clipPath(r.URL.Path), BuilderUserPath, BuilderAccessPath, BuilderDeployPath))
	})
	return b.authenticated(mux)
}

type builderAPI struct{ cfg BuilderAPIConfig }

// authenticated lets through requests with a builder service token only.
func (b *builderAPI) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := CheckServiceToken(r.Context(), b.cfg.Tokens, r.Header.Get("Authorization"), pier.ScopeBuilder); err != nil {
			writeError(w, r, b.cfg.Logger, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (b *builderAPI) user(w http.ResponseWriter, r *http.Request) {
	fp := r.URL.Query().Get("fingerprint")
	if !strings.HasPrefix(fp, "SHA256:") || len(fp) > 128 {
		writeError(w, r, b.cfg.Logger, pier.Errorf(pier.EINVALID, "fingerprint must be an SSH key's SHA256 fingerprint (SHA256:...)"))
		return
	}
	u, err := b.cfg.Store.UserForKey(r.Context(), fp)
	if err != nil {
		writeError(w, r, b.cfg.Logger, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// appUser reads and checks the app and user parameters.
func appUser(r *http.Request) (app, user string, err error) {
	q := r.URL.Query()
	app, user = q.Get("app"), q.Get("user")
	if err := pier.ValidateAppName(app); err != nil {
		return "", "", err
	}
	if err := pier.ValidateUsername(user); err != nil {
		return "", "", err
	}
	return app, user, nil
}

func (b *builderAPI) access(w http.ResponseWriter, r *http.Request) {
	app, user, err := appUser(r)
	if err != nil {
		writeError(w, r, b.cfg.Logger, err)
		return
	}
	a, role, err := b.pushAccess(r.Context(), app, user)
	if err != nil {
		writeError(w, r, b.cfg.Logger, err)
		return
	}
	writeJSON(w, http.StatusOK, BuilderAccess{App: *a, Role: role})
}

// pushAccess returns app and user's role in it when user may push to it: a
// member, or an admin (role ""). The store answers a non-member with the
// app and an empty role, not an error: taking its error alone for a "yes"
// let any user with a key push to any app. A non-member gets the answer
// an unknown app gets (ENOTFOUND), so that apps' names do not leak.
func (b *builderAPI) pushAccess(ctx context.Context, app, user string) (*pier.App, string, error) {
	a, role, err := b.cfg.Store.AppAccess(ctx, app, user)
	if err != nil {
		return nil, "", err
	}
	if role == pier.RoleOwner || role == pier.RoleCollaborator {
		return a, role, nil
	}
	u, err := b.cfg.Store.FindUser(ctx, user)
	switch {
	case pier.ErrorCode(err) == pier.ENOTFOUND:
	case err != nil:
		return nil, "", err
	case u.Admin:
		return a, "", nil
	}
	return nil, "", pier.Errorf(pier.ENOTFOUND, "app %q not found", app)
}

func (b *builderAPI) deploy(w http.ResponseWriter, r *http.Request) {
	log := b.cfg.Logger
	app, user, err := appUser(r)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	commit := r.URL.Query().Get("commit")
	if !isObjectName(commit) {
		writeError(w, r, log, pier.Errorf(pier.EINVALID, "commit must be a full git object name (40 or 64 hexadecimal digits)"))
		return
	}
	// The builder checked this before the push; the user may have lost
	// the app since, and a builder is not taken at its word.
	if _, _, err := b.pushAccess(r.Context(), app, user); err != nil {
		writeError(w, r, log, err)
		return
	}
	src, err := os.MkdirTemp(b.cfg.TreeDir, "pier-src-")
	if err != nil {
		writeError(w, r, log, b.sourceError(err))
		return
	}
	defer os.RemoveAll(src)
	if err := tarball.Extract(r.Body, src); err != nil {
		if !pier.IsNoSpace(err) {
			err = pier.Errorf(pier.EINVALID, "the source: %v", err)
		}
		writeError(w, r, log, b.sourceError(err))
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	out := &frameWriter{w: w, rc: http.NewResponseController(w)}
	out.flush()
	// The request's context ends when the builder hangs up (the pusher
	// went away), as a push's context does in pierd all's own builder:
	// the deploy then stops as it would there.
	rel, err := b.cfg.Deploy(r.Context(), BuilderDeploy{App: app, User: user, Commit: commit, SourceDir: src, Log: out})
	if err != nil {
		if pier.ErrorCode(err) == pier.EINTERNAL {
			log.Error("deploy of a push", "app", app, "commit", commit, "err", err)
		}
		out.frame(BuilderFrame{Error: &pier.Error{Code: pier.ErrorCode(err), Message: pier.ErrorMessage(err)}})
		return
	}
	out.frame(BuilderFrame{Release: rel, URL: b.cfg.AppURL(app)})
}

// isObjectName says whether s is a full SHA-1 or SHA-256 object name.
func isObjectName(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

// frameWriter sends what is written to it as log frames, flushed at once
// so that the pusher sees the build as it goes. Build output is written
// from several goroutines (a build's stdout and stderr).
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
	rc *http.ResponseController
}

func (f *frameWriter) Write(p []byte) (int, error) {
	f.frame(BuilderFrame{Log: string(p)})
	return len(p), nil
}

func (f *frameWriter) frame(fr BuilderFrame) {
	line, _ := json.Marshal(fr)
	f.mu.Lock()
	defer f.mu.Unlock()
	// A builder that went away is not an error of the build's: the
	// deploy goes on without its audience.
	f.w.Write(append(line, '\n'))
	f.rc.Flush()
}

func (f *frameWriter) flush() {
	f.mu.Lock()
	f.rc.Flush()
	f.mu.Unlock()
}

// sourceError is a full disk where a pushed tree is unpacked as
// pier.NoSpace (the rest of the tree is removed), else err.
func (b *builderAPI) sourceError(err error) error {
	dir := b.cfg.TreeDir
	if dir == "" {
		dir = os.TempDir()
	}
	return pier.NoSpaceAt(dir, err)
}
