package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

func (c *cli) addLogsCommand(root *cobra.Command) {
	var o struct {
		app  string
		tail bool
		num  int
		ps   string
		json bool
	}
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show the app's log; -t keeps following it",
		Long: `Show the last lines of the app's log: what its processes print, and what Pier
says about them (pier[platform] lines). With -t, keep printing new lines as
they come, until Ctrl-C. -p shows one process type (web) or one process (web.1).`,
		Example: "  pier logs -a myapp\n  pier logs -t\n  pier logs -n 500 -p web\n  pier logs --tail --ps worker.2",
		GroupID: "ps",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.num < 1 || o.num > pier.LogLinesMax {
				return fmt.Errorf("--num %d is invalid: use 1 to %d", o.num, pier.LogLinesMax)
			}
			typ, proc, err := parseProcessFilter(o.ps)
			if err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), o.app)
			if err != nil {
				return err
			}
			opts := pier.LogOptions{Lines: o.num, Type: typ, Follow: o.tail}
			err = api.Logs(cmd.Context(), app, opts, func(l pier.LogLine) error {
				if proc != "" && l.Process != proc {
					return nil
				}
				if o.json {
					b, err := json.Marshal(l)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.stdout, "%s\n", b)
					return err
				}
				_, err := fmt.Fprintln(c.stdout, formatLogLine(l))
				return err
			})
			if err == nil && o.tail && cmd.Context().Err() == nil {
				return errors.New("the server ended the log stream: run `pier logs -t` again to go on following it")
			}
			return err
		},
	}
	addAppFlag(cmd, &o.app)
	cmd.Flags().BoolVarP(&o.tail, "tail", "t", false, "keep printing new lines until Ctrl-C")
	cmd.Flags().IntVarP(&o.num, "num", "n", pier.LogLinesDefault, fmt.Sprintf("how many of the last lines to show (at most %d)", pier.LogLinesMax))
	cmd.Flags().StringVarP(&o.ps, "ps", "p", "", "only the lines of this process type (web) or process (web.1)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print each line as the API's JSON")
	root.AddCommand(cmd)
}

// parseProcessFilter reads -p: a process type ("web"), or one process
// ("web.1"), which the API narrows to its type and we to the process.
func parseProcessFilter(s string) (typ, proc string, err error) {
	if s == "" {
		return "", "", nil
	}
	typ, index, one := strings.Cut(s, ".")
	if err := pier.ValidateProcessType(typ); err != nil {
		return "", "", err
	}
	if !one {
		return typ, "", nil
	}
	if n, err := strconv.Atoi(index); err != nil || n < 1 || strconv.Itoa(n) != index {
		return "", "", fmt.Errorf("--ps %q is invalid: give a process type such as web, or a process such as web.1", clean(s))
	}
	return typ, s, nil
}

// formatLogLine renders a line as Heroku's logs does:
// "2026-11-23T10:00:00.123456Z app[web.1]: text". Pier's own lines about
// the app read "pier[platform]: ...".
func formatLogLine(l pier.LogLine) string {
	source := "app[" + clean(l.Process) + "]"
	if l.Process == "pier" {
		source = "pier[platform]"
	}
	// The text is the app's own output, shown as it wrote it (colours
	// included), as config values are.
	return l.Time.UTC().Format("2006-01-02T15:04:05.000000Z") + " " + source + ": " + l.Text
}
