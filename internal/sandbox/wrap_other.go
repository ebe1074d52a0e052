//go:build !linux

package sandbox

import (
	"errors"
	"syscall"
)

func namespaces(*syscall.SysProcAttr, int, int) error {
	return errors.New("sandbox: needs Linux namespaces: run pierd as root on Linux, or use --scheduler=docker or kubernetes")
}
