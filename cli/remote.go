package cli

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/pierpaas/pier"
	"github.com/spf13/cobra"
)

const appFlagUsage = `the app (default: the app of the git remote named "pier")`

// addAppFlag gives cmd the -a/--app flag every app command takes.
func addAppFlag(cmd *cobra.Command, app *string) {
	cmd.Flags().StringVarP(app, "app", "a", "", appFlagUsage)
}

// appName is the app a command acts on: -a APP, else the app that the git
// remote "pier" of the current directory pushes to.
func (c *cli) appName(ctx context.Context, flag string) (string, error) {
	if flag != "" {
		if err := pier.ValidateAppName(flag); err != nil {
			return "", err
		}
		return flag, nil
	}
	remote := gitRemoteURL(ctx, "pier")
	if remote == "" {
		return "", fmt.Errorf("no app given: pass -a APP, or run this inside a git repo with a 'pier' remote")
	}
	name := appFromRemote(remote)
	if err := pier.ValidateAppName(name); err != nil {
		return "", fmt.Errorf("the git remote 'pier' (%s) does not name a Pier app: pass -a APP", remote)
	}
	return name, nil
}

// gitRemoteURL returns the URL of the named remote of the git repository
// around the working directory, or "" if there is none (no git, not a repo,
// no such remote). git runs directly, with no shell.
func gitRemoteURL(ctx context.Context, remote string) string {
	out, err := exec.CommandContext(ctx, "git", "config", "--get", "remote."+remote+".url").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// appFromRemote takes the app name from a git remote URL: the last path
// element, without ".git". It accepts ssh://git@host:2222/NAME.git,
// git@host:NAME.git, https://host/NAME, with or without ".git" or a
// trailing slash.
func appFromRemote(remote string) string {
	s := strings.TrimRight(strings.TrimSpace(remote), "/")
	s = strings.TrimSuffix(s, ".git")
	if i := strings.LastIndexAny(s, "/:"); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// insideGitRepo reports whether the working directory is in a git work tree.
func insideGitRepo(ctx context.Context) bool {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--is-inside-work-tree").Output()
	return err == nil && strings.TrimSpace(string(out)) == "true"
}
