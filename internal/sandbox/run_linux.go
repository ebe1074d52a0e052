package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Main runs the sandbox when this process is one (its first argument is
// the hidden one Wrap gives), and then never returns; otherwise it returns
// at once. Call it first thing in main.
func Main() {
	if len(os.Args) < 4 || os.Args[1] != arg {
		return
	}
	code, err := run(os.Args[2], os.Args[3:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "pier sandbox: %v\n", err)
		os.Exit(126)
	}
	os.Exit(code)
}

// run is pid 1 of the sandbox's pid namespace and root of its user
// namespace (the caller's uid outside): it mounts, then runs path with
// argv (argv[0] included) as its child and exits with its status.
func run(path string, argv []string) (int, error) {
	var spec Spec
	if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &spec); err != nil {
		return 0, fmt.Errorf("reading the spec: %w", err)
	}
	os.Unsetenv(specEnv)
	wd, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 0, fmt.Errorf("making mounts private: %w", err)
	}
	// Kept dirs are opened before their parent is hidden, then bound back
	// from the open fd.
	keep := make([]int, len(spec.Keep))
	for i, k := range spec.Keep {
		fd, err := unix.Open(k, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, fmt.Errorf("opening %s: %w", k, err)
		}
		keep[i] = fd
	}
	// /tmp first: a hidden or kept dir may lie below it.
	if spec.PrivateTmp {
		if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return 0, fmt.Errorf("a private /tmp: %w", err)
		}
	}
	for _, h := range spec.Hide {
		if err := os.MkdirAll(h, 0o755); err != nil { // gone under a private /tmp
			return 0, err
		}
		if err := unix.Mount("tmpfs", h, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64k"); err != nil {
			return 0, fmt.Errorf("hiding %s: %w", h, err)
		}
	}
	for i, k := range spec.Keep {
		if err := os.MkdirAll(k, 0o755); err != nil {
			return 0, err
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", keep[i]), k, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return 0, fmt.Errorf("binding %s back: %w", k, err)
		}
		unix.Close(keep[i])
	}
	// A /proc of this pid namespace: the host's would show pierd's
	// environment and, through /proc/PID/root, the hidden dirs.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return 0, fmt.Errorf("mounting /proc: %w", err)
	}
	// The working dir was opened before the mounts: through it, ".."
	// would walk the hidden tree. Enter it again through the new mounts.
	if err := os.Chdir(wd); err != nil {
		return 0, err
	}

	// The command: the caller's uid again, in a user namespace of its
	// own, so that it holds no capability after exec and cannot undo the
	// mounts; no_new_privs (inherited) so that nothing it runs gains any.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("no_new_privs: %w", err)
	}
	cmd := exec.Command(path)
	cmd.Args = argv
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: spec.UID, HostID: 0, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: spec.GID, HostID: 0, Size: 1}},
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}
	// As pid 1, this process gets no signal it does not handle: take
	// them and drop them. The command is in the same process group and
	// gets the group's signals itself.
	signal.Notify(make(chan os.Signal, 8), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	runtime.UnlockOSThread()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	return 0, err
}
