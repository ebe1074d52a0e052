package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

// addRouterCommands are Heroku's maintenance topic and the router's
// per-app settings: allowlist, body limit, timeout.
func (c *cli) addRouterCommands(root *cobra.Command) {
	var show struct {
		app  string
		json bool
	}
	maintCmd := &cobra.Command{
		Use:     "maintenance",
		Short:   "Show whether the app is in maintenance mode",
		Example: "  pier maintenance -a myapp",
		GroupID: "domains",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), show.app)
			if err != nil {
				return err
			}
			s, err := api.RouterSettings(cmd.Context(), app)
			if err != nil {
				return err
			}
			if show.json {
				return printJSON(c.stdout, s)
			}
			if s.Maintenance {
				fmt.Fprintf(c.stdout, "%s is in maintenance mode: its visitors get a maintenance page (503).\n", app)
			} else {
				fmt.Fprintf(c.stdout, "%s is not in maintenance mode.\n", app)
			}
			return nil
		},
	}
	addAppFlag(maintCmd, &show.app)
	maintCmd.Flags().BoolVar(&show.json, "json", false, "print the API's JSON (all router settings)")

	maintenance := func(on bool) *cobra.Command {
		var o struct {
			app  string
			json bool
		}
		cmd := &cobra.Command{
			Use:   "maintenance:off",
			Short: "Take the app out of maintenance mode",
			Long: `Take the app out of maintenance mode: the router sends its requests to its
processes again.`,
			Example: "  pier maintenance:off -a myapp",
			GroupID: "domains",
			Args:    cobra.NoArgs,
		}
		if on {
			cmd.Use = "maintenance:on"
			cmd.Short = "Put the app in maintenance mode: visitors get a maintenance page"
			cmd.Long = `Put the app in maintenance mode: the router answers every request to it with
503 and a maintenance page (with Retry-After), without passing it on. The
app's processes keep running, so one-off processes (pier run) such as
migrations work as usual. Take it out with pier maintenance:off.`
			cmd.Example = "  pier maintenance:on -a myapp\n  pier run -a myapp -- ./migrate\n  pier maintenance:off -a myapp"
		}
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), o.app)
			if err != nil {
				return err
			}
			s, err := api.SetRouterSettings(cmd.Context(), app, pier.RouterChange{Maintenance: &on})
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(c.stdout, s)
			}
			if on {
				fmt.Fprintf(c.stdout, "Enabling maintenance mode for %s... done\n", app)
			} else {
				fmt.Fprintf(c.stdout, "Disabling maintenance mode for %s... done\n", app)
			}
			return nil
		}
		addAppFlag(cmd, &o.app)
		cmd.Flags().BoolVar(&o.json, "json", false, "print the API's JSON")
		return cmd
	}

	var list struct {
		app  string
		json bool
	}
	routerCmd := &cobra.Command{
		Use:   "router",
		Short: "Show how the router treats the app's requests",
		Long: `Show the app's router settings: maintenance mode, the networks allowed to
reach it, the largest request body it is sent, and how long the router waits
for it to start answering.`,
		Example: "  pier router -a myapp\n  pier router --json",
		GroupID: "domains",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			s, err := api.RouterSettings(cmd.Context(), app)
			if err != nil {
				return err
			}
			return c.printRouter(app, s, list.json)
		},
	}
	addAppFlag(routerCmd, &list.app)
	routerCmd.Flags().BoolVar(&list.json, "json", false, "print the API's JSON")

	var set struct {
		app, allow, bodyLimit, timeout string
		json                           bool
	}
	setCmd := &cobra.Command{
		Use:   "router:set [--allow NETWORKS] [--body-limit SIZE] [--timeout DURATION]",
		Short: "Restrict who may reach the app, how big a request may be, how long it may take",
		Long: `Change the app's router settings; the others stay as they are. Routers apply
them to the next request; nothing restarts.

  --allow       only these clients may reach the app (others get 403): networks
                and addresses, comma-separated, such as 10.0.0.0/8,203.0.113.7.
                Behind a load balancer listed in pierd's --trusted-proxies, the
                client is the address the load balancer saw. At most 100.
  --body-limit  the largest request body the app is sent (larger: 413), such as
                10MB or 512KiB (kB, MB, GB: powers of 1000; KiB, MiB, GiB:
                powers of 1024); at most 10GiB.
  --timeout     how long the router waits for the app to start its answer
                (later: 504), from 1s to 1h, such as 30s or 2m. A streamed
                answer (server-sent events, a download) that has started is
                not cut.

Go back to the platform's defaults with pier router:unset.`,
		Example: `  pier router:set --allow 10.0.0.0/8,203.0.113.7 -a myapp
  pier router:set --body-limit 10MB --timeout 30s
  pier router:unset allow`,
		GroupID: "domains",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var change pier.RouterChange
			fl := cmd.Flags()
			if fl.Changed("allow") {
				allow := splitList(set.allow)
				if len(allow) == 0 {
					return fmt.Errorf("--allow is empty: give networks such as 10.0.0.0/8, or let everyone in with `pier router:unset allow`")
				}
				if _, err := pier.ParseAllow(allow); err != nil {
					return err
				}
				change.Allow = &allow
			}
			if fl.Changed("body-limit") {
				n, err := parseSize(set.bodyLimit)
				if err != nil {
					return err
				}
				change.BodyLimitBytes = &n
			}
			if fl.Changed("timeout") {
				s, err := parseTimeout(set.timeout)
				if err != nil {
					return err
				}
				change.TimeoutSeconds = &s
			}
			if change.Allow == nil && change.BodyLimitBytes == nil && change.TimeoutSeconds == nil {
				return usageError{cmd: cmd, err: fmt.Errorf("nothing to set: give --allow, --body-limit or --timeout (maintenance mode is pier maintenance:on)")}
			}
			if err := change.Validate(); err != nil {
				return err
			}
			return c.setRouter(cmd, set.app, change, set.json)
		},
	}
	addAppFlag(setCmd, &set.app)
	setCmd.Flags().StringVar(&set.allow, "allow", "", "networks and addresses allowed to reach the app, comma-separated")
	setCmd.Flags().StringVar(&set.bodyLimit, "body-limit", "", "largest request body, such as 10MB")
	setCmd.Flags().StringVar(&set.timeout, "timeout", "", "how long to wait for the app's answer to start, such as 30s")
	setCmd.Flags().BoolVar(&set.json, "json", false, "print the API's JSON")

	var unset struct {
		app  string
		json bool
	}
	names := map[string]string{"allow": pier.RouterAllow, "body-limit": pier.RouterBodyLimit, "timeout": pier.RouterTimeout}
	unsetCmd := &cobra.Command{
		Use:   "router:unset SETTING...",
		Short: "Put router settings back to the platform's defaults (allow, body-limit, timeout)",
		Long: `Put router settings back to the platform's defaults: allow (everyone may reach
the app), body-limit and timeout (the platform's).`,
		Example: "  pier router:unset allow -a myapp\n  pier router:unset body-limit timeout",
		GroupID: "domains",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var change pier.RouterChange
			seen := map[string]bool{}
			for _, a := range args {
				f, ok := names[a]
				if !ok {
					if a == "maintenance" {
						return fmt.Errorf("maintenance mode is turned off with `pier maintenance:off`")
					}
					return fmt.Errorf("%q is no router setting: give allow, body-limit or timeout", clean(a))
				}
				if !seen[f] {
					seen[f] = true
					change.Unset = append(change.Unset, f)
				}
			}
			return c.setRouter(cmd, unset.app, change, unset.json)
		},
	}
	addAppFlag(unsetCmd, &unset.app)
	unsetCmd.Flags().BoolVar(&unset.json, "json", false, "print the API's JSON")

	root.AddCommand(maintCmd, maintenance(true), maintenance(false), routerCmd, setCmd, unsetCmd)
}

func (c *cli) setRouter(cmd *cobra.Command, appFlag string, change pier.RouterChange, asJSON bool) error {
	app, api, err := c.appAPI(cmd.Context(), appFlag)
	if err != nil {
		return err
	}
	s, err := api.SetRouterSettings(cmd.Context(), app, change)
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(c.stdout, "Updating the router settings of %s... done\n", app)
	}
	return c.printRouter(app, s, asJSON)
}

func (c *cli) printRouter(app string, s *pier.RouterSettings, asJSON bool) error {
	if asJSON {
		return printJSON(c.stdout, s)
	}
	maint, allow, limit, timeout := "off", "everyone", "the platform's default", "the platform's default"
	if s.Maintenance {
		maint = "on (visitors get a maintenance page)"
	}
	if len(s.Allow) > 0 {
		allow = strings.Join(s.Allow, ", ")
	}
	if s.BodyLimitBytes > 0 {
		limit = formatSize(s.BodyLimitBytes)
	}
	if s.TimeoutSeconds > 0 {
		timeout = s.Timeout().String()
	}
	fmt.Fprintf(c.stdout, "=== %s Router\n", app)
	w := table(c.stdout)
	row(w, "Maintenance:", maint)
	row(w, "Allow:", allow)
	row(w, "Body limit:", limit)
	row(w, "Timeout:", timeout)
	return w.Flush()
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

var sizeUnits = []struct {
	suffix string
	n      int64
}{
	// Longest first, so that "KiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"ki", 1 << 10}, {"mi", 1 << 20}, {"gi", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1},
}

// parseSize reads a size such as 10MB, 512KiB or 1048576 (bytes).
func parseSize(s string) (int64, error) {
	const form = "give a size such as 10MB or 512KiB (kB, MB, GB: powers of 1000; KiB, MiB, GiB: powers of 1024), or a number of bytes"
	t := strings.ToLower(strings.TrimSpace(s))
	unit := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, unit = strings.TrimSpace(rest), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("body limit %q is invalid: %s", clean(s), form)
	}
	if n > pier.BodyLimitMax/unit {
		return 0, fmt.Errorf("body limit %s is too large: at most 10GiB", clean(s))
	}
	return n * unit, nil
}

// formatSize renders bytes in the largest unit that divides them.
func formatSize(n int64) string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"kB", 1e3}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + " " + u.name + " (" + strconv.FormatInt(n, 10) + " bytes)"
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// parseTimeout reads a duration such as 30s or 2m, or a number of
// seconds, into whole seconds from 1 to 3600.
func parseTimeout(s string) (int, error) {
	t := strings.TrimSpace(s)
	d, err := time.ParseDuration(t)
	if err != nil {
		n, err2 := strconv.Atoi(t)
		if err2 != nil {
			return 0, fmt.Errorf("timeout %q is invalid: give a duration such as 30s, 2m or 1h", clean(s))
		}
		d = time.Duration(n) * time.Second
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("timeout %s is not a whole number of seconds: give such as 30s", clean(s))
	}
	if d < time.Second || d > time.Hour {
		return 0, fmt.Errorf("timeout %s is out of bounds: give 1s to 1h", clean(s))
	}
	return int(d / time.Second), nil
}
