package stack

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// goToolchain is the Go distribution copied into the build image. Offline,
// this machine's own toolchain is the only one there is.
type goToolchain struct {
	root    string // GOROOT here, e.g. /usr/local/go
	version string // "go1.26.8", from GOROOT/VERSION
}

func findGo(root string) (goToolchain, error) {
	data, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return goToolchain{}, fmt.Errorf("no Go toolchain at %s (%v): install Go there, or name its GOROOT", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "go")); err != nil {
		return goToolchain{}, fmt.Errorf("no Go toolchain at %s: %v", root, err)
	}
	version, _, _ := strings.Cut(string(data), "\n")
	return goToolchain{root: root, version: strings.TrimSpace(version)}, nil
}

// nodeToolchain is a Node.js installed the Debian way (the nodesource
// package `nodejs`): PREFIX/bin/node and PREFIX/lib/node_modules/{npm,corepack}.
type nodeToolchain struct {
	node     string // the node binary
	modules  string // PREFIX/lib/node_modules
	version  string // "v20.20.2"
	npm      string // npm's version
	corepack bool
}

// findNode finds node: the given binary, else the one on PATH.
func findNode(node string) (nodeToolchain, error) {
	if node == "" {
		p, err := exec.LookPath("node")
		if err != nil {
			return nodeToolchain{}, fmt.Errorf("no node on PATH: install Node.js (Debian package nodejs), or name the node binary")
		}
		node = p
	}
	node, err := filepath.EvalSymlinks(node)
	if err != nil {
		return nodeToolchain{}, err
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return nodeToolchain{}, fmt.Errorf("%s --version: %v", node, err)
	}
	t := nodeToolchain{node: node, version: strings.TrimSpace(string(out)),
		modules: filepath.Join(filepath.Dir(filepath.Dir(node)), "lib", "node_modules")}
	var pkg struct{ Version string }
	data, err := os.ReadFile(filepath.Join(t.modules, "npm", "package.json"))
	if err == nil {
		err = json.Unmarshal(data, &pkg)
	}
	if err != nil {
		return nodeToolchain{}, fmt.Errorf("no npm next to %s (looked in %s): %v", node, t.modules, err)
	}
	t.npm = pkg.Version
	if _, err := os.Stat(filepath.Join(t.modules, "corepack", "package.json")); err == nil {
		t.corepack = true
	}
	return t, nil
}

// files places node at /usr/bin/node and its modules under
// /usr/lib/node_modules in an image, as the Debian package does, with the
// usual npm, npx (and corepack) links.
func (t nodeToolchain) files() ([]tree, []symlink) {
	trees := []tree{{t.node, "usr/bin/node"}, {filepath.Join(t.modules, "npm"), "usr/lib/node_modules/npm"}}
	links := []symlink{
		{"usr/bin/npm", "../lib/node_modules/npm/bin/npm-cli.js"},
		{"usr/bin/npx", "../lib/node_modules/npm/bin/npx-cli.js"},
	}
	if t.corepack {
		trees = append(trees, tree{filepath.Join(t.modules, "corepack"), "usr/lib/node_modules/corepack"})
		links = append(links, symlink{"usr/bin/corepack", "../lib/node_modules/corepack/dist/corepack.js"})
	}
	return trees, links
}
