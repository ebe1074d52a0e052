//go:build !linux

package router

import (
	"context"
	"net"
)

// The fast path is Linux's (epoll); elsewhere net/http serves everything.
type fastPath struct{}

func startFast(*Router, net.Listener, *handoffListener) (*fastPath, error) {
	return nil, errNoFastPath
}

func (*fastPath) shutdown(context.Context) error { return nil }
func (*fastPath) close()                         {}
func (*fastPath) served() uint64                 { return 0 }
