package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// defaultKeyFiles are tried in order by keys:add without a file, relative to
// the home directory: the modern default first.
var defaultKeyFiles = []string{".ssh/id_ed25519.pub", ".ssh/id_ecdsa.pub", ".ssh/id_rsa.pub"}

func (c *cli) addKeyCommands(root *cobra.Command) {
	var listJSON bool
	keys := &cobra.Command{
		Use:     "keys",
		Short:   "List your SSH keys (for git push)",
		Example: "  pier keys\n  pier keys --json",
		GroupID: "account",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			l, err := api.ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(c.stdout, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintln(c.stdout, "You have no SSH keys. Add yours with `pier keys:add`.")
				return nil
			}
			w := table(c.stdout)
			row(w, "NAME", "FINGERPRINT", "ADDED")
			for _, k := range l.Items {
				row(w, k.Name, k.Fingerprint, date(k.CreatedAt))
			}
			return w.Flush()
		},
	}
	keys.Flags().BoolVar(&listJSON, "json", false, "print the API's JSON")

	var add struct {
		name string
		json bool
	}
	addCmd := &cobra.Command{
		Use:   "keys:add [FILE]",
		Short: "Add an SSH public key, so that you can git push",
		Long: `Add an SSH public key to your account. Without FILE, the first of
~/.ssh/id_ed25519.pub, ~/.ssh/id_ecdsa.pub and ~/.ssh/id_rsa.pub is used.`,
		Example: `  pier keys:add
  pier keys:add ~/.ssh/work.pub --name laptop`,
		GroupID: "account",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			path, data, err := c.readPublicKey(path)
			if err != nil {
				return err
			}
			api, err := c.authed()
			if err != nil {
				return err
			}
			k, err := api.AddKey(cmd.Context(), add.name, data)
			if err != nil {
				return err
			}
			if add.json {
				return printJSON(c.stdout, k)
			}
			fmt.Fprintf(c.stdout, "Added %s as %s (%s).\n", path, clean(k.Name), k.Fingerprint)
			return nil
		},
	}
	addCmd.Flags().StringVar(&add.name, "name", "", "a name for the key (default: the key's comment)")
	addCmd.Flags().BoolVar(&add.json, "json", false, "print the API's JSON")

	var confirm string
	remove := &cobra.Command{
		Use:   "keys:remove NAME|FINGERPRINT",
		Short: "Remove an SSH key",
		Long: `Remove one of your SSH keys, by name or fingerprint. On a terminal you are
asked to type it again; scripts pass --confirm with the same value.`,
		Example: `  pier keys:remove laptop
  pier keys:remove SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8 --confirm SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8`,
		GroupID: "account",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.authed()
			if err != nil {
				return err
			}
			key := args[0]
			if err := c.confirm("confirm", confirm, key, "This removes the SSH key "+key+": you cannot git push with it any more."); err != nil {
				return err
			}
			if err := api.RemoveKey(cmd.Context(), key); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Removed key %s.\n", key)
			return nil
		},
	}
	remove.Flags().StringVar(&confirm, "confirm", "", "the key's NAME or FINGERPRINT again, to confirm without a prompt")

	root.AddCommand(keys, addCmd, remove)
}

// maxKeyFile bounds what we read as a public key: an RSA 16384-bit public
// key is under 3 KB.
const maxKeyFile = 16 << 10

// readPublicKey reads the public key at path, or at the first default path
// that exists. It refuses private keys, which must never leave the machine.
func (c *cli) readPublicKey(path string) (string, string, error) {
	if path == "" {
		home := c.getenv("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		for _, p := range defaultKeyFiles {
			full := filepath.Join(home, p)
			if _, err := os.Stat(full); err == nil {
				path = full
				break
			}
		}
		if path == "" {
			return "", "", errors.New("no SSH public key found in ~/.ssh (id_ed25519.pub, id_ecdsa.pub, id_rsa.pub): create one with `ssh-keygen -t ed25519`, or give the .pub file")
		}
	}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%s does not exist: give the path of an SSH public key (.pub)", path)
	}
	if err != nil {
		return "", "", err
	}
	if st.Size() > maxKeyFile {
		return "", "", fmt.Errorf("%s is %d bytes, too large for an SSH public key", path, st.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	text := strings.TrimSpace(string(data))
	if strings.Contains(text, "PRIVATE KEY") {
		return "", "", fmt.Errorf("%s is a private key, which must stay on your machine: give the public key (%s.pub)", path, path)
	}
	if text == "" {
		return "", "", fmt.Errorf("%s is empty: give the path of an SSH public key (.pub)", path)
	}
	return path, text, nil
}
