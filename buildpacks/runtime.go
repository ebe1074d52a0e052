package buildpacks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Exit codes of bin/detect (buildpack API 0.10).
const (
	detectPass = 0
	detectFail = 100
)

// Main is the whole program: bin/detect and bin/build of each buildpack
// (chosen by argv[0] and CNB_BUILDPACK_DIR), `install DIR`, and the static
// file server (`pier-static` or `serve-static`).
func Main(args []string) int {
	switch filepath.Base(args[0]) {
	case "detect", "build":
		return phase(filepath.Base(args[0]))
	case "pier-static":
		return serveStatic(args[1:])
	}
	if len(args) >= 3 && args[1] == "install" {
		exe, err := os.Executable()
		if err == nil {
			err = Install(args[2], exe)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pier-buildpack:", err)
			return 1
		}
		return 0
	}
	if len(args) >= 2 && args[1] == "serve-static" {
		return serveStatic(args[2:])
	}
	fmt.Fprintln(os.Stderr, "usage: pier-buildpack install DIR | serve-static [DIR]\n"+
		"(as bin/detect or bin/build of a buildpack, it is that buildpack)")
	return 2
}

// phase runs detect or build for the buildpack whose directory the
// lifecycle names in CNB_BUILDPACK_DIR (<buildpacks>/<escaped id>/<version>).
func phase(name string) int {
	bpDir := os.Getenv("CNB_BUILDPACK_DIR")
	esc := filepath.Base(filepath.Dir(bpDir))
	var bp *Buildpack
	for i := range All {
		if escapedID(All[i].ID) == esc {
			bp = &All[i]
		}
	}
	if bp == nil {
		fmt.Fprintf(os.Stderr, "pier-buildpack: unknown buildpack directory %q\n", bpDir)
		return 1
	}
	app, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if name == "detect" {
		if bp.detect(app) {
			return detectPass
		}
		return detectFail
	}
	c := &buildContext{
		app:    app,
		layers: os.Getenv("CNB_LAYERS_DIR"),
		out:    os.Stdout,
	}
	if err := bp.build(c); err != nil {
		fmt.Fprintf(os.Stdout, " !     %s build failed: %v\n", bp.Title, err)
		return 1
	}
	return 0
}

// buildContext is what a buildpack's build step works with.
type buildContext struct {
	app    string // the app dir, also the working directory
	layers string // this buildpack's layers dir
	out    io.Writer
}

func (c *buildContext) header(format string, a ...any) {
	fmt.Fprintf(c.out, "-----> "+format+"\n", a...)
}

func (c *buildContext) info(format string, a ...any) {
	fmt.Fprintf(c.out, "       "+format+"\n", a...)
}

// layerTypes says where a layer is used (buildpack API 0.10 [types]).
type layerTypes struct {
	Build  bool `toml:"build"`
	Cache  bool `toml:"cache"`
	Launch bool `toml:"launch"`
}

type layerFile struct {
	Types    layerTypes        `toml:"types"`
	Metadata map[string]string `toml:"metadata,omitempty"`
}

// layer returns the path of a layer, creating it, and its recorded metadata
// from the previous build if the platform kept it (cache layers only).
func (c *buildContext) layer(name string) (dir string, prev map[string]string, err error) {
	dir = filepath.Join(c.layers, name)
	var lf layerFile
	if _, err := toml.DecodeFile(dir+".toml", &lf); err == nil {
		prev = lf.Metadata
	}
	return dir, prev, os.MkdirAll(dir, 0o755)
}

// setLayer records a layer's types and metadata; the lifecycle reads this
// after the build to decide what is launched, cached, or dropped.
func (c *buildContext) setLayer(name string, t layerTypes, meta map[string]string) error {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(layerFile{Types: t, Metadata: meta}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.layers, name+".toml"), buf.Bytes(), 0o644)
}

// resetLayer empties a layer's directory. Go's module cache is read-only
// on disk, so permissions are restored before removal.
func resetLayer(dir string) error {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}

// launchEnv sets an environment variable for launched processes in a
// layer (env.launch/NAME.override).
func launchEnv(layerDir, name, value string) error {
	d := filepath.Join(layerDir, "env.launch")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, name+".override"), []byte(value), 0o644)
}

// process is one [[processes]] entry of launch.toml.
type process struct {
	Type    string   `toml:"type"`
	Command []string `toml:"command"`
	Args    []string `toml:"args,omitempty"`
	Default bool     `toml:"default,omitempty"`
}

func (c *buildContext) writeLaunch(procs []process) error {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(struct {
		Processes []process `toml:"processes"`
	}{procs}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.layers, "launch.toml"), buf.Bytes(), 0o644)
}

func (c *buildContext) showProcesses(procs []process) {
	if len(procs) == 0 {
		return
	}
	c.header("Discovering process types")
	for _, p := range procs {
		c.info("%s: %s", p.Type, displayCommand(p.Command, p.Args))
	}
}

func displayCommand(cmd, args []string) string {
	all := append(append([]string{}, cmd...), args...)
	if len(all) == 3 && all[0] == "bash" && all[1] == "-c" {
		return all[2]
	}
	return strings.Join(all, " ")
}

// run executes a toolchain command in the app dir with its output indented
// under the current step, as Heroku's build logs are. env adds to (and
// overrides) the build environment. No shell is involved.
func (c *buildContext) run(env []string, name string, args ...string) error {
	return c.runTee(nil, env, name, args...)
}

// runTee is run that also copies the output to tee (for diagnosing errors).
func (c *buildContext) runTee(tee io.Writer, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.app
	cmd.Env = append(os.Environ(), env...)
	iw := &indenter{w: c.out}
	var w io.Writer = iw
	if tee != nil {
		w = io.MultiWriter(iw, tee)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	iw.Flush()
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%s is not installed on this host (PATH=%s)", name, os.Getenv("PATH"))
	}
	if err != nil {
		return fmt.Errorf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return nil
}

// output runs a command and returns its first line of output (versions).
func output(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// indenter prefixes each line with Heroku's seven-space indent.
type indenter struct {
	w   io.Writer
	buf []byte
}

func (i *indenter) Write(p []byte) (int, error) {
	i.buf = append(i.buf, p...)
	for {
		n := bytes.IndexByte(i.buf, '\n')
		if n < 0 {
			break
		}
		if _, err := fmt.Fprintf(i.w, "       %s\n", i.buf[:n]); err != nil {
			return 0, err
		}
		i.buf = i.buf[n+1:]
	}
	return len(p), nil
}

func (i *indenter) Flush() {
	if len(i.buf) > 0 {
		fmt.Fprintf(i.w, "       %s\n", i.buf)
		i.buf = nil
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// serveStatic is the static site buildpack's web server: files from dir
// (default ".") on $PORT.
func serveStatic(args []string) int {
	dir := "."
	if len(args) > 0 {
		dir = args[0]
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	srv := &http.Server{
		Addr:              ":" + port,
		Handler:           http.FileServer(http.Dir(dir)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	fmt.Fprintf(os.Stdout, "serving %s on :%s\n", dir, port)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "pier-static:", err)
		return 1
	}
	return 0
}
