package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

// addBuildpackCommands are Heroku's buildpacks topic, for a platform that
// builds with Cloud Native Buildpacks: a CNB builder image bundles the
// buildpacks, so an app chooses a builder rather than a list of buildpacks.
func (c *cli) addBuildpackCommands(root *cobra.Command) {
	var show struct {
		app  string
		json bool
	}
	showCmd := &cobra.Command{
		Use:   "buildpacks",
		Short: "Show the CNB builder the app's pushes are built with",
		Long: `Show the Cloud Native Buildpacks builder image that builds the app's source
when the platform builds with pack: the app's own choice, or the platform's
default builder.`,
		Example: "  pier buildpacks -a myapp",
		GroupID: "config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), show.app)
			if err != nil {
				return err
			}
			b, err := api.Builder(cmd.Context(), app)
			if err != nil {
				return err
			}
			return c.printBuilder(app, b, show.json)
		},
	}
	addAppFlag(showCmd, &show.app)
	showCmd.Flags().BoolVar(&show.json, "json", false, "print the API's JSON")

	var set struct {
		app  string
		json bool
	}
	setCmd := &cobra.Command{
		Use:   "buildpacks:set-builder IMAGE",
		Short: "Build the app's pushes with another CNB builder image",
		Long: `Choose the Cloud Native Buildpacks builder image the app's next pushes are
built with, such as heroku/builder:24 or paketobuildpacks/builder-jammy-base.
Nothing is rebuilt now: push again to build with it. The platform runs a
builder's lifecycle with its trust (one container, with access to the
registry credentials) only if the operator lists it as trusted; others are
built in separate, untrusted phases.`,
		Example: "  pier buildpacks:set-builder heroku/builder:24 -a myapp\n  git push pier main",
		GroupID: "config",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := pier.ValidateImage(args[0]); err != nil {
				return err
			}
			return c.setBuilder(cmd, set.app, args[0], set.json)
		},
	}
	addAppFlag(setCmd, &set.app)
	setCmd.Flags().BoolVar(&set.json, "json", false, "print the API's JSON")

	var unset struct {
		app  string
		json bool
	}
	unsetCmd := &cobra.Command{
		Use:     "buildpacks:unset-builder",
		Short:   "Build the app's pushes with the platform's default builder again",
		Example: "  pier buildpacks:unset-builder -a myapp",
		GroupID: "config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.setBuilder(cmd, unset.app, "", unset.json)
		},
	}
	addAppFlag(unsetCmd, &unset.app)
	unsetCmd.Flags().BoolVar(&unset.json, "json", false, "print the API's JSON")

	root.AddCommand(showCmd, setCmd, unsetCmd)
}

func (c *cli) setBuilder(cmd *cobra.Command, appFlag, builder string, asJSON bool) error {
	app, api, err := c.appAPI(cmd.Context(), appFlag)
	if err != nil {
		return err
	}
	b, err := api.SetBuilder(cmd.Context(), app, builder)
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(c.stdout, "Builder of %s set. The next git push builds with it.\n", app)
	}
	return c.printBuilder(app, b, asJSON)
}

func (c *cli) printBuilder(app string, b *pier.BuilderSetting, asJSON bool) error {
	if asJSON {
		return printJSON(c.stdout, b)
	}
	switch {
	case b.Builder != "":
		fmt.Fprintf(c.stdout, "=== %s Builder\n%s\n", app, b.Builder)
	case b.Default != "":
		fmt.Fprintf(c.stdout, "=== %s Builder\n%s (the platform's default)\n", app, b.Default)
	default:
		fmt.Fprintf(c.stdout, "=== %s Builder\nthe platform's default (this platform builds without a CNB builder image)\n", app)
	}
	return nil
}
