package local

import "syscall"

// setDeathSignal makes the kernel SIGKILL the child when pierd dies, even by
// SIGKILL, so that no app process outlives its supervisor. The signal is tied
// to the thread that forked, which is why processes are started from one
// goroutine locked to its thread (see spawner).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
