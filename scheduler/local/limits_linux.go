package local

import "os"

// newLimiter chooses how limits are enforced: cgroups as root (the
// kernel's own accounting, OOM kills that `pier ps` can report), rlimits
// otherwise or where the cgroups cannot be used (the log says why).
func newLimiter(s *Scheduler) limiter {
	if os.Geteuid() == 0 && !forceRlimits {
		l, err := newCgroups(s)
		if err == nil {
			return l
		}
		s.log.Warn("cgroups cannot be used: limits fall back to rlimits (cpu is not enforced, OOM kills are not reported)", "err", err)
	}
	return &rlimits{s: s}
}

// forceRlimits makes root use rlimits too, for tests of the non-root path.
var forceRlimits bool
