package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

// convergeTimeout is how long commands that change what runs wait for the
// answer: the server applies the change before it answers, and a
// scheduler may take minutes to find that new processes did not come up.
const convergeTimeout = 10 * time.Minute

func (c *cli) addLimitsCommands(root *cobra.Command) {
	var list struct {
		app  string
		json bool
	}
	listCmd := &cobra.Command{
		Use:   "limits",
		Short: "Show the memory and CPU limits of the app's process types",
		Long: `Show the memory and CPU limits of each process type that has any. A process
type without limits may use what its host allows. A process killed for going
past its memory limit says so in ` + "`pier ps`" + `. The local scheduler enforces
limits with cgroups when pierd runs as root; without root only memory (as an
rlimit), not CPU.`,
		Example: "  pier limits -a myapp\n  pier limits --json",
		GroupID: "ps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			l, err := api.Limits(cmd.Context(), app)
			if err != nil {
				return err
			}
			return c.printLimits(app, l, list.json)
		},
	}
	addAppFlag(listCmd, &list.app)
	listCmd.Flags().BoolVar(&list.json, "json", false, "print the API's JSON")

	var set struct {
		app  string
		cpu  []string
		json bool
	}
	setCmd := &cobra.Command{
		Use:   "limits:set [TYPE=MEMORY...] [--cpu TYPE=CPU...]",
		Short: "Set memory and CPU limits of process types (no new release)",
		Long: `Set the memory (arguments) and CPU (--cpu) limits of process types, in
Kubernetes' notation: memory as bytes with a suffix, 512Mi or 1Gi (Ki, Mi,
Gi, Ti: powers of 1024; k, M, G, T: powers of 1000); CPU as millicores,
500m, or cores, 1 or 1.5. Like scaling, this adds no release; the app's
processes are replaced with ones under the new limits.`,
		Example: `  pier limits:set web=512Mi -a myapp
  pier limits:set web=1Gi worker=256Mi --cpu web=500m
  pier limits:set --cpu worker=2`,
		GroupID: "ps",
		RunE: func(cmd *cobra.Command, args []string) error {
			var change pier.LimitsChange
			var err error
			if change.Memory, err = parseLimits(args, "memory"); err != nil {
				return err
			}
			if change.CPU, err = parseLimits(set.cpu, "cpu"); err != nil {
				return err
			}
			if len(change.Memory) == 0 && len(change.CPU) == 0 {
				return usageError{cmd: cmd, err: fmt.Errorf("no limits given: write TYPE=MEMORY (such as web=512Mi) or --cpu TYPE=CPU (such as --cpu web=500m)")}
			}
			if err := change.Validate(); err != nil {
				return err
			}
			return c.setLimits(cmd, set.app, change, set.json)
		},
	}
	addAppFlag(setCmd, &set.app)
	setCmd.Flags().StringArrayVar(&set.cpu, "cpu", nil, "a CPU limit, TYPE=CPU (repeatable)")
	setCmd.Flags().BoolVar(&set.json, "json", false, "print the API's JSON")

	var unset struct {
		app         string
		cpu, memory bool
		json        bool
	}
	unsetCmd := &cobra.Command{
		Use:   "limits:unset TYPE... [--cpu] [--memory]",
		Short: "Remove limits of process types (default: memory)",
		Long: `Remove the memory limits of process types, or with --cpu their CPU limits
(--cpu --memory: both). Like scaling, this adds no release.`,
		Example: "  pier limits:unset web -a myapp\n  pier limits:unset web worker --cpu",
		GroupID: "ps",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var change pier.LimitsChange
			for _, t := range args {
				if err := pier.ValidateProcessType(t); err != nil {
					return err
				}
				if unset.memory || !unset.cpu {
					if change.Memory == nil {
						change.Memory = map[string]*string{}
					}
					change.Memory[t] = nil
				}
				if unset.cpu {
					if change.CPU == nil {
						change.CPU = map[string]*string{}
					}
					change.CPU[t] = nil
				}
			}
			return c.setLimits(cmd, unset.app, change, unset.json)
		},
	}
	addAppFlag(unsetCmd, &unset.app)
	unsetCmd.Flags().BoolVar(&unset.cpu, "cpu", false, "remove the CPU limits")
	unsetCmd.Flags().BoolVar(&unset.memory, "memory", false, "remove the memory limits (the default without --cpu)")
	unsetCmd.Flags().BoolVar(&unset.json, "json", false, "print the API's JSON")

	root.AddCommand(listCmd, setCmd, unsetCmd)
}

func (c *cli) setLimits(cmd *cobra.Command, appFlag string, change pier.LimitsChange, asJSON bool) error {
	app, api, err := c.appAPI(cmd.Context(), appFlag, client.WithTimeout(convergeTimeout))
	if err != nil {
		return err
	}
	l, err := api.SetLimits(cmd.Context(), app, change)
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(c.stdout, "Applying limits on %s... done\n", app)
	}
	return c.printLimits(app, l, asJSON)
}

// parseLimits reads TYPE=VALUE arguments of one kind of limit.
func parseLimits(args []string, kind string) (map[string]*string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	out := make(map[string]*string, len(args))
	for _, a := range args {
		t, v, ok := strings.Cut(a, "=")
		if !ok {
			example := "web=512Mi"
			if kind == "cpu" {
				example = "web=500m"
			}
			return nil, fmt.Errorf("%q is not TYPE=VALUE: write e.g. %s", clean(a), example)
		}
		if err := pier.ValidateProcessType(t); err != nil {
			return nil, err
		}
		if _, dup := out[t]; dup {
			return nil, fmt.Errorf("the %s limit of %s is given twice: give it once", kind, t)
		}
		out[t] = &v
	}
	return out, nil
}

func (c *cli) printLimits(app string, l map[string]pier.Limits, asJSON bool) error {
	if l == nil {
		l = map[string]pier.Limits{}
	}
	if asJSON {
		return printJSON(c.stdout, l)
	}
	if len(l) == 0 {
		fmt.Fprintf(c.stdout, "%s has no limits: its processes may use what their host allows.\nSet some with `pier limits:set web=512Mi --cpu web=500m -a %s`.\n", app, app)
		return nil
	}
	fmt.Fprintf(c.stdout, "=== %s Limits\n", app)
	w := table(c.stdout)
	row(w, "TYPE", "MEMORY", "CPU")
	for _, t := range sortedKeys(l) {
		mem, cpu := l[t].Memory, l[t].CPU
		if mem == "" {
			mem = "-"
		}
		if cpu == "" {
			cpu = "-"
		}
		row(w, t, mem, cpu)
	}
	return w.Flush()
}
