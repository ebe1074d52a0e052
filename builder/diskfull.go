package builder

import (
	"bytes"
	"io"
	"sync/atomic"
	"syscall"
)

// A push on a full disk fails inside git, which says so in words only
// ("unable to write file", "No space left on device"), or not even that
// ("couldn't write '.../refs/heads/main.lock'"). The server then tells
// the pusher plainly, with what to do.

// lowSpace is how little free space makes a failed receive-pack a full
// disk's doing.
const lowSpace = 1 << 20

// nearlyFull reports whether the filesystem holding dir has less than
// lowSpace free for unprivileged writers (git runs as pierd, but the
// space root alone may use is no space to count on).
func nearlyFull(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return int64(st.Bavail)*st.Bsize < lowSpace
}

var noSpaceText = []byte("no space left on device")

// spaceWatch passes git's output through and notes whether it said "No
// space left on device" (in its own stderr, or in the side band of its
// protocol stream, where receive-pack relays index-pack's errors).
type spaceWatch struct {
	w    io.Writer
	tail []byte // the end of the last write, for a phrase cut in two
	seen *atomic.Bool
}

func (s *spaceWatch) Write(p []byte) (int, error) {
	if !s.seen.Load() {
		buf := bytes.ToLower(append(s.tail, p...))
		if bytes.Contains(buf, noSpaceText) {
			s.seen.Store(true)
		}
		keep := min(len(buf), len(noSpaceText)-1)
		s.tail = append(s.tail[:0], buf[len(buf)-keep:]...)
	}
	return s.w.Write(p)
}
