package testenv

import "syscall"

// childSysProcAttr puts a component in its own process group (so that a
// terminal's Ctrl-C does not reach it before Stop does, and Stop can kill
// all it started) and has the kernel kill it when this process dies, so a
// killed go test leaves nothing running.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
