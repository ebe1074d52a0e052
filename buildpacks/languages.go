package buildpacks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/pierpaas/pier"
)

// ---- Go ----

func detectGo(app string) bool { return exists(filepath.Join(app, "go.mod")) }

func buildGo(c *buildContext) error {
	c.header("Go app detected")
	c.info("Using %s", output("go", "version"))
	cache, _, err := c.layer("go-cache")
	if err != nil {
		return err
	}
	// The build and module caches live in a cache-only layer: kept between
	// builds of the app (that is what makes warm builds fast) but never part
	// of what is launched.
	if err := c.setLayer("go-cache", layerTypes{Cache: true}, nil); err != nil {
		return err
	}
	binLayer, _, err := c.layer("bin")
	if err != nil {
		return err
	}
	if err := resetLayer(binLayer); err != nil {
		return err
	}
	binDir := filepath.Join(binLayer, "bin") // the launcher puts <layer>/bin on PATH
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	env := []string{
		"GOCACHE=" + filepath.Join(cache, "build"),
		"GOMODCACHE=" + filepath.Join(cache, "mod"),
		"GOPATH=" + filepath.Join(cache, "gopath"),
		// Writable module cache, so the platform can delete the layer; the
		// app's own GOFLAGS (a config var) are kept.
		"GOFLAGS=" + strings.TrimSpace(os.Getenv("GOFLAGS")+" -modcacherw"),
		// Use the host's toolchain; never download another one mid-build.
		"GOTOOLCHAIN=local",
		"CGO_ENABLED=0",
	}
	c.header("Compiling")
	if err := c.run(env, "go", "build", "-trimpath", "-o", binDir+string(os.PathSeparator), "./..."); err != nil {
		return err
	}
	if err := c.setLayer("bin", layerTypes{Launch: true}, nil); err != nil {
		return err
	}
	entries, err := os.ReadDir(binDir)
	if err != nil {
		return err
	}
	var cmds []string
	for _, e := range entries {
		cmds = append(cmds, e.Name())
	}
	c.info("Installed commands: %s", strings.Join(cmds, ", "))
	web := goWebCommand(c.app, cmds)
	if web == "" {
		if exists(filepath.Join(c.app, "Procfile")) {
			return c.writeLaunch(nil) // the Procfile says what runs
		}
		if len(cmds) == 0 {
			return fmt.Errorf("no main package found: nothing to run")
		}
		return fmt.Errorf("several commands (%s): add a Procfile saying which one is web", strings.Join(cmds, ", "))
	}
	procs := []process{{Type: "web", Command: []string{web}, Default: true}}
	c.showProcesses(procs)
	return c.writeLaunch(procs)
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+"?([^"\s]+)"?`)

// goWebCommand picks the command named after the module (the root main
// package), else the only command there is.
func goWebCommand(app string, cmds []string) string {
	data, _ := os.ReadFile(filepath.Join(app, "go.mod"))
	if m := moduleLine.FindSubmatch(data); m != nil {
		base := path.Base(string(m[1]))
		if regexp.MustCompile(`^v[0-9]+$`).MatchString(base) {
			base = path.Base(path.Dir(string(m[1])))
		}
		for _, c := range cmds {
			if c == base {
				return c
			}
		}
	}
	if len(cmds) == 1 {
		return cmds[0]
	}
	return ""
}

// ---- Node.js ----

func detectNode(app string) bool { return exists(filepath.Join(app, "package.json")) }

func buildNode(c *buildContext) error {
	c.header("Node.js app detected")
	c.info("Using node %s, npm %s", output("node", "--version"), output("npm", "--version"))
	var pkg struct {
		Main    string            `json:"main"`
		Scripts map[string]string `json:"scripts"`
	}
	data, err := os.ReadFile(filepath.Join(c.app, "package.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		return fmt.Errorf("package.json: %v", err)
	}
	cache, _, err := c.layer("npm-cache")
	if err != nil {
		return err
	}
	if err := c.setLayer("npm-cache", layerTypes{Cache: true}, nil); err != nil {
		return err
	}
	env := []string{
		"npm_config_cache=" + cache,
		"npm_config_update_notifier=false",
		"npm_config_fund=false",
		"npm_config_audit=false",
	}
	if exists(filepath.Join(c.app, "package-lock.json")) || exists(filepath.Join(c.app, "npm-shrinkwrap.json")) {
		c.header("Installing dependencies (npm ci)")
		if err := c.run(env, "npm", "ci"); err != nil {
			return err
		}
	} else {
		c.header("Installing dependencies (npm install: no package-lock.json)")
		if err := c.run(env, "npm", "install"); err != nil {
			return err
		}
	}
	if pkg.Scripts["build"] != "" {
		c.header("Running build (npm run build)")
		if err := c.run(env, "npm", "run", "build"); err != nil {
			return err
		}
	}
	// Launch-time settings: production mode, and npm quiet and not trying
	// to write logs or check for updates from a read-only home.
	envLayer, _, err := c.layer("env")
	if err != nil {
		return err
	}
	for k, v := range map[string]string{
		"NODE_ENV":                   "production",
		"npm_config_update_notifier": "false",
		"npm_config_logs_max":        "0",
	} {
		if err := launchEnv(envLayer, k, v); err != nil {
			return err
		}
	}
	if err := c.setLayer("env", layerTypes{Launch: true}, nil); err != nil {
		return err
	}
	var procs []process
	switch {
	case pkg.Scripts["start"] != "":
		procs = []process{{Type: "web", Command: []string{"npm", "start"}, Default: true}}
	case exists(filepath.Join(c.app, "server.js")):
		procs = []process{{Type: "web", Command: []string{"node", "server.js"}, Default: true}}
	case pkg.Main != "" && exists(filepath.Join(c.app, pkg.Main)):
		procs = []process{{Type: "web", Command: []string{"node", pkg.Main}, Default: true}}
	case !exists(filepath.Join(c.app, "Procfile")):
		c.info("No start script, server.js or main in package.json: no web process (add a Procfile)")
	}
	c.showProcesses(procs)
	return c.writeLaunch(procs)
}

// ---- Python ----

func detectPython(app string) bool { return exists(filepath.Join(app, "requirements.txt")) }

// pipNetworkErrors are what pip prints when it cannot reach an index.
var pipNetworkErrors = []string{
	"NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
	"Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ProxyError",
	"Read timed out", "Could not fetch URL",
}

func buildPython(c *buildContext) error {
	c.header("Python app detected")
	version := output("python3", "--version")
	c.info("Using %s", version)
	reqs, err := os.ReadFile(filepath.Join(c.app, "requirements.txt"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(reqs)
	want := map[string]string{"python": version, "requirements": hex.EncodeToString(sum[:])}

	// The virtualenv is launched and cached: the platform builds in the
	// directory it later runs from, so the venv's absolute paths stay valid.
	venv, prev, err := c.layer("venv")
	if err != nil {
		return err
	}
	python := filepath.Join(venv, "bin", "python")
	want["path"] = venv
	if prev["path"] != "" && prev["path"] != venv && exists(python) {
		// Each build has its own directory, so a cached venv has moved
		// since pip wrote its scripts: point them at where it is now.
		if err := relocateVenv(venv, prev["path"]); err != nil {
			return err
		}
	}
	if prev["python"] == version && prev["requirements"] == want["requirements"] && exists(python) {
		c.header("Reusing virtualenv: requirements.txt and Python unchanged")
		return c.finishPython(want)
	}
	if prev["python"] != version || !exists(python) {
		c.header("Creating virtualenv")
		if err := resetLayer(venv); err != nil {
			return err
		}
		if err := c.run(nil, "python3", "-m", "venv", venv); err != nil {
			return err
		}
	}
	pipCache, _, err := c.layer("pip-cache")
	if err != nil {
		return err
	}
	if err := c.setLayer("pip-cache", layerTypes{Cache: true}, nil); err != nil {
		return err
	}
	c.header("Installing requirements with pip")
	var out bytes.Buffer
	err = c.runTee(&out, nil, python, "-m", "pip", "install",
		"--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "15",
		"--cache-dir", pipCache, "-r", "requirements.txt")
	if err != nil {
		for _, s := range pipNetworkErrors {
			if strings.Contains(out.String(), s) {
				// Name the variable, never its value: an index URL may hold
				// credentials.
				index := "https://pypi.org/simple"
				if os.Getenv("PIP_INDEX_URL") != "" {
					index = "the index set in PIP_INDEX_URL"
				}
				return fmt.Errorf("pip could not download the requirements from %s: the package index is "+
					"unreachable from this host (set PIP_INDEX_URL to a reachable index, or vendor the packages)", index)
			}
		}
		return err
	}
	return c.finishPython(want)
}

// relocateVenv rewrites the old location of a virtualenv in its bin/
// scripts (shebangs, activate) to the new one.
func relocateVenv(venv, old string) error {
	entries, err := os.ReadDir(filepath.Join(venv, "bin"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // bin/python and friends are symlinks to the host's python
		}
		p := filepath.Join(venv, "bin", e.Name())
		info, err := e.Info()
		if err != nil || info.Size() > 1<<20 {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte(old)) {
			continue
		}
		if err := os.WriteFile(p, bytes.ReplaceAll(data, []byte(old), []byte(venv)), info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

func (c *buildContext) finishPython(meta map[string]string) error {
	venv := filepath.Join(c.layers, "venv")
	if err := launchEnv(venv, "PYTHONUNBUFFERED", "1"); err != nil {
		return err
	}
	if err := launchEnv(venv, "VIRTUAL_ENV", venv); err != nil {
		return err
	}
	if err := c.setLayer("venv", layerTypes{Launch: true, Cache: true}, meta); err != nil {
		return err
	}
	var procs []process
	for _, f := range []string{"app.py", "main.py", "server.py"} {
		if exists(filepath.Join(c.app, f)) {
			procs = []process{{Type: "web", Command: []string{"python", f}, Default: true}}
			break
		}
	}
	if procs == nil && !exists(filepath.Join(c.app, "Procfile")) {
		c.info("No app.py or main.py: no web process (add a Procfile)")
	}
	c.showProcesses(procs)
	return c.writeLaunch(procs)
}

// ---- static site ----

func detectStatic(app string) bool {
	if fi, err := os.Stat(filepath.Join(app, "public")); err == nil && fi.IsDir() {
		return true
	}
	return exists(filepath.Join(app, "index.html"))
}

func buildStatic(c *buildContext) error {
	c.header("Static site detected")
	root := "."
	if fi, err := os.Stat(filepath.Join(c.app, "public")); err == nil && fi.IsDir() {
		root = "public"
	}
	c.info("Serving %s", root)
	// The web server is this very program, copied into a launch layer so
	// that the build output runs without the buildpacks directory.
	server, _, err := c.layer("server")
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(server, "bin"), 0o755); err != nil {
		return err
	}
	if err := copyFile(exe, filepath.Join(server, "bin", "pier-static"), 0o755); err != nil {
		return err
	}
	if err := c.setLayer("server", layerTypes{Launch: true}, nil); err != nil {
		return err
	}
	procs := []process{{Type: "web", Command: []string{"pier-static", root}, Default: true}}
	c.showProcesses(procs)
	return c.writeLaunch(procs)
}

// ---- Procfile ----

func detectProcfile(app string) bool { return exists(filepath.Join(app, "Procfile")) }

// ParseProcfile reads process types from a Procfile ("type: command"),
// with the rules `pier builds:create --procfile` uses: pier.ParseProcfile.
func ParseProcfile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	text, err := io.ReadAll(io.LimitReader(f, pier.ProcfileMax+1))
	if err != nil {
		return nil, err
	}
	return pier.ParseProcfile(string(text))
}

func buildProcfile(c *buildContext) error {
	c.header("Procfile detected")
	defs, err := ParseProcfile(filepath.Join(c.app, "Procfile"))
	if err != nil {
		return err
	}
	types := make([]string, 0, len(defs))
	for t := range defs {
		types = append(types, t)
	}
	sort.Strings(types)
	var procs []process
	for _, t := range types {
		// Procfile entries are shell command lines by definition, as on
		// Heroku. The line is the app's own code; config values reach it
		// through the environment only.
		procs = append(procs, process{Type: t, Command: []string{"bash", "-c", defs[t]}, Default: t == "web"})
	}
	c.showProcesses(procs)
	return c.writeLaunch(procs)
}
