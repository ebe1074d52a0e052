package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

func (c *cli) addReleaseCommands(root *cobra.Command) {
	var list struct {
		app   string
		limit int
		json  bool
	}
	listCmd := &cobra.Command{
		Use:     "releases",
		Short:   "List an app's releases, newest first",
		Example: "  pier releases -a myapp\n  pier releases -n 50 --json",
		GroupID: "config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if list.limit < 1 || list.limit > pier.PageMax {
				return fmt.Errorf("--limit %d is invalid: use 1 to %d", list.limit, pier.PageMax)
			}
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			l, err := api.Releases(cmd.Context(), app, pier.Page{Limit: list.limit})
			if err != nil {
				return err
			}
			if list.json {
				return printJSON(c.stdout, l)
			}
			fmt.Fprintf(c.stdout, "=== %s Releases\n", app)
			w := table(c.stdout)
			for _, r := range l.Items {
				cells := []string{fmt.Sprintf("v%d", r.Version), r.Note, r.CreatedBy, c.when(r.CreatedAt)}
				if s := releaseStatus(r); s != "" {
					cells = append(cells, s)
				}
				row(w, cells...)
			}
			return w.Flush()
		},
	}
	addAppFlag(listCmd, &list.app)
	listCmd.Flags().IntVarP(&list.limit, "limit", "n", 15, "how many releases to show")
	listCmd.Flags().BoolVar(&list.json, "json", false, "print the API's JSON")

	var info struct {
		app  string
		json bool
	}
	infoCmd := &cobra.Command{
		Use:   "releases:info [VERSION]",
		Short: "Show one release (default: the current one)",
		Long: `Show one release: who made it, when, its build, and the names of its config
vars (the values are in 'pier config', or in --json).`,
		Example: "  pier releases:info v3 -a myapp\n  pier releases:info --json",
		GroupID: "config",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := 0
			if len(args) == 1 {
				v, err := pier.ParseVersion(args[0])
				if err != nil {
					return err
				}
				version = v
			}
			app, api, err := c.appAPI(cmd.Context(), info.app)
			if err != nil {
				return err
			}
			if version == 0 {
				l, err := api.Releases(cmd.Context(), app, pier.Page{Limit: 1})
				if err != nil {
					return err
				}
				if len(l.Items) == 0 {
					return fmt.Errorf("%s has no releases", app)
				}
				version = l.Items[0].Version
			}
			r, err := api.Release(cmd.Context(), app, version)
			if err != nil {
				return err
			}
			if info.json {
				return printJSON(c.stdout, r)
			}
			fmt.Fprintf(c.stdout, "=== Release v%d of %s\n", r.Version, app)
			w := table(c.stdout)
			row(w, "Change:", r.Note)
			row(w, "By:", r.CreatedBy)
			row(w, "When:", c.when(r.CreatedAt))
			build := "(none)"
			if b := r.Build; b != nil {
				build = b.Image
				if b.Commit != "" {
					build += " (commit " + shortCommit(b.Commit) + ")"
				}
			}
			row(w, "Build:", build)
			keys := sortedKeys(r.Config)
			if len(keys) == 0 {
				keys = []string{"(none)"}
			}
			row(w, "Config:", strings.Join(keys, ", "))
			status := r.Status
			if r.FailedAt != nil {
				status += " " + c.when(*r.FailedAt)
			}
			row(w, "Status:", status)
			if err := w.Flush(); err != nil {
				return err
			}
			if r.Failure != "" {
				// The reason may span lines (a process's last output).
				fmt.Fprintf(c.stdout, "\n=== Why v%d failed\n%s\n", r.Version, cleanLines(strings.TrimRight(r.Failure, "\n")))
			}
			return nil
		},
	}
	addAppFlag(infoCmd, &info.app)
	infoCmd.Flags().BoolVar(&info.json, "json", false, "print the API's JSON (which holds the config values)")

	var rb struct {
		app  string
		json bool
	}
	rollback := &cobra.Command{
		Use:   "releases:rollback [VERSION]",
		Short: "Roll back to an earlier release (default: the previous one)",
		Long: `Roll back: make a new release with the build and config of an earlier one
(default: the last one before the current that did not fail). Nothing is
deleted; roll forward the same way. If the new release's processes do not
come up, it is marked failed and the previous one restored.`,
		Example: "  pier releases:rollback -a myapp\n  pier releases:rollback v3",
		GroupID: "config",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := 0
			if len(args) == 1 {
				v, err := pier.ParseVersion(args[0])
				if err != nil {
					return err
				}
				version = v
			}
			app, api, err := c.appAPI(cmd.Context(), rb.app, client.WithTimeout(convergeTimeout))
			if err != nil {
				return err
			}
			r, err := api.Rollback(cmd.Context(), app, version)
			if err != nil {
				return err
			}
			if rb.json {
				return printJSON(c.stdout, r)
			}
			if version != 0 {
				fmt.Fprintf(c.stdout, "Rolling back %s to v%d... done, v%d\n", app, version, r.Version)
			} else {
				fmt.Fprintf(c.stdout, "Rolling back %s... done, v%d (%s)\n", app, r.Version, clean(r.Note))
			}
			return nil
		},
	}
	addAppFlag(rollback, &rb.app)
	rollback.Flags().BoolVar(&rb.json, "json", false, "print the new release as the API's JSON")

	root.AddCommand(listCmd, infoCmd, rollback)
}

// releaseStatus is the last column of `pier releases`: empty for a release
// that ran, "pending" for one not yet seen running, and "failed: why".
func releaseStatus(r pier.Release) string {
	switch r.Status {
	case pier.ReleaseFailed:
		why, _, _ := strings.Cut(r.Failure, "\n")
		if len(why) > 60 {
			why = strings.ToValidUTF8(why[:60], "") + "…"
		}
		return "failed: " + why
	case pier.ReleasePending:
		return "pending"
	}
	return ""
}

func shortCommit(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}
