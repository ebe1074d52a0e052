package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"golang.org/x/term"
)

// terminal returns stdin's file descriptor when stdin is an interactive
// terminal. Prompts happen only then: a script must say what it means with
// flags, never hang waiting for an answer.
func (c *cli) terminal() (int, bool) {
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}

// promptLine asks on stderr (stdout may be piped) and reads one line.
func (c *cli) promptLine(label string) (string, error) {
	fmt.Fprint(c.stderr, label)
	// Unbuffered byte-at-a-time reading: a terminal gives us a line at a
	// time anyway, and we must not swallow input meant for a later prompt.
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := c.stdin.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
		}
		if err == io.EOF {
			if b.Len() == 0 {
				return "", errors.New("no answer: input ended")
			}
			break
		}
		if err != nil {
			return "", err
		}
	}
	return strings.TrimSpace(b.String()), nil
}

// promptPassword reads a password without echo. If the user presses Ctrl-C
// meanwhile, the terminal's echo is restored before we exit.
func (c *cli) promptPassword(fd int, label string) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	done := make(chan struct{})
	defer func() { signal.Stop(sig); close(done) }()
	go func() {
		select {
		case <-sig:
			_ = term.Restore(fd, state)
			fmt.Fprintln(c.stderr)
			os.Exit(130)
		case <-done:
		}
	}()
	fmt.Fprint(c.stderr, label)
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(c.stderr)
	return string(p), err
}

// maxPasswordInput bounds what --password-stdin reads: far above any valid
// password, far below anything that would hurt.
const maxPasswordInput = 64 << 10

// readPasswordStdin reads all of stdin and removes one trailing newline
// (as `echo` and most secret files end with one); other whitespace is part
// of the password.
func (c *cli) readPasswordStdin() (string, error) {
	data, err := io.ReadAll(io.LimitReader(c.stdin, maxPasswordInput+1))
	if err != nil {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	if len(data) > maxPasswordInput {
		return "", errors.New("--password-stdin: stdin is far longer than any password")
	}
	p := string(data)
	if strings.HasSuffix(p, "\n") {
		p = strings.TrimSuffix(strings.TrimSuffix(p, "\n"), "\r")
	}
	if p == "" {
		return "", errors.New("--password-stdin: stdin is empty: pipe the password in, e.g. `pier login URL --username NAME --password-stdin < password-file`")
	}
	return p, nil
}

// confirm guards a destructive command. With --confirm, its value must be
// exactly what is being destroyed; without it, a terminal user must type
// that name; a script without --confirm gets an error, never a hang.
func (c *cli) confirm(flagName, given, want, warning string) error {
	if given != "" {
		if given != want {
			return fmt.Errorf("--%s %s does not match %s: nothing was done", flagName, given, want)
		}
		return nil
	}
	if _, ok := c.terminal(); !ok {
		return fmt.Errorf("this cannot be undone: pass --%s %s to confirm", flagName, want)
	}
	fmt.Fprintf(c.stderr, " !    %s\n !    To proceed, type %s or re-run this command with --%s %s\n\n", warning, want, flagName, want)
	answer, err := c.promptLine("> ")
	if err != nil {
		return err
	}
	if answer != want {
		return fmt.Errorf("confirmation did not match %s: nothing was done", want)
	}
	return nil
}
