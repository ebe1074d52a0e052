//go:build !linux

package embedded

import (
	"context"
	"time"
)

// waitExit returns when process pid has exited (or is a zombie), or when
// ctx ends. Without pidfds, it looks every 200 ms.
func waitExit(ctx context.Context, pid int) error {
	for ctx.Err() == nil {
		if !postgresAlive(pid) {
			return nil
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return ctx.Err()
}
