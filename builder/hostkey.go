package builder

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// hostKeyFile is the builder's SSH host key inside the data dir.
const hostKeyFile = "ssh_host_ed25519_key"

// loadOrCreateHostKey returns the host key kept at path, creating it the
// first time. Keeping it is what lets users trust the server once: a new
// key at each start would make every client warn "host key changed".
//
// Two processes starting at once on one data dir agree on a single key: the
// new key is written to a temp file and hard-linked into place, which fails
// if another process got there first, and then we read that one.
func loadOrCreateHostKey(path string) (gossh.Signer, error) {
	signer, err := readHostKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return signer, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := gossh.MarshalPrivateKey(priv, "pier builder host key")
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".hostkey-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600; Chmod makes sure whatever the umask.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(pem.EncodeToMemory(block)); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("storing SSH host key: %w", err)
	}
	return readHostKey(path)
}

func readHostKey(path string) (gossh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	// Like sshd, refuse a private key others can read: it may have leaked.
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("SSH host key %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("reading SSH host key %s: %w", path, err)
	}
	return signer, nil
}
