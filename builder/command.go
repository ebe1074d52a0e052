package builder

import (
	"fmt"
	"strings"

	"github.com/pierpaas/pier"
)

// The two git services this server runs. git sends the dashed names
// ("git-receive-pack"), never "git receive-pack".
const (
	receivePack = "git-receive-pack"
	uploadPack  = "git-upload-pack"
)

// maxCommandLen bounds what we parse and echo: git's own commands for a
// valid app name are far shorter.
const maxCommandLen = 200

// gitCommand is an accepted exec request: which git service, for which app.
type gitCommand struct {
	Service string // receivePack or uploadPack
	App     string // a valid app name (pier.ValidateAppName)
}

// parseCommand accepts exactly what git sends over SSH for a push or fetch
// of an app's repository:
//
//	git-receive-pack '/myapp.git'   (ssh:// URLs)
//	git-receive-pack 'myapp.git'    (scp-like URLs)
//
// and the same for git-upload-pack, with the quotes optional. Nothing is
// ever handed to a shell: the string is parsed here and the app name must be
// a valid app name, which rules out '/', '.', ';', spaces, quotes and a
// leading '-' in one check. Every error is a one-line reason for the user.
func parseCommand(raw string) (gitCommand, error) {
	if raw == "" {
		return gitCommand{}, fmt.Errorf("no shell here: this server only accepts git push and git clone of an app (git@HOST:<app>.git)")
	}
	if len(raw) > maxCommandLen {
		return gitCommand{}, fmt.Errorf("command refused: it is %d bytes long; git sends far less", len(raw))
	}
	for i := 0; i < len(raw); i++ {
		// Control characters have no place in git's command and would let
		// an echoed command rewrite the user's terminal.
		if c := raw[i]; c < 0x20 || c == 0x7f {
			return gitCommand{}, fmt.Errorf("command refused: it contains control characters")
		}
	}
	verb, arg, ok := strings.Cut(raw, " ")
	if verb != receivePack && verb != uploadPack {
		return gitCommand{}, fmt.Errorf("command %q refused: only git push and git clone are accepted here", clip(raw))
	}
	if !ok || arg == "" {
		return gitCommand{}, fmt.Errorf("%s needs a repository such as '<app>.git'", verb)
	}
	repo := arg
	if strings.HasPrefix(repo, "'") {
		// git quotes the path in single quotes; a valid name needs no
		// escaping inside them, so anything fancier is refused below.
		if len(repo) < 2 || !strings.HasSuffix(repo, "'") {
			return gitCommand{}, fmt.Errorf("repository %s refused: unbalanced quote", quoteArg(arg))
		}
		repo = repo[1 : len(repo)-1]
	}
	repo = strings.TrimPrefix(repo, "/")
	name, ok := strings.CutSuffix(repo, ".git")
	if !ok {
		return gitCommand{}, fmt.Errorf("repository %s refused: expected '<app>.git'", quoteArg(repo))
	}
	if err := pier.ValidateAppName(name); err != nil {
		return gitCommand{}, fmt.Errorf("repository %s refused: %s", quoteArg(repo), pier.ErrorMessage(err))
	}
	return gitCommand{Service: verb, App: name}, nil
}

// quoteArg quotes untrusted input for a message, shortened.
func quoteArg(s string) string { return fmt.Sprintf("%q", clip(s)) }

// clip shortens untrusted input before it is echoed in a message.
func clip(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
