package builder

import (
	"bytes"
	"sync/atomic"
	"testing"
)

// git's words for ENOSPC are noticed wherever they fall: in any case, and
// cut across two writes.
func TestSpaceWatch(t *testing.T) {
	for _, writes := range [][]string{
		{"remote: fatal: write error: No space left on device\n"},
		{"error: unable to write file: no space le", "ft on device"},
		{"0024\x02fatal: NO SPACE", " LEFT ON DEVICE\n"},
	} {
		var seen atomic.Bool
		var out bytes.Buffer
		w := &spaceWatch{w: &out, seen: &seen}
		for _, p := range writes {
			w.Write([]byte(p))
		}
		if !seen.Load() || out.Len() == 0 {
			t.Errorf("%q: seen %v, passed %q", writes, seen.Load(), out.String())
		}
	}
	var seen atomic.Bool
	w := &spaceWatch{w: &bytes.Buffer{}, seen: &seen}
	w.Write([]byte("To ssh://localhost/app.git\n ! [rejected] main -> main (non-fast-forward)\nno space"))
	w.Write([]byte(" here\n"))
	if seen.Load() {
		t.Error("a push refused for another reason was taken for a full disk")
	}
}
