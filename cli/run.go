package cli

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

func (c *cli) addRunCommand(root *cobra.Command) {
	var o struct{ app string }
	cmd := &cobra.Command{
		Use:   "run [--] COMMAND [ARG...]",
		Short: "Run a one-off process with the app's build and config",
		Long: `Run a command as a one-off process of the app: with the build and the config
vars of its current release, beside its other processes. Its output streams
here, and pier exits with the command's exit status.

The command runs as given, without a shell: for variables, pipes or several
commands, run a shell yourself, as in the examples. Flags of pier (-a) come
before the command; everything after it is the command's. Input is not
sent: the command reads end-of-file.`,
		Example: `  pier run -a myapp -- python manage.py migrate
  pier run ls -la
  pier run -- sh -c 'echo "$DATABASE_URL" | cut -d@ -f2'`,
		GroupID: "ps",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(args[0]) == "" {
				return errors.New("no command given: say what to run, such as `pier run -- ls -la`")
			}
			if err := pier.ValidateCommand(args); err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), o.app)
			if err != nil {
				return err
			}
			code, err := api.Run(cmd.Context(), app, args, c.stdout, c.stderr)
			if err != nil {
				var pe *pier.Error
				if len(args) == 1 && strings.ContainsAny(args[0], " |&;<>$*") && errors.As(err, &pe) && strings.HasPrefix(pe.Message, "cannot run") {
					return withHint(err, "the command runs without a shell: to run a command line, use `pier run -- sh -c '...'`")
				}
				return err
			}
			if code == 0 {
				return nil
			}
			if code < 0 || code > 255 {
				code = 1
			}
			return exitStatus{code}
		},
	}
	// Everything from the command on is the command's, flags included.
	cmd.Flags().SetInterspersed(false)
	addAppFlag(cmd, &o.app)
	root.AddCommand(cmd)
}
