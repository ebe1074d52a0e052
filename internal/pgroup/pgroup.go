// Package pgroup owns the process groups pierd starts (app processes,
// one-off runs, build phases). It signals a group only while the group's
// leader is still unreaped, so that a recycled pid can never make it signal
// a stranger, and it keeps a record of every live group on disk, so that
// the groups a killed pierd left behind (an app's grandchildren, a build's
// compilers) are killed when pierd starts again.
//
// A record holds the group's id, its session, the uid it runs as, the
// leader's start time and the boot it belongs to. Reap kills a process only
// if all of them match: its process group and session are the recorded
// ones, it runs as the recorded uid, it started no earlier than the leader,
// and the group's leader pid, if it exists at all, is still the recorded
// process. A process that left its group and session (setsid, as a daemon
// does) is out of reach of this package; only a cgroup would catch it.
package pgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Records is a directory of records of live process groups. It must be
// private to pierd: whoever can write a record can make Reap kill.
type Records struct {
	dir string
}

// record is one live process group, as stored on disk.
type record struct {
	PGID  int    `json:"pgid"`
	SID   int    `json:"sid"`
	UID   int    `json:"uid"` // -1: not recorded
	Start uint64 `json:"start"`
	Boot  string `json:"boot"`
}

// Open returns the records in dir, creating it (mode 0700) if needed.
func Open(dir string) (*Records, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// MkdirAll leaves an existing directory's mode alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	return &Records{dir: dir}, nil
}

// Dir is the records' directory.
func (r *Records) Dir() string { return r.dir }

// Reaped is a process Reap killed.
type Reaped struct {
	PID, PGID int
	Comm      string // the executable's name, as the kernel knows it
}

// reapWait bounds how long Reap waits for what it killed to be gone.
const reapWait = 5 * time.Second

// Reap kills every process of the groups recorded in the directory (the
// leftovers of an earlier pierd that did not stop them), waits a bounded
// time for them to go, logs each one and deletes the records. Call it
// before starting any group with these records.
func (r *Records) Reap(log *slog.Logger) ([]Reaped, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, err
	}
	boot := bootID()
	var recs []record
	var files []string
	for _, e := range entries {
		p := filepath.Join(r.dir, e.Name())
		files = append(files, p)
		if strings.HasPrefix(e.Name(), ".") {
			continue // a record being written when pierd died
		}
		b, err := os.ReadFile(p)
		var rec record
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		// A session of 0 is real: in a container (a PID namespace) the
		// session's leader may be outside it, and the kernel shows 0.
		if err == nil && (rec.PGID <= 1 || rec.SID < 0) {
			err = fmt.Errorf("process group %d, session %d: out of range", rec.PGID, rec.SID)
		}
		switch {
		case err != nil:
			log.Warn("ignoring an unreadable process group record", "file", p, "err", err)
		case rec.Boot != boot:
			log.Debug("ignoring a process group record of an earlier boot", "pgid", rec.PGID)
		default:
			recs = append(recs, rec)
		}
	}
	var reaped []Reaped
	if len(recs) > 0 && supported {
		reaped = reap(recs)
		for _, p := range reaped {
			log.Warn("killed a process left behind by an earlier run of pierd", "pid", p.PID, "pgid", p.PGID, "command", p.Comm)
		}
	}
	var errs []error
	for _, f := range files {
		if err := os.RemoveAll(f); err != nil {
			errs = append(errs, err)
		}
	}
	return reaped, errors.Join(errs...)
}

// reap kills the processes of recs until none is left, or reapWait.
func reap(recs []record) []Reaped {
	seen := map[int]bool{}
	var out []Reaped
	deadline := time.Now().Add(reapWait)
	for {
		// Each pass kills what it finds: a process may fork between
		// the scan and the kill, and its child is found by the next one.
		live := 0
		for _, p := range matching(recs) {
			syscall.Kill(p.pid, syscall.SIGKILL)
			live++
			if !seen[p.pid] {
				seen[p.pid] = true
				out = append(out, Reaped{PID: p.pid, PGID: p.pgid, Comm: p.comm})
			}
		}
		if live == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// matching lists the live (not zombie) processes that belong to one of
// recs.
func matching(recs []record) []procStat {
	byGroup := map[int][]record{}
	for _, rec := range recs {
		// If the leader's pid is in use by another process, the recorded
		// group ended and its id may now be a stranger's: leave it alone.
		if st, err := readStat(rec.PGID); err == nil && st.start != rec.Start {
			continue
		}
		byGroup[rec.PGID] = append(byGroup[rec.PGID], rec)
	}
	if len(byGroup) == 0 {
		return nil
	}
	self := os.Getpid()
	var out []procStat
	for _, pid := range listPIDs() {
		if pid <= 1 || pid == self {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.state == 'Z' || st.state == 'X' {
			continue
		}
		for _, rec := range byGroup[st.pgid] {
			if st.sid != rec.SID || st.start < rec.Start {
				continue
			}
			if rec.UID >= 0 && !hasUID(pid, rec.UID) {
				continue
			}
			out = append(out, st)
			break
		}
	}
	return out
}

// Group is a started process group: cmd's process, started with Setpgid
// (its pid is the group's id) and not yet waited for.
type Group struct {
	cmd  *exec.Cmd
	pid  int
	file string // its record; "" when none is kept

	mu     sync.Mutex
	reaped bool
}

// Track records the process group of cmd, which has been started with
// Setpgid and not waited for; the record goes once Wait has stopped the
// group. If the record cannot be written, Track kills the group, waits for
// it and returns the error: a group pierd could lose track of must not run.
func (r *Records) Track(cmd *exec.Cmd) (*Group, error) {
	g := &Group{cmd: cmd, pid: cmd.Process.Pid}
	if !supported {
		return g, nil
	}
	if err := r.write(g, cmd); err != nil {
		g.Signal(syscall.SIGKILL)
		g.Wait()
		return nil, fmt.Errorf("recording process group %d: %w", g.pid, err)
	}
	return g, nil
}

func (r *Records) write(g *Group, cmd *exec.Cmd) error {
	// The leader is ours and not reaped: its stat is there, zombie or not.
	st, err := readStat(g.pid)
	if err != nil {
		return err
	}
	uid := os.Getuid()
	if a := cmd.SysProcAttr; a != nil && a.Credential != nil {
		uid = int(a.Credential.Uid)
	}
	b, err := json.Marshal(record{PGID: st.pgid, SID: st.sid, UID: uid, Start: st.start, Boot: bootID()})
	if err != nil {
		return err
	}
	// The name holds the start time: a pid recycled for a later group of
	// ours cannot collide with a record not yet removed.
	name := strconv.Itoa(g.pid) + "-" + strconv.FormatUint(st.start, 10)
	tmp := filepath.Join(r.dir, "."+name)
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	g.file = filepath.Join(r.dir, name)
	if err := os.Rename(tmp, g.file); err != nil {
		os.Remove(tmp)
		g.file = ""
		return err
	}
	return nil
}

// Pid is the group's id, the pid of its leader.
func (g *Group) Pid() int { return g.pid }

// Signal sends sig to every process of the group, as long as its leader
// has not been reaped (until then no other process can be given its id).
func (g *Group) Signal(sig syscall.Signal) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reaped {
		return syscall.ESRCH
	}
	return syscall.Kill(-g.pid, sig)
}

// Wait waits for the leader to exit, kills whatever else is left in its
// group, reaps the leader (cmd.Wait, whose error it returns) and removes
// the group's record. Call it once.
func (g *Group) Wait() error {
	if !supported {
		// Without a way to wait unreaped, the group is killed after.
		err := g.cmd.Wait()
		g.mu.Lock()
		g.reaped = true
		g.mu.Unlock()
		syscall.Kill(-g.pid, syscall.SIGKILL)
		return err
	}
	waitExited(g.pid) // the leader is a zombie now: its id is still ours
	g.Signal(syscall.SIGKILL)
	g.mu.Lock()
	g.reaped = true
	g.mu.Unlock()
	err := g.cmd.Wait()
	if g.file != "" {
		os.Remove(g.file)
	}
	return err
}
