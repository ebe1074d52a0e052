package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

func (c *cli) addDomainCommands(root *cobra.Command) {
	var list struct {
		app  string
		json bool
	}
	listCmd := &cobra.Command{
		Use:     "domains",
		Short:   "List an app's custom domains",
		Example: "  pier domains -a myapp\n  pier domains --json",
		GroupID: "domains",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			l, err := api.Domains(cmd.Context(), app)
			if err != nil {
				return err
			}
			if list.json {
				return printJSON(c.stdout, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintf(c.stdout, "%s has no custom domains. Add one with `pier domains:add HOSTNAME`.\n", app)
				return nil
			}
			fmt.Fprintf(c.stdout, "=== %s Domains\n", app)
			w := table(c.stdout)
			for _, d := range l.Items {
				row(w, d.Hostname, date(d.CreatedAt))
			}
			return w.Flush()
		},
	}
	addAppFlag(listCmd, &list.app)
	listCmd.Flags().BoolVar(&list.json, "json", false, "print the API's JSON")

	var add struct {
		app  string
		json bool
	}
	addCmd := &cobra.Command{
		Use:   "domains:add HOSTNAME",
		Short: "Route a hostname to an app",
		Long: `Route a hostname to the app. Point the name's DNS at Pier's router first
(a CNAME to <app>.<platform domain> works). A hostname belongs to one app.`,
		Example: "  pier domains:add www.example.com -a myapp",
		GroupID: "domains",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := pier.NormalizeHostname(args[0])
			if err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), add.app)
			if err != nil {
				return err
			}
			d, err := api.AddDomain(cmd.Context(), app, host)
			if err != nil {
				return err
			}
			if add.json {
				return printJSON(c.stdout, d)
			}
			fmt.Fprintf(c.stdout, "Adding %s to %s... done\n", d.Hostname, app)
			return nil
		},
	}
	addAppFlag(addCmd, &add.app)
	addCmd.Flags().BoolVar(&add.json, "json", false, "print the API's JSON")

	var removeApp string
	remove := &cobra.Command{
		Use:     "domains:remove HOSTNAME",
		Short:   "Stop routing a hostname to an app",
		Example: "  pier domains:remove www.example.com -a myapp",
		GroupID: "domains",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := pier.NormalizeHostname(args[0])
			if err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), removeApp)
			if err != nil {
				return err
			}
			if err := api.RemoveDomain(cmd.Context(), app, host); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Removing %s from %s... done\n", host, app)
			return nil
		},
	}
	addAppFlag(remove, &removeApp)

	root.AddCommand(listCmd, addCmd, remove)
}
