// Package sandbox runs a command in new user, mount and pid namespaces
// where chosen directories (pierd's data dir) are hidden under an empty
// tmpfs, only the command's own directories are bound back, /tmp is
// private and /proc shows the sandbox's processes alone. It is what keeps
// app code away from pierd's secrets when pierd is not root, and all of
// an app's processes therefore share pierd's uid.
//
// The work inside needs code between the namespaces' creation and the
// command's exec, which Go's os/exec cannot run: Wrap makes the command
// re-execute this program (os.Executable) with a hidden first argument,
// and Main, called first thing in main, does the mounts and starts the
// real command as its child, in one more user namespace that maps the
// caller's uid back, so that the command runs as the uid it would have had,
// without capabilities, and cannot undo the mounts.
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// arg is the hidden first argument of a re-executed sandbox.
const arg = "__pier-sandbox"

// specEnv carries the Spec to the sandbox; Main removes it before the
// command starts.
const specEnv = "PIER_SANDBOX_SPEC"

// Spec says what the sandboxed command sees.
type Spec struct {
	Hide       []string // absolute dirs covered by an empty tmpfs
	Keep       []string // absolute dirs under a hidden one, bound back
	PrivateTmp bool     // an empty tmpfs on /tmp
	UID, GID   int      // the command's ids (the caller's), set by Wrap
}

// Wrap rewrites cmd to run in a sandbox of spec. cmd's Path, Args, Env,
// Dir, standard streams and SysProcAttr (Setpgid, Pdeathsig) are kept;
// a Credential cannot be (the sandbox runs as the caller).
func Wrap(cmd *exec.Cmd, spec Spec) error {
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Credential != nil {
		return errors.New("sandbox: a command with a credential cannot be sandboxed (the sandbox runs as the caller)")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	spec.UID, spec.GID = os.Getuid(), os.Getgid()
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	path := cmd.Path
	if cmd.Err != nil {
		return cmd.Err
	}
	// The command's own argv[0] too: some programs pick what they do from
	// it (the CNB lifecycle's phases).
	args := append([]string{self, arg, path}, cmd.Args...)
	cmd.Path, cmd.Args = self, args
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string{}, env...), specEnv+"="+string(b))
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	return namespaces(cmd.SysProcAttr, spec.UID, spec.GID)
}

var (
	availableOnce sync.Once
	availableErr  error
)

// Available says whether sandboxes can be made here: it runs one, once.
// The error says what the operator can do.
func Available() error {
	availableOnce.Do(func() {
		cmd := exec.Command("/bin/true")
		cmd.Dir = "/" // the caller's may lie below the private /tmp
		if err := Wrap(cmd, Spec{PrivateTmp: true}); err != nil {
			availableErr = err
			return
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			availableErr = fmt.Errorf("cannot isolate apps without root: a sandbox (user, mount and pid namespaces) failed here (%v%s); run pierd as root, or use --scheduler=docker or kubernetes, or allow unprivileged user namespaces (sysctl user.max_user_namespaces=10000, kernel.unprivileged_userns_clone=1, on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)", err, trimOut(out))
		}
	})
	return availableErr
}

func trimOut(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > 300 {
		b = b[:300]
	}
	return ": " + string(b)
}
