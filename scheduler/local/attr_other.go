//go:build !linux

package local

import "syscall"

// setDeathSignal has no equivalent outside Linux: there, processes left by a
// killed pierd are only reaped at the next Shutdown or Destroy.
func setDeathSignal(*syscall.SysProcAttr) {}
