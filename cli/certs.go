package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pierpaas/pier"
)

func (c *cli) addCertCommands(root *cobra.Command) {
	var list struct {
		app  string
		json bool
	}
	listCmd := &cobra.Command{
		Use:     "certs",
		Short:   "List an app's TLS certificates",
		Example: "  pier certs -a myapp\n  pier certs --json",
		GroupID: "domains",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, api, err := c.appAPI(cmd.Context(), list.app)
			if err != nil {
				return err
			}
			l, err := api.Certs(cmd.Context(), app)
			if err != nil {
				return err
			}
			if list.json {
				return printJSON(c.stdout, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintf(c.stdout, "%s has no TLS certificates. Add one with `pier certs:add CERT_FILE KEY_FILE`.\n", app)
				return nil
			}
			fmt.Fprintf(c.stdout, "=== %s Certificates\n", app)
			w := table(c.stdout)
			row(w, "NAME", "DOMAINS", "EXPIRES", "ISSUER")
			for _, ct := range l.Items {
				issuer := clean(ct.Issuer)
				if ct.Managed {
					issuer += " (auto)" // ordered by Pier: pier certs:auto
				}
				row(w, ct.Name, clean(strings.Join(ct.Domains, ", ")), date(ct.ExpiresAt), issuer)
			}
			return w.Flush()
		},
	}
	addAppFlag(listCmd, &list.app)
	listCmd.Flags().BoolVar(&list.json, "json", false, "print the API's JSON")

	var add struct {
		app  string
		json bool
	}
	addCmd := &cobra.Command{
		Use:   "certs:add CERT_FILE KEY_FILE",
		Short: "Upload a TLS certificate and its private key for an app's domains",
		Long: `Upload a TLS certificate chain (PEM, leaf first, then intermediates) and its
private key (PEM, unencrypted). The router serves it over HTTPS to clients that
ask for one of its names (SNI). Every name of the certificate must be one of
the app's domains (pier domains:add) or <app>.<platform domain>. The key is
never shown again by Pier.`,
		Example: "  pier certs:add fullchain.pem privkey.pem -a myapp",
		GroupID: "domains",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			chain, err := readPEMFile(args[0], "certificate")
			if err != nil {
				return err
			}
			key, err := readPEMFile(args[1], "private key")
			if err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), add.app)
			if err != nil {
				return err
			}
			ct, err := api.AddCert(cmd.Context(), app, chain, key)
			if err != nil {
				return err
			}
			if add.json {
				return printJSON(c.stdout, ct)
			}
			fmt.Fprintf(c.stdout, "Adding certificate %s to %s... done\nIt serves %s until %s.\n", ct.Name, app, clean(strings.Join(ct.Domains, ", ")), date(ct.ExpiresAt))
			return nil
		},
	}
	addAppFlag(addCmd, &add.app)
	addCmd.Flags().BoolVar(&add.json, "json", false, "print the API's JSON")

	var remove struct{ app, confirm string }
	removeCmd := &cobra.Command{
		Use:   "certs:remove NAME",
		Short: "Remove a TLS certificate from an app",
		Long: `Remove one of an app's TLS certificates, by its name (as pier certs shows)
or at least 8 hex digits of its fingerprint. Its domains are no longer served
over HTTPS unless another certificate covers them. On a terminal you are asked
to type the name again; scripts pass --confirm with the same value.`,
		Example: "  pier certs:remove 3f2a9c1b7d4e -a myapp\n  pier certs:remove 3f2a9c1b7d4e -a myapp --confirm 3f2a9c1b7d4e",
		GroupID: "domains",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := pier.NormalizeCertName(args[0])
			if err != nil {
				return err
			}
			app, api, err := c.appAPI(cmd.Context(), remove.app)
			if err != nil {
				return err
			}
			if err := c.confirm("confirm", remove.confirm, args[0], "This removes the certificate "+args[0]+" from "+app+": its domains are no longer served over HTTPS."); err != nil {
				return err
			}
			if err := api.RemoveCert(cmd.Context(), app, name); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Removing certificate %s from %s... done\n", name, app)
			return nil
		},
	}
	addAppFlag(removeCmd, &remove.app)
	removeCmd.Flags().StringVar(&remove.confirm, "confirm", "", "the certificate's NAME again, to confirm without a prompt")

	root.AddCommand(c.autoCertCommands()...) // autocerts.go
	root.AddCommand(listCmd, addCmd, removeCmd,
		c.httpsCommand("redirect", "https:redirect", "Send an app's plain-HTTP requests to https:// (308), or stop",
			`With on, the router answers every plain-HTTP request to the app with a
permanent redirect (308) to the same URL over https. Upload a certificate for
the app's domains first (pier certs:add).`),
		c.httpsCommand("hsts", "https:hsts", "Tell browsers to use only HTTPS for an app (HSTS), or stop",
			`With on, answers over HTTPS carry Strict-Transport-Security: max-age=31536000:
browsers that saw it use only https for the name for a year. Turn it on once
HTTPS works for every domain of the app.`),
	)
}

// httpsCommand is https:redirect or https:hsts: on, off, or (no argument)
// the current settings.
func (c *cli) httpsCommand(field, use, short, long string) *cobra.Command {
	var opts struct {
		app  string
		json bool
	}
	cmd := &cobra.Command{
		Use:     use + " [on|off]",
		Short:   short,
		Long:    long + "\nWithout on or off, it shows the app's HTTPS settings.",
		Example: "  pier " + use + " on -a myapp\n  pier " + use + " off -a myapp\n  pier " + use + " -a myapp",
		GroupID: "domains",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var change pier.HTTPSChange
			if len(args) == 1 {
				var v bool
				switch strings.ToLower(args[0]) {
				case "on", "true", "yes":
					v = true
				case "off", "false", "no":
				default:
					return fmt.Errorf("%q is neither on nor off: run `pier %s on` or `pier %s off`", clean(args[0]), use, use)
				}
				if field == "redirect" {
					change.HTTPSRedirect = &v
				} else {
					change.HSTS = &v
				}
			}
			app, api, err := c.appAPI(cmd.Context(), opts.app)
			if err != nil {
				return err
			}
			var s *pier.HTTPSSettings
			if len(args) == 0 {
				s, err = api.HTTPS(cmd.Context(), app)
			} else {
				s, err = api.SetHTTPS(cmd.Context(), app, change)
			}
			if err != nil {
				return err
			}
			if opts.json {
				return printJSON(c.stdout, s)
			}
			onOff := map[bool]string{true: "on", false: "off"}
			fmt.Fprintf(c.stdout, "%s: HTTPS redirect %s, HSTS %s\n", app, onOff[s.HTTPSRedirect], onOff[s.HSTS])
			return nil
		},
	}
	addAppFlag(cmd, &opts.app)
	cmd.Flags().BoolVar(&opts.json, "json", false, "print the API's JSON")
	return cmd
}

// readPEMFile reads a certificate or key file for certs:add.
func readPEMFile(path, what string) (string, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist: give the path of the %s (PEM)", path, what)
	}
	if err != nil {
		return "", err
	}
	if st.Size() > pier.MaxPEM {
		return "", fmt.Errorf("%s is %d bytes, too large for a %s (at most %d KB)", path, st.Size(), what, pier.MaxPEM>>10)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if !strings.Contains(string(b), "-----BEGIN ") {
		return "", fmt.Errorf("%s is not PEM: give the %s as a PEM file (-----BEGIN ...)", path, what)
	}
	return string(b), nil
}
