// Package cli is the `pier` command: Heroku/Deis-style `topic:verb`
// commands over the typed API client. Main is what cmd/pier runs; Run is the
// same with its inputs and outputs passed in, so that tests run commands
// in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

// Main runs the command line of this process and returns its exit status.
func Main() int {
	return Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
}

// Run runs one `pier` command line. It returns 0 on success and 1 on any
// error, which it reports on stderr as "error: <message>" with a hint where
// one helps; `pier run` returns the exit status of the command it ran.
// getenv stands for os.Getenv (PIER_URL, PIER_TOKEN, HOME...).
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now}
	if err := refusePasswordArgs(args); err != nil {
		c.report(err)
		return 1
	}
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(context.Background()); err != nil {
		var es exitStatus
		if errors.As(err, &es) {
			return es.code
		}
		c.report(err)
		return 1
	}
	return 0
}

// exitStatus is how a command that ran something elsewhere (`pier run`)
// ends with that thing's exit status, reporting nothing more.
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// cli is the state of one run: its streams and environment, and what it
// has loaded so far.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	// url is the API the command talked to, for hints such as "run
	// `pier login URL`".
	url string
	// authHint is what to say when the server refuses our credentials; it
	// stays empty for commands that send none (a wrong password at login
	// is not an expired session).
	authHint string
}

// Command groups, so that `pier --help` reads by topic.
var groups = []*cobra.Group{
	{ID: "apps", Title: "Apps:"},
	{ID: "config", Title: "Config vars, builds and releases:"},
	{ID: "ps", Title: "Processes:"},
	{ID: "domains", Title: "Domains and access:"},
	{ID: "account", Title: "Your account:"},
	{ID: "admin", Title: "Administration:"},
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pier",
		Short: "Deploy and run apps on Pier",
		Long: `pier is the command line of Pier, a platform that builds and runs your apps
from a git push. Commands are "topic:verb", as in Heroku: apps:create, config:set...
App commands take -a APP, or find the app from a git remote named "pier".`,
		Example: `  pier login http://pier.localhost:8080
  pier apps:create myapp
  git push pier main
  pier config:set GREETING="hello world" -a myapp
  pier scale web=2 -a myapp`,
		Version:           client.Version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.AddGroup(groups...)
	root.SetHelpCommandGroupID("account")
	for _, add := range []func(*cobra.Command){
		c.addAuthCommands, c.addUserCommands, c.addTokenCommands, c.addKeyCommands,
		c.addAppCommands, c.addConfigCommands, c.addReleaseCommands, c.addBuildCommands,
		c.addPsCommands, c.addLimitsCommands, c.addBuildpackCommands, c.addLogsCommand, c.addRunCommand,
		c.addDomainCommands, c.addRouterCommands, c.addPermCommands, c.addEventCommands,
		c.addCertCommands,         // certs.go
		c.addServiceTokenCommands, // servicetokens.go
	} {
		add(root)
	}
	root.AddCommand(&cobra.Command{
		Use:     "version",
		Short:   "Print the version of this pier",
		GroupID: "account",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(c.stdout, "pier %s\n", client.Version)
			return nil
		},
	})
	// Cobra's own usage errors ("unknown flag", "accepts 1 arg(s)") get our
	// format and a pointer to the command's help.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{cmd: cmd, err: err}
	})
	for _, cmd := range root.Commands() {
		if check := cmd.Args; check != nil {
			cmd.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{cmd: cmd, err: err}
				}
				return nil
			}
		}
	}
	return root
}

// usageError is a mistake in the command line itself.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e usageError) Error() string { return e.err.Error() }

// hinted is an error with advice on what to do next.
type hinted struct {
	err  error
	hint string
}

func (e hinted) Error() string { return e.err.Error() }
func (e hinted) Unwrap() error { return e.err }

func withHint(err error, format string, args ...any) error {
	return hinted{err: err, hint: fmt.Sprintf(format, args...)}
}

// report prints err as "error: ..." and the most useful hint we know.
func (c *cli) report(err error) {
	msg := err.Error()
	var hint string
	var h hinted
	var ue usageError
	var pe *pier.Error
	var te *client.TimeoutError
	var dnsErr *net.DNSError
	var urlErr *url.Error
	if errors.As(err, &urlErr) && !errors.As(err, &te) {
		// "Get \"http://...\": dial tcp ...: connect: connection refused"
		// says the same thing less clearly.
		msg = fmt.Sprintf("cannot reach %s: %s", c.urlOr("the Pier API"), netReason(urlErr.Err))
	}
	switch {
	case errors.As(err, &h):
		hint = h.hint
	case errors.As(err, &ue):
		hint = fmt.Sprintf("run `%s --help` for usage", ue.cmd.CommandPath())
	case strings.HasPrefix(msg, "unknown command"):
		hint = "run `pier --help` for the list of commands"
	case errors.As(err, &pe):
		msg = pe.Message
		switch pe.Code {
		case pier.EUNAUTHORIZED:
			hint = c.authHint
		case pier.EFORBIDDEN:
			hint = "ask the app's owner or an admin for access"
		case pier.EROLLOUT:
			hint = "`pier logs` shows what the processes printed; `pier releases` marks failed releases"
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = "is pierd running? `make run` starts it"
	case errors.As(err, &te):
		hint = "the server is slow or stuck; try again, or check its logs"
	case errors.As(err, &dnsErr):
		hint = "check the URL you logged in with (`pier login URL`)"
	}
	fmt.Fprintf(c.stderr, "error: %s\n", msg)
	if hint != "" {
		fmt.Fprintf(c.stderr, "hint: %s\n", hint)
	}
}

// netReason is the end of a network error's chain, the part people need:
// "connection refused", "no such host pier.example.com".
func netReason(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "no such host " + dnsErr.Name
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

func (c *cli) urlOr(def string) string {
	if c.url != "" {
		return c.url
	}
	return def
}

// refusePasswordArgs stops a password given on argv before anything else
// runs: argv is visible to every user of the machine and lands in shell
// history. The value is never echoed.
func refusePasswordArgs(args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--password" || strings.HasPrefix(a, "--password=") {
			return errors.New("passwords are never taken as command-line arguments: use --password-stdin, PIER_PASSWORD, or the prompt on a terminal")
		}
	}
	return nil
}
