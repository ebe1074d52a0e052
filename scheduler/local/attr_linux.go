package local

import "syscall"

// setDeathSignal makes the kernel SIGKILL the child when pierd dies, even by
// SIGKILL, so that no app process outlives its supervisor. The signal is tied
// to the thread that forked, which is why processes are started from one
// goroutine locked to its thread (see spawner). It reaches the direct child
// only: what that child forked is killed at the next start of the
// scheduler, from the record of its process group (see New).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
