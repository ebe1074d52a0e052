package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

func (c *cli) addPsCommands(root *cobra.Command) {
	var ps struct {
		app  string
		json bool
	}
	psCmd := &cobra.Command{
		Use:     "ps",
		Short:   "Show how many processes of each type should run",
		Example: "  pier ps -a myapp\n  pier ps --json",
		GroupID: "ps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), ps.app)
			if err != nil {
				return err
			}
			f, err := api.Formation(cmd.Context(), app)
			if err != nil {
				return err
			}
			return c.printFormation(app, f, ps.json)
		},
	}
	addAppFlag(psCmd, &ps.app)
	psCmd.Flags().BoolVar(&ps.json, "json", false, "print the API's JSON")

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
	api, err := c.authed()
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
