package cli

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

func (c *cli) addBuildCommands(root *cobra.Command) {
	var list struct {
		app   string
		limit int
		json  bool
	}
	listCmd := &cobra.Command{
		Use:     "builds",
		Short:   "List an app's builds, newest first",
		Long:    "List an app's builds, failed ones included, newest first. `pier builds:info ID` shows one with its log.",
		Example: "  pier builds -a myapp\n  pier builds -n 50 --json",
		GroupID: "config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if list.limit < 1 || list.limit > pier.PageMax {
				return fmt.Errorf("--limit %d is invalid: use 1 to %d", list.limit, pier.PageMax)
			}
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			l, err := api.Builds(cmd.Context(), app, pier.Page{Limit: list.limit})
			if err != nil {
				return err
			}
			if list.json {
				return printJSON(c.stdout, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintf(c.stdout, "%s has no builds yet: deploy it with `git push pier main`.\n", app)
				return nil
			}
			fmt.Fprintf(c.stdout, "=== %s Builds\n", app)
			w := table(c.stdout)
			row(w, "ID", "COMMIT", "STATUS", "STRATEGY", "BY", "CREATED")
			for _, b := range l.Items {
				commit := shortCommit(b.Commit)
				if commit == "" {
					commit = "-"
				}
				row(w, strconv.FormatInt(b.ID, 10), commit, b.Status, b.Strategy, b.CreatedBy, c.age(b.CreatedAt))
			}
			return w.Flush()
		},
	}
	addAppFlag(listCmd, &list.app)
	listCmd.Flags().IntVarP(&list.limit, "limit", "n", 15, "how many builds to show")
	listCmd.Flags().BoolVar(&list.json, "json", false, "print the API's JSON")

	var info struct {
		app  string
		json bool
	}
	infoCmd := &cobra.Command{
		Use:   "builds:info [ID]",
		Short: "Show one build and its log (default: the newest)",
		Long: `Show one build (default: the newest): its commit, status, strategy, image
and process types, then its log as the pusher saw it (a very long log keeps
its start and its end).`,
		Example: "  pier builds:info -a myapp\n  pier builds:info 12\n  pier builds:info --json",
		GroupID: "config",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id int64
			if len(args) == 1 && args[0] != "latest" {
				n, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || n < 1 {
					return fmt.Errorf("build ID %q is invalid: use a number from `pier builds`", clean(args[0]))
				}
				id = n
			}
			app, api, err := c.appAPI(cmd.Context(), info.app)
			if err != nil {
				return err
			}
			var b *pier.Build
			if id == 0 {
				b, err = api.LatestBuild(cmd.Context(), app)
			} else {
				b, err = api.Build(cmd.Context(), app, id)
			}
			if err != nil {
				return err
			}
			if info.json {
				return printJSON(c.stdout, b)
			}
			c.printBuild(app, b)
			return nil
		},
	}
	addAppFlag(infoCmd, &info.app)
	infoCmd.Flags().BoolVar(&info.json, "json", false, "print the API's JSON")

	var create struct {
		app, procfile string
		json          bool
	}
	createCmd := &cobra.Command{
		Use:   "builds:create IMAGE",
		Short: "Deploy an existing container image (a build and a release)",
		Long: `Deploy an existing container image, as Deis' builds:create does: a build of
strategy "image" and a new release of it, written once its processes serve
(if they do not come up, nothing is released and the app keeps running as it
was). IMAGE is [registry[:port]/]path[:tag][@sha256:digest].

Without --procfile the image's own entrypoint runs as the web process type.
With it, each "type: command" line of the Procfile is a process type whose
command runs in the image ("-" reads the Procfile from stdin).

This needs a scheduler that runs images (pierd --scheduler=kubernetes); the
local scheduler of the embedded default runs what git push builds.`,
		Example: `  pier builds:create nginx:1.27 -a myapp
  pier builds:create registry.example.com/team/api:v2 --procfile Procfile
  pier builds:create ghcr.io/acme/app@sha256:0123...cdef -p - < Procfile`,
		GroupID: "config",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			image := args[0]
			if err := pier.ValidateImage(image); err != nil {
				return err
			}
			procfile, err := c.readProcfile(create.procfile)
			if err != nil {
				return err
			}
			// The answer comes once the new processes serve.
			app, api, err := c.appAPI(cmd.Context(), create.app, client.WithTimeout(convergeTimeout))
			if err != nil {
				return err
			}
			if !create.json {
				fmt.Fprintf(c.stdout, "Deploying %s to %s... ", clean(image), app)
			}
			rel, err := api.CreateBuild(cmd.Context(), app, image, procfile)
			if err != nil {
				if !create.json {
					fmt.Fprintln(c.stdout, "failed")
				}
				return err
			}
			if create.json {
				return printJSON(c.stdout, rel)
			}
			fmt.Fprintf(c.stdout, "done, v%d\n", rel.Version)
			return nil
		},
	}
	addAppFlag(createCmd, &create.app)
	createCmd.Flags().StringVarP(&create.procfile, "procfile", "p", "", "a Procfile defining the process types (\"-\": stdin)")
	createCmd.Flags().BoolVar(&create.json, "json", false, "print the new release as the API's JSON")

	root.AddCommand(listCmd, infoCmd, createCmd)
}

// readProcfile reads and checks the Procfile at path ("-": stdin; "": none).
func (c *cli) readProcfile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	var r io.Reader = c.stdin
	name := "the Procfile on stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("reading the Procfile: %w", err)
		}
		defer f.Close()
		r, name = f, path
	}
	b, err := io.ReadAll(io.LimitReader(r, pier.ProcfileMax+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	if _, err := pier.ParseProcfile(string(b)); err != nil {
		return "", fmt.Errorf("%s: %s", name, pier.ErrorMessage(err))
	}
	return string(b), nil
}

func (c *cli) printBuild(app string, b *pier.Build) {
	fmt.Fprintf(c.stdout, "=== Build %d of %s\n", b.ID, app)
	w := table(c.stdout)
	commit := b.Commit
	if commit == "" {
		commit = "(none)"
	}
	row(w, "Commit:", commit)
	row(w, "Status:", b.Status)
	row(w, "Strategy:", b.Strategy)
	if b.Image != "" {
		row(w, "Image:", b.Image)
	}
	types := make([]string, 0, len(b.ProcessTypes))
	for t := range b.ProcessTypes {
		types = append(types, t)
	}
	sort.Strings(types)
	if len(types) == 0 {
		types = []string{"(none)"}
	}
	row(w, "Process types:", strings.Join(types, ", "))
	row(w, "By:", b.CreatedBy)
	row(w, "When:", c.when(b.CreatedAt))
	w.Flush()
	fmt.Fprintln(c.stdout)
	if b.Log == "" {
		fmt.Fprintln(c.stdout, "(this build kept no log)")
		return
	}
	fmt.Fprintln(c.stdout, "=== Log")
	// The log is shown as the pusher saw it, colours included.
	io.WriteString(c.stdout, b.Log)
	if !strings.HasSuffix(b.Log, "\n") {
		fmt.Fprintln(c.stdout)
	}
}
