//go:build !linux

package local

// newLimiter enforces nothing outside Linux: neither cgroups nor prlimit
// exist there; Pier's local scheduler is for Linux hosts, and macOS
// development machines run apps unbounded.
func newLimiter(s *Scheduler) limiter {
	s.log.Warn("limits (pier limits:set) are not enforced outside Linux")
	return nil
}
