// Package buildpacks holds Pier's own Cloud Native Buildpacks: Go, Node.js,
// Python, static site and Procfile.
//
// All five are one Go program (cmd/pier-buildpack). `pier-buildpack install
// DIR` lays them out the way the CNB lifecycle expects a buildpacks
// directory (DIR/<escaped id>/<version>/{buildpack.toml,bin/detect,bin/build})
// plus DIR/order.toml. bin/detect and bin/build are symlinks to one copy of
// the program, which learns what to do from its argv[0] and from
// CNB_BUILDPACK_DIR. The buildpacks are written in Go rather than shell so
// that no shell ever sees the app's config values: they exec the toolchains
// (go, npm, python3) with argument vectors.
//
// The buildpacks use the host's toolchains (found on PATH) and keep their
// caches (GOCACHE/GOMODCACHE, the npm cache, the pip cache) in layers marked
// cache = true, which the platform keeps between builds of an app.
package buildpacks

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// API is the buildpack API version Pier's buildpacks implement. The
// lifecycle pinned in go.mod supports 0.7–0.11.
const API = "0.10"

// Version of Pier's buildpacks, as written in buildpack.toml.
const Version = "0.1.0"

// Buildpack describes one of Pier's buildpacks.
type Buildpack struct {
	Name   string // short name: "go"
	ID     string // CNB id: "pier/go"
	Title  string // what the build log says: "Go"
	detect func(app string) bool
	build  func(c *buildContext) error
}

// All lists Pier's buildpacks.
var All = []Buildpack{
	{Name: "go", ID: "pier/go", Title: "Go", detect: detectGo, build: buildGo},
	{Name: "nodejs", ID: "pier/nodejs", Title: "Node.js", detect: detectNode, build: buildNode},
	{Name: "python", ID: "pier/python", Title: "Python", detect: detectPython, build: buildPython},
	{Name: "static", ID: "pier/static", Title: "Static site", detect: detectStatic, build: buildStatic},
	{Name: "procfile", ID: "pier/procfile", Title: "Procfile", detect: detectProcfile, build: buildProcfile},
}

// Recognised names the files that make a buildpack detect an app, for the
// "no buildpack detected" message.
const Recognised = "go.mod (Go), package.json (Node.js), requirements.txt (Python), " +
	"index.html or public/ (static site), Procfile (any language)"

// Order is the lifecycle's order.toml: the first group whose non-optional
// buildpacks all pass wins. The Procfile buildpack is optional after each
// language so that a Procfile overrides the language's default processes
// (later buildpacks' processes replace earlier ones of the same type).
const Order = `[[order]]
  [[order.group]]
    id = "pier/go"
    version = "` + Version + `"
  [[order.group]]
    id = "pier/procfile"
    version = "` + Version + `"
    optional = true

[[order]]
  [[order.group]]
    id = "pier/nodejs"
    version = "` + Version + `"
  [[order.group]]
    id = "pier/procfile"
    version = "` + Version + `"
    optional = true

[[order]]
  [[order.group]]
    id = "pier/python"
    version = "` + Version + `"
  [[order.group]]
    id = "pier/procfile"
    version = "` + Version + `"
    optional = true

[[order]]
  [[order.group]]
    id = "pier/static"
    version = "` + Version + `"
  [[order.group]]
    id = "pier/procfile"
    version = "` + Version + `"
    optional = true

[[order]]
  [[order.group]]
    id = "pier/procfile"
    version = "` + Version + `"
`

func (b Buildpack) toml() string {
	// Buildpacks run on the host, not in a stack image: "*" accepts any
	// target, and no [[targets]] keeps the lifecycle from checking the
	// (absent) run image's OS/arch against them.
	return fmt.Sprintf(`api = %q

[buildpack]
  id = %q
  version = %q
  name = "Pier %s"
  clear-env = false
`, API, b.ID, Version, b.Title)
}

// escapedID is how the lifecycle names a buildpack's directory.
func escapedID(id string) string { return strings.ReplaceAll(id, "/", "_") }

// Install lays out every buildpack under dir for the lifecycle, with one
// copy of the program at exe (normally os.Executable()) that all the
// bin/detect and bin/build entries link to, and writes dir/order.toml.
func Install(dir, exe string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	prog := filepath.Join(dir, "pier-buildpack")
	if err := copyFile(exe, prog+".tmp", 0o755); err != nil {
		return err
	}
	// Rename so that a build running during a reinstall sees either the old
	// or the new program, never half of one.
	if err := os.Rename(prog+".tmp", prog); err != nil {
		return err
	}
	for _, b := range All {
		bpDir := filepath.Join(dir, escapedID(b.ID), Version)
		if err := os.MkdirAll(filepath.Join(bpDir, "bin"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(bpDir, "buildpack.toml"), []byte(b.toml()), 0o644); err != nil {
			return err
		}
		for _, phase := range []string{"detect", "build"} {
			link := filepath.Join(bpDir, "bin", phase)
			os.Remove(link)
			if err := os.Symlink(filepath.Join("..", "..", "..", "pier-buildpack"), link); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, "order.toml"), []byte(Order), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
