package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

// autoCertCommands are certs:auto, certs:auto:enable and
// certs:auto:disable: automatic certificates from the platform's ACME CA.
func (c *cli) autoCertCommands() []*cobra.Command {
	var status struct {
		app  string
		json bool
	}
	statusCmd := &cobra.Command{
		Use:   "certs:auto",
		Short: "Show the state of an app's automatic certificates, domain by domain",
		Long: `Show whether automatic certificates are on for an app and, for each of its
domains, their state: pending (an order is due or under way), issued (with the
expiry and renewal dates), failed (with the CA's error and the next attempt),
uploaded (an uploaded certificate covers it, so none is ordered), unsupported
(wildcards and platform names) or off.`,
		Example: "  pier certs:auto -a myapp\n  pier certs:auto --json",
		GroupID: "domains",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), status.app)
			if err != nil {
				return err
			}
			a, err := api.AutoCerts(cmd.Context(), app)
			if err != nil {
				return err
			}
			if status.json {
				return printJSON(c.stdout, a)
			}
			return printAutoCerts(c.stdout, a)
		},
	}
	addAppFlag(statusCmd, &status.app)
	statusCmd.Flags().BoolVar(&status.json, "json", false, "print the API's JSON")

	toggle := func(on bool) *cobra.Command {
		var opts struct {
			app  string
			json bool
		}
		use, short, long := "certs:auto:enable", "Get and renew TLS certificates for an app's domains automatically (ACME)",
			`Turn automatic certificates on: Pier orders a certificate from its ACME CA
(such as Let's Encrypt) for each exact custom domain of the app, proves the
domain is the app's over plain HTTP (HTTP-01) through the router, serves it
over HTTPS, and renews it 30 days before it expires. Each domain's DNS must
point at Pier's router, reachable on port 80, for the CA to validate it.
Wildcard domains are not ordered (upload a certificate for them), nor names an
uploaded certificate covers: an uploaded certificate takes precedence.
See the progress with pier certs:auto.`
		if !on {
			use, short, long = "certs:auto:disable", "Stop getting and renewing an app's TLS certificates automatically",
				`Turn automatic certificates off: no more orders or renewals. The certificates
already issued keep being served until they expire, or until you remove them
with pier certs:remove.`
		}
		cmd := &cobra.Command{
			Use:     use,
			Short:   short,
			Long:    long,
			Example: "  pier " + use + " -a myapp",
			GroupID: "domains",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				app, api, err := c.appAPI(cmd.Context(), opts.app)
				if err != nil {
					return err
				}
				var a *pier.AutoCerts
				if on {
					a, err = api.EnableAutoCerts(cmd.Context(), app)
				} else {
					a, err = api.DisableAutoCerts(cmd.Context(), app)
				}
				if err != nil {
					return err
				}
				if opts.json {
					return printJSON(c.stdout, a)
				}
				if !on {
					fmt.Fprintf(c.stdout, "Disabling automatic certificates for %s... done\nIssued certificates are served until they expire, and no longer renewed.\n", app)
					return nil
				}
				fmt.Fprintf(c.stdout, "Enabling automatic certificates for %s... done\n", app)
				if !a.Issuing {
					fmt.Fprintf(c.stdout, "Note: this Pier has no ACME CA configured, so nothing is ordered yet: its operator starts pierd with --acme-directory URL.\n")
				}
				if len(a.Domains) == 0 {
					fmt.Fprintf(c.stdout, "%s has no custom domains yet: add one with `pier domains:add www.example.com -a %s`, and a certificate is ordered for it.\n", app, app)
					return nil
				}
				fmt.Fprintf(c.stdout, "Certificates are ordered in the background: see `pier certs:auto -a %s`.\n", app)
				return nil
			},
		}
		addAppFlag(cmd, &opts.app)
		cmd.Flags().BoolVar(&opts.json, "json", false, "print the API's JSON")
		return cmd
	}
	return []*cobra.Command{statusCmd, toggle(true), toggle(false)}
}

func printAutoCerts(w io.Writer, a *pier.AutoCerts) error {
	onOff := map[bool]string{true: "enabled", false: "disabled"}
	fmt.Fprintf(w, "=== %s Automatic Certificates: %s\n", a.App, onOff[a.Enabled])
	if a.Enabled && !a.Issuing {
		fmt.Fprintln(w, "Note: this Pier has no ACME CA configured (pierd --acme-directory): nothing is ordered.")
	}
	if len(a.Domains) == 0 {
		fmt.Fprintf(w, "%s has no custom domains: add one with `pier domains:add HOSTNAME -a %s`.\n", a.App, a.App)
		return nil
	}
	tw := table(w)
	row(tw, "DOMAIN", "STATUS", "CERT", "EXPIRES", "RENEWS", "DETAIL")
	opt := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return date(*t)
	}
	for _, d := range a.Domains {
		detail := d.Detail
		if d.Status == pier.AutoCertFailed && d.NextAttempt != nil {
			detail = "attempt " + strconv.Itoa(d.Attempts) + " failed, next at " + date(*d.NextAttempt) + ": " + detail
		}
		row(tw, clean(d.Hostname), d.Status, d.Cert, opt(d.ExpiresAt), opt(d.RenewAt), clean(detail))
	}
	return tw.Flush()
}
