//go:build !linux

package local

import "syscall"

// setDeathSignal has no equivalent outside Linux, nor has the record of
// process groups that New reaps: there, processes left by a killed pierd
// keep running.
func setDeathSignal(*syscall.SysProcAttr) {}
