package host

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// processTypes reads the process types the lifecycle recorded in
// layers/config/metadata.toml, following no symlink: the build wrote it.
func processTypes(layers string) (map[string]string, error) {
	var md struct {
		Processes []struct {
			Type    string   `toml:"type"`
			Command []string `toml:"command"`
			Args    []string `toml:"args"`
		} `toml:"processes"`
	}
	b, err := readFileBeneath(layers, 16*maxToml, "config", "metadata.toml")
	if err != nil {
		return nil, err
	}
	if _, err := toml.Decode(string(b), &md); err != nil {
		return nil, err
	}
	procs := map[string]string{}
	for _, p := range md.Processes {
		all := append(append([]string{}, p.Command...), p.Args...)
		if len(all) == 3 && all[0] == "bash" && all[1] == "-c" {
			procs[p.Type] = all[2] // a Procfile line, shown as written
		} else {
			procs[p.Type] = strings.Join(all, " ")
		}
	}
	return procs, nil
}

var processType = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// installLauncher puts the launcher in the build, so that a build runs
// as long as it is kept, whatever lifecycle the platform has by then.
func (s *Strategy) installLauncher(out string, procs map[string]string) error {
	dir := filepath.Join(out, "cnb", "process")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(s.stage, "lifecycle", "launcher"), filepath.Join(out, "cnb", "lifecycle", "launcher")); err != nil {
		return err
	}
	for t := range procs {
		if !processType.MatchString(t) {
			continue // the lifecycle refuses such names; never a path
		}
		if err := os.Symlink(filepath.Join("..", "lifecycle", "launcher"), filepath.Join(dir, t)); err != nil {
			return err
		}
	}
	return nil
}

// LaunchCommand says how to run a process type of a build made by this
// strategy: exec path (no arguments) with env plus PORT and the release's
// config vars, in dir/app. env's PATH is DefaultPath; Strategy.LaunchCommand
// gives the configured one. See the package comment.
func LaunchCommand(dir, processType string) (path string, env []string) {
	return launchCommand(dir, processType, DefaultPath)
}

// LaunchCommand is the package's LaunchCommand with the PATH builds had.
func (s *Strategy) LaunchCommand(dir, processType string) (path string, env []string) {
	return launchCommand(dir, processType, s.cfg.Path)
}

func launchCommand(dir, processType, path string) (string, []string) {
	return filepath.Join(dir, "cnb", "process", processType), []string{
		"CNB_PLATFORM_API=" + PlatformAPI,
		"CNB_LAYERS_DIR=" + filepath.Join(dir, "layers"),
		"CNB_APP_DIR=" + filepath.Join(dir, "app"),
		"PATH=" + path,
	}
}
