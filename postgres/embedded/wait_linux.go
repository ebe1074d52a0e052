package embedded

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"
)

// waitExit returns when process pid, not a child of ours, has exited, or
// when ctx ends. A pidfd becomes readable when its process exits, whoever
// its parent is, and names that process even if the pid is reused later.
func waitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // gone already
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for ctx.Err() == nil {
		// A short timeout rather than a second fd to wake on: ctx is
		// seen within it.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return ctx.Err()
}
