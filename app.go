package pier

import (
	"regexp"
	"strings"
	"time"
)

// App is a deployable application. Its name is a DNS label so that it can be
// a hostname (<app>.<platform domain>) and a Kubernetes namespace suffix.
type App struct {
	ID    int64  `json:"-"`
	Name  string `json:"name"`
	Owner string `json:"owner"`
	// UID is the app's own uid (and gid) on hosts that run its builds and
	// processes as per-app users (the local scheduler when pierd is root).
	// The store allocates it from a counter when the app is created, unique
	// among the apps that exist; 0 when none is allocated.
	UID       int       `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AppInfo is an app with what `apps:info` shows about it.
type AppInfo struct {
	App
	URL       string    `json:"url"`
	GitURL    string    `json:"git_url,omitempty"` // where to git push, when a builder runs
	Release   *Release  `json:"release"`
	Formation Formation `json:"formation"`
	// Limits are the resources of each process type that has any.
	Limits  map[string]Limits `json:"limits,omitempty"`
	Domains []string          `json:"domains"`
	Members []Member          `json:"members"`
}

const (
	AppNameMin = 3
	AppNameMax = 30
)

var appNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$`)

// reservedAppNames are names the platform routes itself or that would
// collide with infrastructure (Kubernetes namespaces, well-known hosts).
var reservedAppNames = map[string]bool{
	"pier": true, "www": true, "api": true, "admin": true, "default": true,
	"dashboard": true, "git": true, "builder": true, "router": true,
	"controller": true, "registry": true, "status": true, "login": true,
	"auth": true, "static": true, "assets": true, "mail": true,
	// pier-builds is the namespace of in-cluster build Pods.
	"builds": true,
}

// ValidateAppName says what is wrong with name, if anything.
func ValidateAppName(name string) error {
	switch {
	case name == "":
		return Errorf(EINVALID, "app name is empty: give a name such as \"my-app\"")
	case len(name) < AppNameMin || len(name) > AppNameMax:
		return Errorf(EINVALID, "app name %q is %d characters: use %d to %d", clip(name), len(name), AppNameMin, AppNameMax)
	case !appNameRE.MatchString(name):
		return Errorf(EINVALID, "app name %q is invalid: use lowercase letters, digits and dashes, starting with a letter and not ending with a dash", clip(name))
	case strings.Contains(name, "--"):
		return Errorf(EINVALID, "app name %q is invalid: it may not contain two dashes in a row", name)
	case reservedAppNames[name] || strings.HasPrefix(name, "kube-") || strings.HasPrefix(name, "pier-"):
		return Errorf(EINVALID, "app name %q is reserved by the platform: choose another", name)
	}
	return nil
}

// clip shortens untrusted input before it is echoed in a message.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// BuilderSetting is the CNB builder image an app's source is built with by
// the pack strategy. Builder is the app's own choice ("" for none); Default
// is the platform's, used when the app chose none.
type BuilderSetting struct {
	Builder string `json:"builder"`
	Default string `json:"default,omitempty"`
}
