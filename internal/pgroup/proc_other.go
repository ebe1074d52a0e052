//go:build !linux

package pgroup

import "errors"

// Without /proc and waitid(WNOWAIT), groups are neither recorded nor
// reaped: Track only wraps the command, and Wait kills the group after
// reaping its leader.
const supported = false

type procStat struct {
	pid, pgid, sid int
	state          byte
	start          uint64
	comm           string
}

func readStat(int) (procStat, error) { return procStat{}, errors.ErrUnsupported }
func listPIDs() []int                { return nil }
func hasUID(int, int) bool           { return false }
func bootID() string                 { return "" }
func waitExited(int) error           { return errors.ErrUnsupported }
