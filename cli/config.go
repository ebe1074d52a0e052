package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

func (c *cli) addConfigCommands(root *cobra.Command) {
	var list struct {
		app         string
		shell, json bool
	}
	listCmd := &cobra.Command{
		Use:   "config",
		Short: "Show an app's config vars",
		Long: `Show an app's config vars (its environment). --shell prints KEY='value' lines,
quoted so that a POSIX shell reads every value back intact.`,
		Example: `  pier config -a myapp
  pier config --shell > .env
  pier config --json`,
		GroupID: "config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if list.shell && list.json {
				return fmt.Errorf("--shell and --json are two different outputs: give one")
			}
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			cfg, err := api.Config(cmd.Context(), app)
			if err != nil {
				return err
			}
			switch {
			case list.json:
				if cfg == nil {
					cfg = pier.Config{}
				}
				return printJSON(c.stdout, cfg)
			case list.shell:
				for _, k := range sortedKeys(cfg) {
					fmt.Fprintf(c.stdout, "%s=%s\n", k, shellQuote(cfg[k]))
				}
				return nil
			}
			if len(cfg) == 0 {
				fmt.Fprintf(c.stdout, "%s has no config vars. Set some with `pier config:set KEY=VALUE`.\n", app)
				return nil
			}
			fmt.Fprintf(c.stdout, "=== %s Config Vars\n", app)
			width := 0
			for k := range cfg {
				width = max(width, len(k)+1)
			}
			for _, k := range sortedKeys(cfg) {
				// Continuation lines of a multi-line value line up under
				// its first line, as heroku config does.
				v := strings.ReplaceAll(cfg[k], "\n", "\n"+strings.Repeat(" ", width+1))
				fmt.Fprintf(c.stdout, "%-*s %s\n", width, k+":", v)
			}
			return nil
		},
	}
	addAppFlag(listCmd, &list.app)
	listCmd.Flags().BoolVar(&list.shell, "shell", false, "print KEY='value' lines for a POSIX shell")
	listCmd.Flags().BoolVar(&list.json, "json", false, "print the API's JSON")

	var getApp string
	get := &cobra.Command{
		Use:     "config:get KEY",
		Short:   "Print one config var's value",
		Example: "  pier config:get DATABASE_URL -a myapp\n  export TOKEN=$(pier config:get TOKEN)",
		GroupID: "config",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := pier.ValidateConfigKey(args[0]); err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), getApp)
			if err != nil {
				return err
			}
			v, err := api.ConfigGet(cmd.Context(), app, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, v)
			return nil
		},
	}
	addAppFlag(get, &getApp)

	var set struct {
		app  string
		json bool
	}
	setCmd := &cobra.Command{
		Use:   "config:set KEY=VALUE...",
		Short: "Set config vars (one new release)",
		Long: `Set one or more config vars in one new release; the app restarts with them.
Each argument is split at its first '=': the value keeps any spaces, '='
and newlines, exactly as your shell passed them.

If the app's processes do not come up with the new config, the release is
marked failed and the previous one restored: the command says why, and
exits non-zero.`,
		Example: `  pier config:set GREETING="hello world" -a myapp
  pier config:set DATABASE_URL=postgres://u@db/app?sslmode=require MODE=prod
  pier config:set CERT="$(cat cert.pem)"`,
		GroupID: "config",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vars, err := parseAssignments(args)
			if err != nil {
				return err
			}
			// The answer comes once the app runs with the new config.
			app, api, err := c.appAPI(cmd.Context(), set.app, client.WithTimeout(convergeTimeout))
			if err != nil {
				return err
			}
			rel, err := api.SetConfig(cmd.Context(), app, vars, nil)
			if err != nil {
				return err
			}
			if set.json {
				return printJSON(c.stdout, rel)
			}
			fmt.Fprintf(c.stdout, "Setting %s on %s... done, v%d\n", joinAnd(sortedKeys(vars)), app, rel.Version)
			return nil
		},
	}
	addAppFlag(setCmd, &set.app)
	setCmd.Flags().BoolVar(&set.json, "json", false, "print the new release as the API's JSON")

	var unset struct {
		app  string
		json bool
	}
	unsetCmd := &cobra.Command{
		Use:     "config:unset KEY...",
		Short:   "Unset config vars (one new release)",
		Example: "  pier config:unset DEBUG OLD_TOKEN -a myapp",
		GroupID: "config",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seen := map[string]bool{}
			var keys []string
			for _, k := range args {
				if err := pier.ValidateConfigKey(k); err != nil {
					return err
				}
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
			app, api, err := c.appAPI(cmd.Context(), unset.app, client.WithTimeout(convergeTimeout))
			if err != nil {
				return err
			}
			rel, err := api.SetConfig(cmd.Context(), app, nil, keys)
			if err != nil {
				return err
			}
			if unset.json {
				return printJSON(c.stdout, rel)
			}
			sort.Strings(keys)
			fmt.Fprintf(c.stdout, "Unsetting %s on %s... done, v%d\n", joinAnd(keys), app, rel.Version)
			return nil
		},
	}
	addAppFlag(unsetCmd, &unset.app)
	unsetCmd.Flags().BoolVar(&unset.json, "json", false, "print the new release as the API's JSON")

	root.AddCommand(listCmd, get, setCmd, unsetCmd)
}

// parseAssignments reads KEY=VALUE arguments, splitting each at its first
// '=' only, and checks the keys before anything is sent. Errors name keys,
// never values.
func parseAssignments(args []string) (map[string]string, error) {
	vars := make(map[string]string, len(args))
	for i, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			if pier.ValidateConfigKey(a) == nil {
				return nil, fmt.Errorf("%s has no value: write %s=VALUE (to remove it, use `pier config:unset %s`)", a, a, a)
			}
			// Not echoed: it may be a value typed without its key.
			return nil, fmt.Errorf("argument %d is not KEY=VALUE", i+1)
		}
		if err := pier.ValidateConfigKey(k); err != nil {
			return nil, err
		}
		if _, dup := vars[k]; dup {
			return nil, fmt.Errorf("config key %s is given twice: give it once", k)
		}
		vars[k] = v
	}
	change := pier.ConfigChange{Set: vars}
	if err := change.Validate(); err != nil {
		return nil, err
	}
	return vars, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
