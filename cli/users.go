package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

// maxPages bounds how many pages a "list everything" command fetches, so
// that a server handing out cursors forever cannot loop us forever.
const maxPages = 1000

// all fetches every page of a paginated list.
func all[T any](ctx context.Context, fetch func(context.Context, pier.Page) (*pier.List[T], error)) (*pier.List[T], error) {
	out := &pier.List[T]{Items: []T{}}
	p := pier.Page{Limit: pier.PageMax}
	for range maxPages {
		l, err := fetch(ctx, p)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, l.Items...)
		if l.Next == "" {
			return out, nil
		}
		p.After = l.Next
	}
	return nil, fmt.Errorf("the list has more than %d pages: stopping", maxPages)
}

func (c *cli) addUserCommands(root *cobra.Command) {
	var usersJSON bool
	users := &cobra.Command{
		Use:     "users",
		Short:   "List all users (admins only)",
		Example: "  pier users\n  pier users --json",
		GroupID: "admin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			l, err := all(cmd.Context(), api.ListUsers)
			if err != nil {
				return err
			}
			if usersJSON {
				return printJSON(c.stdout, l)
			}
			w := table(c.stdout)
			row(w, "USERNAME", "EMAIL", "ROLE", "CREATED")
			for _, u := range l.Items {
				role := "user"
				if u.Admin {
					role = "admin"
				}
				row(w, u.Username, u.Email, role, date(u.CreatedAt))
			}
			return w.Flush()
		},
	}
	users.Flags().BoolVar(&usersJSON, "json", false, "print the API's JSON")

	var settingsJSON bool
	settings := &cobra.Command{
		Use:     "settings",
		Short:   "Show the platform settings (admins only)",
		Example: "  pier settings",
		GroupID: "admin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			s, err := api.Settings(cmd.Context())
			if err != nil {
				return err
			}
			return c.printSettings(s, settingsJSON)
		},
	}
	settings.Flags().BoolVar(&settingsJSON, "json", false, "print the API's JSON")

	var setJSON bool
	settingsSet := &cobra.Command{
		Use:   "settings:set registration=open|admin",
		Short: "Change the platform settings (admins only)",
		Long: `Change the platform settings. registration=admin (the default) lets only
admins create accounts; registration=open lets anyone register.`,
		Example: "  pier settings:set registration=open",
		GroupID: "admin",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, v, ok := strings.Cut(args[0], "=")
			if !ok || k != "registration" || v != pier.RegistrationOpen && v != pier.RegistrationAdmin {
				return fmt.Errorf("%q is not a setting: use registration=open or registration=admin", args[0])
			}
			api, err := c.authed()
			if err != nil {
				return err
			}
			s, err := api.UpdateSettings(cmd.Context(), pier.Settings{Registration: v})
			if err != nil {
				return err
			}
			return c.printSettings(s, setJSON)
		},
	}
	settingsSet.Flags().BoolVar(&setJSON, "json", false, "print the API's JSON")

	root.AddCommand(users, settings, settingsSet)
}

func (c *cli) printSettings(s *pier.Settings, asJSON bool) error {
	if asJSON {
		return printJSON(c.stdout, s)
	}
	fmt.Fprintf(c.stdout, "registration: %s\n", s.Registration)
	return nil
}
