package cli

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pierpaas/pier"
)

func (c *cli) addAppCommands(root *cobra.Command) {
	var listJSON bool
	list := &cobra.Command{
		Use:     "apps",
		Aliases: []string{"apps:list"},
		Short:   "List the apps you can see",
		Example: "  pier apps\n  pier apps:list --json",
		GroupID: "apps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			l, err := all(cmd.Context(), api.ListApps)
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(c.stdout, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintln(c.stdout, "You have no apps. Create one with `pier apps:create NAME`.")
				return nil
			}
			w := table(c.stdout)
			row(w, "NAME", "OWNER", "CREATED")
			for _, a := range l.Items {
				row(w, a.Name, a.Owner, date(a.CreatedAt))
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print the API's JSON")

	var createJSON bool
	create := &cobra.Command{
		Use:   "apps:create [NAME]",
		Short: "Create an app",
		Long: `Create an app, with release v1 and no build yet; deploy it with git push.
NAME is 3 to 30 lowercase letters, digits and dashes; without one, Pier makes one up.`,
		Example: "  pier apps:create myapp\n  pier apps:create",
		GroupID: "apps",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
				if err := pier.ValidateAppName(name); err != nil {
					return err
				}
			}
			api, err := c.authed()
			if err != nil {
				return err
			}
			info, err := api.CreateApp(cmd.Context(), name)
			if err != nil {
				return err
			}
			if createJSON {
				return printJSON(c.stdout, info)
			}
			fmt.Fprintf(c.stdout, "Creating app %s... done\n", info.Name)
			if info.URL != "" {
				fmt.Fprintln(c.stdout, clean(info.URL))
			}
			// As heroku create does: inside a git repo without a 'pier'
			// remote, add one, so that `git push pier main` deploys.
			if info.GitURL != "" && gitRemoteURL(cmd.Context(), "pier") == "" && insideGitRepo(cmd.Context()) {
				if err := exec.CommandContext(cmd.Context(), "git", "remote", "add", "pier", info.GitURL).Run(); err == nil {
					fmt.Fprintf(c.stdout, "Git remote pier added: %s\n", clean(info.GitURL))
				}
			}
			return nil
		},
	}
	create.Flags().BoolVar(&createJSON, "json", false, "print the API's JSON")

	var info struct {
		app  string
		json bool
	}
	infoCmd := &cobra.Command{
		Use:     "apps:info",
		Short:   "Show an app: URL, release, processes, domains, members",
		Example: "  pier apps:info -a myapp\n  pier apps:info --json",
		GroupID: "apps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), info.app)
			if err != nil {
				return err
			}
			a, err := api.App(cmd.Context(), app)
			if err != nil {
				return err
			}
			if info.json {
				return printJSON(c.stdout, a)
			}
			c.printAppInfo(a)
			return nil
		},
	}
	addAppFlag(infoCmd, &info.app)
	infoCmd.Flags().BoolVar(&info.json, "json", false, "print the API's JSON")

	var destroy struct{ app, confirm string }
	destroyCmd := &cobra.Command{
		Use:   "apps:destroy [APP]",
		Short: "Destroy an app, with all its releases, config and domains",
		Long: `Destroy an app for good: its processes stop and its releases, config, domains
and members are deleted. On a terminal you are asked to type the app's name;
scripts pass --confirm APP.`,
		Example: "  pier apps:destroy -a myapp\n  pier apps:destroy myapp --confirm myapp",
		GroupID: "apps",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			flag := destroy.app
			if len(args) == 1 {
				if flag != "" && flag != args[0] {
					return fmt.Errorf("two different apps given (%s and -a %s): give one", args[0], flag)
				}
				flag = args[0]
			}
			app, api, err := c.appAPI(cmd.Context(), flag)
			if err != nil {
				return err
			}
			if err := c.confirm("confirm", destroy.confirm, app, "WARNING: this destroys "+app+" with all its releases, config and domains."); err != nil {
				return err
			}
			if err := api.DestroyApp(cmd.Context(), app); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Destroying %s... done\n", app)
			return nil
		},
	}
	addAppFlag(destroyCmd, &destroy.app)
	destroyCmd.Flags().StringVar(&destroy.confirm, "confirm", "", "the app's name again, to confirm without a prompt")

	var open struct{ app string }
	openCmd := &cobra.Command{
		Use:     "open",
		Aliases: []string{"apps:open"},
		Short:   "Open the app in a web browser",
		Long: `Open the app's URL in your web browser. When pier's output is not a
terminal, or no browser opener (xdg-open) is found, the URL is printed instead.`,
		Example: "  pier open -a myapp\n  pier apps:open\n  curl \"$(pier open -a myapp)\"",
		GroupID: "apps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), open.app)
			if err != nil {
				return err
			}
			a, err := api.App(cmd.Context(), app)
			if err != nil {
				return err
			}
			u, err := appWebURL(a.URL)
			if err != nil {
				return err
			}
			opener := browserOpener()
			if !c.stdoutIsTerminal() || opener == "" {
				fmt.Fprintln(c.stdout, u)
				return nil
			}
			fmt.Fprintf(c.stdout, "Opening %s...\n", u)
			// The opener runs directly, with the URL as its one argument:
			// no shell sees it.
			if err := exec.CommandContext(cmd.Context(), opener, u).Run(); err != nil {
				return fmt.Errorf("%s could not open %s (%v): open it yourself", opener, u, err)
			}
			return nil
		},
	}
	addAppFlag(openCmd, &open.app)

	root.AddCommand(list, create, infoCmd, destroyCmd, openCmd)
}

// appWebURL checks the app URL the server sent before it reaches a browser
// opener: an http(s) URL with a host, nothing else (a file: URL or one
// starting with '-' would be something else to xdg-open).
func appWebURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("the server gave %q as the app's URL, which is not a web address: check the platform's public URL", clean(raw))
	}
	return u.String(), nil
}

// browserOpener is the program that opens a URL in the user's browser, or
// "" if there is none.
func browserOpener() string {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	return ""
}

// stdoutIsTerminal reports whether our output goes to a terminal (a person)
// rather than a pipe or a file (a script).
func (c *cli) stdoutIsTerminal() bool {
	f, ok := c.stdout.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (c *cli) printAppInfo(a *pier.AppInfo) {
	fmt.Fprintf(c.stdout, "=== %s\n", a.Name)
	w := table(c.stdout)
	row(w, "Owner:", a.Owner)
	row(w, "URL:", a.URL)
	if r := a.Release; r != nil {
		row(w, "Release:", fmt.Sprintf("v%d  %s  by %s  %s", r.Version, r.Note, r.CreatedBy, c.when(r.CreatedAt)))
	}
	formation := a.Formation.String()
	if formation == "" {
		formation = "(none)"
	}
	row(w, "Formation:", formation)
	if len(a.Limits) > 0 {
		var ls []string
		for _, t := range sortedKeys(a.Limits) {
			l := t
			if m := a.Limits[t].Memory; m != "" {
				l += " memory=" + m
			}
			if cpu := a.Limits[t].CPU; cpu != "" {
				l += " cpu=" + cpu
			}
			ls = append(ls, l)
		}
		row(w, "Limits:", strings.Join(ls, ", "))
	}
	domains := append([]string(nil), a.Domains...)
	sort.Strings(domains)
	if len(domains) == 0 {
		domains = []string{"(none)"}
	}
	row(w, "Domains:", strings.Join(domains, ", "))
	var members []string
	for _, m := range a.Members {
		if m.Role == pier.RoleOwner {
			members = append(members, m.Username+" (owner)")
		} else {
			members = append(members, m.Username)
		}
	}
	row(w, "Members:", strings.Join(members, ", "))
	row(w, "Created:", c.when(a.CreatedAt))
	w.Flush()
}
