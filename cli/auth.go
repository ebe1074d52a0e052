package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

// credentials are how register and login get a username and password.
// There is deliberately no --password flag: see refusePasswordArgs.
type credentials struct {
	username      string
	passwordStdin bool
}

func (cr *credentials) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&cr.username, "username", "", "your username (prompted for on a terminal)")
	cmd.Flags().BoolVar(&cr.passwordStdin, "password-stdin", false, "read the password from stdin (one trailing newline is removed)")
}

func (c *cli) addAuthCommands(root *cobra.Command) {
	var reg struct {
		credentials
		email, bootstrap, bootstrapFile string
	}
	register := &cobra.Command{
		Use:   "register URL",
		Short: "Create an account (and log in)",
		Long: `Create an account on the Pier at URL, then log in as it.

The first account needs the one-time bootstrap token that pierd printed (and
stored in its data dir) on its first start; it becomes the admin. After that,
only an admin may create accounts (unless an admin opened registration with
'pier settings:set registration=open'). An admin who is logged in creates the
account and stays logged in as themselves.

The password is prompted for on a terminal; scripts pass it on stdin with
--password-stdin, or in PIER_PASSWORD. It is never taken as an argument.`,
		Example: `  pier register http://pier.localhost:8080
  pier register http://pier.localhost:8080 --username alice \
      --bootstrap-token-file .pier/bootstrap-token --password-stdin < password-file
  PIER_PASSWORD=... pier register https://pier.example.com --username bob`,
		GroupID: "account",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.register(cmd.Context(), args[0], reg.credentials, reg.email, reg.bootstrap, reg.bootstrapFile)
		},
	}
	reg.credentials.addFlags(register)
	register.Flags().StringVar(&reg.email, "email", "", "your email address (optional)")
	register.Flags().StringVar(&reg.bootstrap, "bootstrap-token", "", "the one-time bootstrap token, for the first (admin) account")
	register.Flags().StringVar(&reg.bootstrapFile, "bootstrap-token-file", "", "read the bootstrap token from this file")
	register.MarkFlagsMutuallyExclusive("bootstrap-token", "bootstrap-token-file")

	var login credentials
	loginCmd := &cobra.Command{
		Use:   "login [URL]",
		Short: "Log in to a Pier",
		Long: `Log in to the Pier at URL (default: the one you last logged in to) and keep
the session in ~/.config/pier/config.json (mode 0600).

The password is prompted for on a terminal; scripts pass it on stdin with
--password-stdin, or in PIER_PASSWORD. It is never taken as an argument.
For CI, prefer an API token (pier tokens:create) in PIER_TOKEN and PIER_URL.`,
		Example: `  pier login http://pier.localhost:8080
  pier login https://pier.example.com --username alice --password-stdin < password-file`,
		GroupID: "account",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw := ""
			if len(args) == 1 {
				raw = args[0]
			}
			return c.login(cmd.Context(), raw, login)
		},
	}
	login.addFlags(loginCmd)

	var statusURL string
	status := &cobra.Command{
		Use:   "status",
		Short: "Check that Pier is ready: its API answers, its database too, with the latest schema, and the apps have been converged (exit status 1 if not)",
		Example: `  pier status
  pier status --url http://pier.localhost:8080`,
		GroupID: "account",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url := statusURL
			if url == "" {
				s, err := c.session()
				if err != nil {
					return err
				}
				if s.url == "" {
					return c.notLoggedIn()
				}
				url = s.url
			}
			url, err := normalizeURL(url)
			if err != nil {
				return err
			}
			c.url = url
			r, ready, err := client.New(url, "").Ready(cmd.Context())
			if err != nil {
				return err
			}
			if !ready {
				return notReady(url, r)
			}
			fmt.Fprintf(c.stdout, "Pier at %s is up and ready.\n", url)
			return nil
		},
	}
	status.Flags().StringVar(&statusURL, "url", "", "the Pier to check (default: the one you are logged in to)")

	var whoamiJSON bool
	whoami := &cobra.Command{
		Use:     "whoami",
		Short:   "Print your username",
		Example: "  pier whoami\n  pier whoami --json",
		GroupID: "account",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			u, err := api.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			if whoamiJSON {
				return printJSON(c.stdout, u)
			}
			fmt.Fprintln(c.stdout, u.Username)
			return nil
		},
	}
	whoami.Flags().BoolVar(&whoamiJSON, "json", false, "print the API's JSON")

	logout := &cobra.Command{
		Use:     "logout",
		Short:   "Log out: revoke the session and forget it",
		Example: "  pier logout",
		GroupID: "account",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.logout(cmd.Context())
		},
	}

	root.AddCommand(register, loginCmd, logout, whoami, status)
}

// askCredentials gets the username and password: flags and environment
// first, then prompts on a terminal. newPassword asks twice and checks
// the password's length before the server does.
func (c *cli) askCredentials(cr credentials, newPassword bool) (string, string, error) {
	fd, tty := c.terminal()
	username := cr.username
	if username == "" {
		if cr.passwordStdin || !tty {
			return "", "", errors.New("no username given: pass --username NAME")
		}
		var err error
		if username, err = c.promptLine("Username: "); err != nil {
			return "", "", err
		}
	}
	if newPassword {
		if err := pier.ValidateUsername(username); err != nil {
			return "", "", err
		}
	}
	var password string
	switch {
	case cr.passwordStdin:
		var err error
		if password, err = c.readPasswordStdin(); err != nil {
			return "", "", err
		}
	case c.getenv("PIER_PASSWORD") != "":
		password = c.getenv("PIER_PASSWORD")
	case tty:
		var err error
		if password, err = c.promptPassword(fd, "Password: "); err != nil {
			return "", "", err
		}
		if newPassword {
			if err := pier.ValidatePassword(password); err != nil {
				return "", "", err
			}
			again, err := c.promptPassword(fd, "Password (again): ")
			if err != nil {
				return "", "", err
			}
			if again != password {
				return "", "", errors.New("the passwords differ: nothing was done")
			}
		}
	default:
		return "", "", errors.New("no password given: pass --password-stdin and pipe it in, or set PIER_PASSWORD (passwords are never taken as arguments)")
	}
	if newPassword {
		if err := pier.ValidatePassword(password); err != nil {
			return "", "", err
		}
	}
	return username, password, nil
}

func (c *cli) register(ctx context.Context, rawURL string, cr credentials, email, bootstrap, bootstrapFile string) error {
	url, err := normalizeURL(rawURL)
	if err != nil {
		return err
	}
	s, err := c.session()
	if err != nil {
		return err
	}
	c.url = url
	if bootstrapFile != "" {
		data, err := os.ReadFile(bootstrapFile)
		if err != nil {
			return fmt.Errorf("reading the bootstrap token: %w", err)
		}
		bootstrap = strings.TrimSpace(string(data))
		if bootstrap == "" {
			return fmt.Errorf("%s is empty: it should hold the bootstrap token pierd printed on its first start", bootstrapFile)
		}
	}

	// Checked (and prompted for) before any request, so that a mistake
	// costs nothing.
	username, password, err := c.askCredentials(cr, true)
	if err != nil {
		return err
	}

	// An admin who is logged in to this Pier creates accounts for others
	// and stays logged in as themselves. Anyone else (including a stale
	// session) registers without credentials and is then logged in.
	var admin string
	var adminToken string
	if s.token != "" && s.url == url && bootstrap == "" {
		if me, err := client.New(url, s.token).Whoami(ctx); err == nil && me.Admin {
			admin, adminToken = me.Username, s.token
		}
	}
	u, err := client.New(url, adminToken).Register(ctx, client.RegisterRequest{
		Username: username, Password: password, Email: email, BootstrapToken: bootstrap,
	})
	if err != nil {
		if pier.ErrorCode(err) == pier.EFORBIDDEN && admin == "" {
			if bootstrap != "" {
				return withHint(err, "the bootstrap token works once, for the first account; after that an admin creates accounts")
			}
			return withHint(err, "ask an admin to create your account, or pass --bootstrap-token-file if this is the first account")
		}
		return err
	}
	if admin != "" {
		fmt.Fprintf(c.stdout, "Created user %s%s. You are still logged in as %s.\n", u.Username, adminSuffix(u), admin)
		return nil
	}
	fmt.Fprintf(c.stdout, "Registered %s%s.\n", u.Username, adminSuffix(u))
	return c.loginAs(ctx, url, username, password)
}

func adminSuffix(u *pier.User) string {
	if u.Admin {
		return " (admin)"
	}
	return ""
}

func (c *cli) login(ctx context.Context, rawURL string, cr credentials) error {
	s, err := c.session()
	if err != nil {
		return err
	}
	url := s.url
	if rawURL != "" {
		if url, err = normalizeURL(rawURL); err != nil {
			return err
		}
	}
	if url == "" {
		return errors.New("no URL given: run `pier login URL`, e.g. `pier login http://pier.localhost:8080`")
	}
	c.url = url
	if cr.username == "" && rawURL == "" && s.url == url && !cr.passwordStdin {
		if _, tty := c.terminal(); !tty {
			cr.username = s.username // scripts re-logging in to the same Pier
		}
	}
	username, password, err := c.askCredentials(cr, false)
	if err != nil {
		return err
	}
	return c.loginAs(ctx, url, username, password)
}

// loginAs logs in and saves the session. The saved URL and username are
// kept for the next `pier login`.
func (c *cli) loginAs(ctx context.Context, url, username, password string) error {
	sess, err := client.New(url, "").Login(ctx, username, password)
	if err != nil {
		return err
	}
	if err := c.saveConfig(savedConfig{URL: url, Token: sess.Token, Username: sess.User.Username}); err != nil {
		return fmt.Errorf("logged in, but could not save the session: %w", err)
	}
	fmt.Fprintf(c.stdout, "Logged in as %s at %s.\n", sess.User.Username, url)
	if c.getenv("PIER_TOKEN") != "" {
		fmt.Fprintln(c.stderr, "note: PIER_TOKEN is set in your environment and takes precedence over this login")
	}
	return nil
}

func (c *cli) logout(ctx context.Context) error {
	s, err := c.session()
	if err != nil {
		return err
	}
	if s.tokenFromEnv {
		return errors.New("you are using PIER_TOKEN from the environment: unset it to log out (and revoke an API token with `pier tokens:revoke ID`)")
	}
	if s.token == "" {
		fmt.Fprintln(c.stdout, "Not logged in.")
		return nil
	}
	apiErr := client.New(s.url, s.token).Logout(ctx)
	if pier.ErrorCode(apiErr) == pier.EUNAUTHORIZED {
		apiErr = nil // the session had expired or was revoked already
	}
	// Forget the token here whatever the server said: logging out must
	// work even when the server is gone. Keep the URL and username, so
	// that `pier login` alone logs in again.
	sc, err := c.loadConfig()
	if err != nil {
		return err
	}
	sc.Token = ""
	if err := c.saveConfig(sc); err != nil {
		return err
	}
	if apiErr != nil {
		return withHint(apiErr, "the session is forgotten on this machine, but the server did not revoke it; it expires by itself")
	}
	fmt.Fprintf(c.stdout, "Logged out of %s.\n", s.url)
	return nil
}

// notReady says which of Pier's readiness checks fail, and why.
func notReady(url string, r *client.Readiness) error {
	var failing []string
	for name, v := range r.Checks {
		if v != "ok" {
			failing = append(failing, name+": "+v)
		}
	}
	sort.Strings(failing)
	if len(failing) == 0 {
		failing = []string{r.Status}
	}
	return fmt.Errorf("Pier at %s answers but is not ready: %s", url, strings.Join(failing, "; "))
}
