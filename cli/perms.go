package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

func (c *cli) addPermCommands(root *cobra.Command) {
	var list struct {
		app  string
		json bool
	}
	listCmd := &cobra.Command{
		Use:     "perms",
		Short:   "List who may use an app",
		Example: "  pier perms -a myapp\n  pier perms --json",
		GroupID: "domains",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			l, err := api.Perms(cmd.Context(), app)
			if err != nil {
				return err
			}
			if list.json {
				return printJSON(c.stdout, l)
			}
			fmt.Fprintf(c.stdout, "=== %s Members\n", app)
			w := table(c.stdout)
			for _, m := range l.Items {
				row(w, m.Username, m.Role)
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
		Use:   "perms:add USERNAME",
		Short: "Let a user deploy and manage an app (owner or admin)",
		Long: `Make a user a collaborator of the app: they may push, configure, scale and
roll it back. Only the owner may destroy it or change its members.`,
		Example: "  pier perms:add bob -a myapp",
		GroupID: "domains",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := pier.ValidateUsername(args[0]); err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), add.app)
			if err != nil {
				return err
			}
			m, err := api.AddPerm(cmd.Context(), app, args[0])
			if err != nil {
				return err
			}
			if add.json {
				return printJSON(c.stdout, m)
			}
			fmt.Fprintf(c.stdout, "Adding %s to %s collaborators... done\n", m.Username, app)
			return nil
		},
	}
	addAppFlag(addCmd, &add.app)
	addCmd.Flags().BoolVar(&add.json, "json", false, "print the API's JSON")

	var removeApp string
	remove := &cobra.Command{
		Use:     "perms:remove USERNAME",
		Short:   "Take a user's access to an app away (owner or admin)",
		Example: "  pier perms:remove bob -a myapp",
		GroupID: "domains",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := pier.ValidateUsername(args[0]); err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), removeApp)
			if err != nil {
				return err
			}
			if err := api.RemovePerm(cmd.Context(), app, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Removing %s from %s collaborators... done\n", args[0], app)
			return nil
		},
	}
	addAppFlag(remove, &removeApp)

	root.AddCommand(listCmd, addCmd, remove)
}
