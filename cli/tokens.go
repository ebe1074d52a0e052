package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func (c *cli) addTokenCommands(root *cobra.Command) {
	var listJSON bool
	tokens := &cobra.Command{
		Use:     "tokens",
		Short:   "List your API tokens (for CI)",
		Example: "  pier tokens\n  pier tokens --json",
		GroupID: "account",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			l, err := api.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(c.stdout, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintln(c.stdout, "You have no API tokens. Create one with `pier tokens:create --description ci`.")
				return nil
			}
			w := table(c.stdout)
			row(w, "ID", "DESCRIPTION", "PREFIX", "CREATED", "EXPIRES", "LAST USED")
			for _, t := range l.Items {
				expires, used := "never", "never"
				if t.ExpiresAt != nil {
					expires = date(*t.ExpiresAt)
				}
				if t.LastUsedAt != nil {
					used = c.when(*t.LastUsedAt)
				}
				row(w, strconv.FormatInt(t.ID, 10), t.Description, t.Prefix+"…", date(t.CreatedAt), expires, used)
			}
			return w.Flush()
		},
	}
	tokens.Flags().BoolVar(&listJSON, "json", false, "print the API's JSON")

	var create struct {
		description string
		days        int
		json        bool
	}
	createCmd := &cobra.Command{
		Use:   "tokens:create",
		Short: "Create a long-lived API token",
		Long: `Create a long-lived API token, for CI and scripts: set PIER_URL and PIER_TOKEN
in their environment. The token is printed once, on stdout; Pier keeps only a
hash of it. Revoke it with 'pier tokens:revoke ID'.`,
		Example: `  pier tokens:create --description "github actions" --expires-in-days 90
  PIER_TOKEN=$(pier tokens:create --description ci)`,
		GroupID: "account",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if create.days < 0 {
				return fmt.Errorf("--expires-in-days %d is invalid: use a number of days, or 0 for never", create.days)
			}
			api, err := c.authed()
			if err != nil {
				return err
			}
			t, err := api.CreateToken(cmd.Context(), create.description, create.days)
			if err != nil {
				return err
			}
			if create.json {
				return printJSON(c.stdout, t)
			}
			// Only the token goes to stdout, so that $(pier tokens:create)
			// captures exactly it; the rest is for the person.
			fmt.Fprintf(c.stderr, "Created API token %d", t.ID)
			if t.Description != "" {
				fmt.Fprintf(c.stderr, " (%s)", clean(t.Description))
			}
			if t.ExpiresAt != nil {
				fmt.Fprintf(c.stderr, ", expiring %s", date(*t.ExpiresAt))
			}
			fmt.Fprintln(c.stderr, ":")
			fmt.Fprintln(c.stdout, t.Token)
			fmt.Fprintln(c.stderr, "warning: this token is shown only now and cannot be shown again: store it somewhere safe (e.g. your CI's secrets, as PIER_TOKEN)")
			return nil
		},
	}
	createCmd.Flags().StringVar(&create.description, "description", "", "what the token is for, e.g. \"ci\"")
	createCmd.Flags().IntVar(&create.days, "expires-in-days", 0, "days until the token expires (0: never)")
	createCmd.Flags().BoolVar(&create.json, "json", false, "print the API's JSON (which holds the token)")

	revoke := &cobra.Command{
		Use:     "tokens:revoke ID",
		Short:   "Revoke an API token",
		Example: "  pier tokens:revoke 3",
		GroupID: "account",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id < 1 {
				return fmt.Errorf("%q is not a token ID: `pier tokens` lists them", args[0])
			}
			api, err := c.authed()
			if err != nil {
				return err
			}
			if err := api.RevokeToken(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Revoked API token %d.\n", id)
			return nil
		},
	}
	root.AddCommand(tokens, createCmd, revoke)
}
