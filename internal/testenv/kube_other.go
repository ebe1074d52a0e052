//go:build !linux

package testenv

import "syscall"

// childSysProcAttr puts a component in its own process group, so that Stop
// can kill all it started. (Only Linux can also kill it when this process
// dies.)
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
