package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

// Service tokens: the credentials of platform components running as their
// own processes, such as `pierd router`. Admins only.
func (c *cli) addServiceTokenCommands(root *cobra.Command) {
	var listJSON bool
	list := &cobra.Command{
		Use:     "service-tokens",
		Short:   "List the service tokens of platform components (admins)",
		Example: "  pier service-tokens\n  pier service-tokens --json",
		GroupID: "admin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			l, err := api.ServiceTokens(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(c.stdout, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintln(c.stdout, "No service tokens. Create one for a router with `pier service-tokens:create --scope router`.")
				return nil
			}
			w := table(c.stdout)
			row(w, "ID", "SCOPE", "DESCRIPTION", "PREFIX", "CREATED BY", "CREATED", "LAST USED")
			for _, t := range l.Items {
				used := "never"
				if t.LastUsedAt != nil {
					used = c.when(*t.LastUsedAt)
				}
				row(w, strconv.FormatInt(t.ID, 10), t.Scope, t.Description, t.Prefix+"…", t.CreatedBy, date(t.CreatedAt), used)
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print the API's JSON")

	var create struct {
		scope, description string
		json               bool
	}
	createCmd := &cobra.Command{
		Use:   "service-tokens:create --scope router",
		Short: "Create a service token for a platform component (admins)",
		Long: `Create a service token: the credential a platform component running as its own
process presents on the controller's internal listener (--internal-addr). Scopes:

  router   pierd router: follows the routes, domains, certificates (with their
           private keys) and router settings it serves
  builder  reserved for a builder running alone; nothing accepts it yet

The token is printed once, on stdout; Pier keeps only a hash of it. Put it in a
file only the component can read (chmod 600) and pass that with --token-file.
User logins and API tokens are refused on the internal listener, and a service
token is refused on the public API. Revoke one with 'pier service-tokens:revoke ID':
the component is cut off within seconds.`,
		Example: `  pier service-tokens:create --scope router --description "edge-1" > router.token
  chmod 600 router.token
  pierd router --controller-internal http://10.0.0.5:9091 --token-file router.token ...`,
		GroupID: "admin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if create.scope == "" {
				return fmt.Errorf("--scope is required: one of %s (router for pierd router)", strings.Join(pier.ServiceScopes, ", "))
			}
			if err := pier.ValidateScope(create.scope); err != nil {
				return err
			}
			api, err := c.authed()
			if err != nil {
				return err
			}
			t, err := api.CreateServiceToken(cmd.Context(), create.scope, create.description)
			if err != nil {
				return err
			}
			if create.json {
				return printJSON(c.stdout, t)
			}
			// Only the token goes to stdout, so that `> file` or $(...)
			// captures exactly it.
			fmt.Fprintf(c.stderr, "Created service token %d, scope %s (%s):\n", t.ID, t.Scope, clean(t.Description))
			fmt.Fprintln(c.stdout, t.Token)
			fmt.Fprintln(c.stderr, "warning: this token is shown only now and cannot be shown again: keep it in a file only the component can read, and pass it with --token-file")
			return nil
		},
	}
	createCmd.Flags().StringVar(&create.scope, "scope", "", "what the token may do: router (pierd router) or builder (reserved)")
	createCmd.Flags().StringVar(&create.description, "description", "", "which component it is for, e.g. \"edge-1\" (default: the scope)")
	createCmd.Flags().BoolVar(&create.json, "json", false, "print the API's JSON (which holds the token)")

	revoke := &cobra.Command{
		Use:     "service-tokens:revoke ID",
		Short:   "Revoke a service token (admins)",
		Example: "  pier service-tokens:revoke 2",
		GroupID: "admin",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id < 1 {
				return fmt.Errorf("%q is not a service token ID: `pier service-tokens` lists them", args[0])
			}
			api, err := c.authed()
			if err != nil {
				return err
			}
			if err := api.RevokeServiceToken(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Revoked service token %d.\n", id)
			return nil
		},
	}
	root.AddCommand(list, createCmd, revoke)
}
