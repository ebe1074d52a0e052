package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

func (c *cli) addEventCommands(root *cobra.Command) {
	var o struct {
		app   string
		limit int
		json  bool
	}
	events := &cobra.Command{
		Use:     "events",
		Aliases: []string{"apps:events"},
		Short:   "Show an app's audit log: who did what, when",
		Example: "  pier events -a myapp\n  pier apps:events -n 200 --json",
		GroupID: "apps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.limit < 1 || o.limit > pier.PageMax {
				return fmt.Errorf("--limit %d is invalid: use 1 to %d", o.limit, pier.PageMax)
			}
			app, api, err := c.appAPI(cmd.Context(), o.app)
			if err != nil {
				return err
			}
			l, err := api.Events(cmd.Context(), app, pier.Page{Limit: o.limit})
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(c.stdout, l)
			}
			fmt.Fprintf(c.stdout, "=== %s Events\n", app)
			w := table(c.stdout)
			for _, e := range l.Items {
				row(w, c.when(e.CreatedAt), e.Actor, e.Action, e.Detail)
			}
			return w.Flush()
		},
	}
	addAppFlag(events, &o.app)
	events.Flags().IntVarP(&o.limit, "limit", "n", 50, "how many events to show")
	events.Flags().BoolVar(&o.json, "json", false, "print the API's JSON")
	root.AddCommand(events)
}
