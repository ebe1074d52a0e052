package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pushLock is an exclusive flock(2) on a per-app lock file. flock works
// between processes (two pierd builders on one host share the repos) and
// between goroutines of one process alike, because each lock opens its own
// file description. The kernel drops it if the process dies, so a crashed
// push never leaves an app locked.
type pushLock struct{ f *os.File }

// lockPollInterval is how often a waiting push retries the lock; flock has
// no timeout of its own.
const lockPollInterval = 100 * time.Millisecond

// stillWaitingEvery is how often a waiting pusher is told it still waits.
// The line also keeps the SSH connection active, so the idle timeout does
// not end a push that is only queued.
const stillWaitingEvery = 30 * time.Second

// acquirePushLock takes the lock at path, telling the pusher (on w) when it
// has to wait, for at most timeout (no limit but ctx if timeout <= 0).
func acquirePushLock(ctx context.Context, path, app string, timeout time.Duration, w io.Writer) (*pushLock, error) {
	// O_CLOEXEC (Go's default) keeps git from inheriting the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	lastNote := time.Time{}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			// RemoveRepo deletes the lock file while holding it: a lock
			// taken on a file no longer at path guards nothing. Take the
			// one at path instead.
			if held, err := f.Stat(); err == nil {
				if now, err := os.Stat(path); err == nil && os.SameFile(held, now) {
					return &pushLock{f: f}, nil
				}
			}
			f.Close()
			if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
				return nil, err
			}
			continue
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		waited := time.Since(start)
		if timeout > 0 && waited >= timeout {
			f.Close()
			return nil, errPushBusy{app: app, waited: waited.Round(time.Second)}
		}
		if lastNote.IsZero() {
			fmt.Fprintf(w, "waiting for another push to %s to finish...\n", app)
			lastNote = time.Now()
		} else if time.Since(lastNote) >= stillWaitingEvery {
			fmt.Fprintf(w, "still waiting for another push to %s (%s so far)...\n", app, waited.Round(time.Second))
			lastNote = time.Now()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPollInterval):
		}
	}
}

// Unlock releases the lock. Closing the file releases the flock.
func (l *pushLock) Unlock() error { return l.f.Close() }

// errPushBusy says a push gave up waiting for the one before it.
type errPushBusy struct {
	app    string
	waited time.Duration
}

func (e errPushBusy) Error() string {
	return fmt.Sprintf("another push to %s is still running after %s: try again later", e.app, e.waited)
}
