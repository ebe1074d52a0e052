package pgroup

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const supported = true

// procStat is what Reap needs of /proc/<pid>/stat.
type procStat struct {
	pid, pgid, sid int
	state          byte
	start          uint64 // clock ticks after boot (field 22)
	comm           string
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid pgrp session ...": comm may hold spaces and
	// parentheses, so the fields are counted from the last ')'.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("malformed stat of pid " + strconv.Itoa(pid))
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("malformed stat of pid " + strconv.Itoa(pid))
	}
	st := procStat{pid: pid, state: f[0][0], comm: s[open+1 : end]}
	// f[0] is field 3 (state): field n is f[n-3].
	if st.pgid, err = strconv.Atoi(f[5-3]); err != nil {
		return procStat{}, err
	}
	if st.sid, err = strconv.Atoi(f[6-3]); err != nil {
		return procStat{}, err
	}
	if st.start, err = strconv.ParseUint(f[22-3], 10, 64); err != nil {
		return procStat{}, err
	}
	return st, nil
}

func listPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// hasUID says whether uid is pid's real, effective or saved uid (a setuid
// program the app ran still counts as the app's).
func hasUID(pid, uid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i < len(f) && i < 3; i++ {
			if f[i] == strconv.Itoa(uid) {
				return true
			}
		}
		return false
	}
	return false
}

// bootID tells this boot from the last: start times count from boot.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// waitExited blocks until pid, a child of ours, has exited, without
// reaping it.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
