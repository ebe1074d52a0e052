package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

// restartTimeout is how long ps:restart waits: a web process has a minute
// to accept connections, and pierd answers within two.
const restartTimeout = 150 * time.Second

func (c *cli) addPsCommands(root *cobra.Command) {
	var ps struct {
		app  string
		json bool
	}
	psCmd := &cobra.Command{
		Use:   "ps",
		Short: "List the app's running processes",
		Long: `List the app's processes as they run now, grouped by type: each one's state
(starting, up, crashed, stopping), when it started, the release it runs and
how often it was restarted and why it last went down (such as "OOM killed:
memory limit 256Mi" when it went past ` + "`pier limits:set`" + `).
` + "`pier scale`" + ` sets how many should run.`,
		Example: "  pier ps -a myapp\n  pier ps --json",
		GroupID: "ps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), ps.app)
			if err != nil {
				return err
			}
			l, err := api.Processes(cmd.Context(), app)
			if err != nil {
				return err
			}
			if ps.json {
				return printJSON(c.stdout, l)
			}
			c.printProcesses(app, l.Items)
			return nil
		},
	}
	addAppFlag(psCmd, &ps.app)
	psCmd.Flags().BoolVar(&ps.json, "json", false, "print the API's JSON")

	var restart struct{ app string }
	restartCmd := &cobra.Command{
		Use:     "ps:restart [TYPE]",
		Aliases: []string{"restart"},
		Short:   "Restart the app's processes: of one type, or all",
		Long: `Restart the app's processes of one type, or all of them: fresh ones are
started and, once they are up, the old ones are stopped.`,
		Example: "  pier ps:restart -a myapp\n  pier ps:restart web\n  pier restart worker -a myapp",
		GroupID: "ps",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			typ := ""
			if len(args) == 1 {
				typ = args[0]
				if t, _, ok := strings.Cut(typ, "."); ok && pier.ValidateProcessType(t) == nil {
					return fmt.Errorf("restarting one process (%s) is not supported: restart its type with `pier ps:restart %s`", clean(typ), t)
				}
				if err := pier.ValidateProcessType(typ); err != nil {
					return err
				}
			}
			// The answer comes once the fresh processes are up, which
			// may take longer than the usual request timeout.
			app, api, err := c.appAPI(cmd.Context(), restart.app, client.WithTimeout(restartTimeout))
			if err != nil {
				return err
			}
			what := "all processes"
			if typ != "" {
				what = typ + " processes"
			}
			fmt.Fprintf(c.stdout, "Restarting %s on %s... ", what, app)
			if err := api.Restart(cmd.Context(), app, typ); err != nil {
				fmt.Fprintln(c.stdout, "failed")
				return err
			}
			fmt.Fprintln(c.stdout, "done")
			return nil
		},
	}
	addAppFlag(restartCmd, &restart.app)
	root.AddCommand(restartCmd)

	// ps:scale and its shortcut scale are the same command.
	newScale := func(use, short string) *cobra.Command {
		var o struct {
			app  string
			json bool
		}
		cmd := &cobra.Command{
			Use:   use + " TYPE=N...",
			Short: short,
			Long: `Set how many processes of each type run. Before the first deploy this only
records the numbers; after it, the types must be ones the app defines.`,
			Example: fmt.Sprintf("  pier %s web=2 -a myapp\n  pier %s web=1 worker=3", use, use),
			GroupID: "ps",
			Args:    cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.scale(cmd.Context(), o.app, args, o.json)
			},
		}
		addAppFlag(cmd, &o.app)
		cmd.Flags().BoolVar(&o.json, "json", false, "print the API's JSON")
		return cmd
	}
	root.AddCommand(psCmd, newScale("ps:scale", "Scale process types"), newScale("scale", "Scale process types (short for ps:scale)"))
}

func (c *cli) scale(ctx context.Context, appFlag string, args []string, asJSON bool) error {
	f, err := parseFormation(args)
	if err != nil {
		return err
	}
	app, err := c.appName(ctx, appFlag)
	if err != nil {
		return err
	}
	api, err := c.authed(client.WithTimeout(convergeTimeout))
	if err != nil {
		return err
	}
	all, err := api.Scale(ctx, app, f)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(c.stdout, all)
	}
	fmt.Fprintf(c.stdout, "Scaling %s... done\n", app)
	return c.printFormation(app, all, false)
}

// parseFormation reads TYPE=N arguments (also TYPE:N, as Deis took).
func parseFormation(args []string) (pier.Formation, error) {
	f := pier.Formation{}
	for _, a := range args {
		t, n, ok := strings.Cut(a, "=")
		if !ok {
			t, n, ok = strings.Cut(a, ":")
		}
		if !ok {
			return nil, fmt.Errorf("%q is not TYPE=N: write e.g. web=2", a)
		}
		q, err := strconv.Atoi(n)
		if err != nil {
			return nil, fmt.Errorf("%q is not TYPE=N: %q is not a number", a, n)
		}
		if _, dup := f[t]; dup {
			return nil, fmt.Errorf("process type %s is given twice: give it once", t)
		}
		f[t] = q
	}
	return f, f.Validate()
}

func (c *cli) printFormation(app string, f pier.Formation, asJSON bool) error {
	if asJSON {
		if f == nil {
			f = pier.Formation{}
		}
		return printJSON(c.stdout, f)
	}
	if len(f) == 0 {
		fmt.Fprintf(c.stdout, "%s has no process types yet: deploy with `git push pier main`, then `pier scale web=1`.\n", app)
		return nil
	}
	fmt.Fprintf(c.stdout, "=== %s Formation\n", app)
	w := table(c.stdout)
	row(w, "TYPE", "QTY")
	for _, t := range sortedKeys(f) {
		row(w, t, strconv.Itoa(f[t]))
	}
	return w.Flush()
}

// printProcesses prints processes as Heroku's ps does: grouped by type,
// one line each, such as
//
//	=== web (2)
//	web.1: up 2026/11/23 10:00:00 +0000 (~ 5m ago) v4, 1 restart
//	  last exit: OOM killed: memory limit 256Mi
func (c *cli) printProcesses(app string, ps []pier.Process) {
	if len(ps) == 0 {
		fmt.Fprintf(c.stdout, "No processes are running on %s.\n", app)
		fmt.Fprintf(c.stdout, "Deploy it with `git push pier main`, or start some with `pier scale web=1 -a %s`.\n", app)
		return
	}
	byType := map[string][]pier.Process{}
	for _, p := range ps {
		byType[p.Type] = append(byType[p.Type], p)
	}
	for i, t := range sortedKeys(byType) {
		procs := byType[t]
		sort.SliceStable(procs, func(i, j int) bool {
			if procs[i].Index != procs[j].Index {
				return procs[i].Index < procs[j].Index
			}
			return procs[i].Release < procs[j].Release
		})
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		fmt.Fprintf(c.stdout, "=== %s (%d)\n", clean(t), len(procs))
		for _, p := range procs {
			line := fmt.Sprintf("%s.%d: %s", p.Type, p.Index, p.State)
			if !p.StartedAt.IsZero() {
				line += " " + p.StartedAt.Local().Format("2006/01/02 15:04:05 -0700") + " (~ " + shortAgo(c.now().Sub(p.StartedAt)) + ")"
			}
			if p.Release > 0 {
				line += fmt.Sprintf(" v%d", p.Release)
			}
			if p.Restarts > 0 {
				line += ", " + plural(p.Restarts, "restart")
			}
			fmt.Fprintln(c.stdout, clean(line))
			// Why it last went down, such as "OOM killed: memory
			// limit 256Mi", on a line of its own under it.
			if p.Reason != "" {
				fmt.Fprintln(c.stdout, "  last exit: "+clean(p.Reason))
			}
		}
	}
}

// shortAgo renders a duration as Heroku's ps does: "10s ago", "5m ago",
// "3h ago", "2d ago".
func shortAgo(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
}
