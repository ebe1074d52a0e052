package main_test

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pierpaas/pier"
)

// recoverWithin is how long the platform has, after a round, to get back
// to a state where every invariant holds: a pierd restart, the converge
// of the app, a crashed process's restart backoff.
const recoverWithin = 90 * time.Second

// check waits until every invariant holds, or recoverWithin passes; then
// each one still broken is a violation of round. It says which, and how
// long it waited.
func (c *chaos) check(round int) (string, time.Duration) {
	begin := time.Now()
	for {
		v := c.invariants()
		if len(v) == 0 {
			return fmt.Sprintf("invariants hold after %.1fs", time.Since(begin).Seconds()), time.Since(begin)
		}
		if time.Since(begin) > recoverWithin {
			for _, x := range v {
				c.violation(round, "%s", x)
			}
			return fmt.Sprintf("%d VIOLATIONS", len(v)), time.Since(begin)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// invariants lists what is wrong now:
//   - release versions are unique, increasing and have no gaps;
//   - the current release is the newest one not failed, and none is pending;
//   - every push that printed "Released vN" is on record as vN with its
//     commit, and every config:set that printed "done, vN" as vN with its
//     value;
//   - the app serves the current release's code and config;
//   - the processes `pier ps` shows, the formation, the app's OS processes
//     and its listening ports agree, all of the current release;
//   - nothing is left over: no build process, no build scratch dir, no
//     pushed tree, nothing in pierd's TMPDIR.
func (c *chaos) invariants() []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }
	var info pier.AppInfo
	var rels []pier.Release
	var procs []pier.Process
	var builds []pier.Build
	for _, q := range []struct {
		dst  any
		args []string
	}{
		{&info, []string{"apps:info", "-a", "chaos", "--json"}},
		{&rels, []string{"releases", "-a", "chaos", "-n", "500", "--json"}},
		{&procs, []string{"ps", "-a", "chaos", "--json"}},
		{&builds, []string{"builds", "-a", "chaos", "-n", "500", "--json"}},
	} {
		out, err := c.s.c.run("", q.args...)
		if err != nil {
			return []string{fmt.Sprintf("pier %s: %v: %s", q.args[0], err, firstLineOf(out))}
		}
		jsonOut(c.t, out, q.dst)
	}
	cur := info.Release
	if cur == nil {
		return []string{"apps:info names no current release"}
	}

	// Versions.
	byVersion := map[int]pier.Release{}
	var versions []int
	for _, r := range rels {
		if _, dup := byVersion[r.Version]; dup {
			bad("release v%d is listed twice", r.Version)
		}
		byVersion[r.Version] = r
		versions = append(versions, r.Version)
	}
	sort.Ints(versions)
	for i, n := range versions {
		if n != i+1 {
			bad("release versions are not 1..%d without gaps: %v", len(versions), versions)
			break
		}
		if i > 0 && byVersion[n].CreatedAt.Before(byVersion[versions[i-1]].CreatedAt) {
			bad("v%d was created before v%d", n, versions[i-1])
		}
	}

	// The current release.
	newest := 0
	for _, n := range versions {
		r := byVersion[n]
		if r.Status == pier.ReleasePending {
			bad("v%d is still pending", n)
		}
		if r.Status != pier.ReleaseFailed {
			newest = n
		}
	}
	if cur.Version != newest {
		bad("the current release is v%d, the newest not failed is v%d", cur.Version, newest)
	}
	if cur.Status != pier.ReleaseSucceeded {
		bad("the current release v%d is %q", cur.Version, cur.Status)
	}

	// What the operations reported is on record.
	for n, commit := range c.released {
		r, ok := byVersion[n]
		switch {
		case !ok:
			bad("a push printed \"Released v%d\", and there is no v%d", n, n)
		case r.Build == nil || r.Build.Commit != commit:
			bad("a push of %.7s printed \"Released v%d\", and v%d is %q (%s)", commit, n, n, r.Note, buildCommit(r))
		}
	}
	for n, g := range c.set {
		if _, ok := byVersion[n]; !ok {
			bad("config:set GREETING=%s printed \"done, v%d\", and there is no v%d", g, n, n)
		} else if cfg, err := c.config(n); err != nil {
			return append(v, err.Error())
		} else if cfg["GREETING"] != g {
			bad("config:set GREETING=%s printed \"done, v%d\", and v%d has GREETING=%q", g, n, n, cfg["GREETING"])
		}
	}
	for n, to := range c.rolledBack {
		r, ok := byVersion[n]
		if from := byVersion[to]; !ok || buildCommit(r) != buildCommit(from) || r.Note != fmt.Sprintf("Rollback to v%d", to) {
			bad("a rollback to v%d printed \"done, v%d\", and v%d is %q of %.7s, v%d of %.7s", to, n, n, r.Note, buildCommit(r), to, buildCommit(from))
			continue
		}
		a, err1 := c.config(n)
		b, err2 := c.config(to)
		if err := errors.Join(err1, err2); err != nil {
			return append(v, err.Error())
		}
		if !maps.Equal(a, b) {
			bad("v%d, a rollback to v%d, has the config %v, v%d has %v", n, to, a, to, b)
		}
	}
	if c.upToDate != "" && !slices.ContainsFunc(rels, func(r pier.Release) bool { return buildCommit(r) == c.upToDate && r.Status == pier.ReleaseSucceeded }) {
		bad("a push of %.7s exited 0 releasing nothing (\"Everything up-to-date\"), and no release ran it", c.upToDate)
	}
	if c.scaled >= 0 && info.Formation["web"] != c.scaled {
		bad("scale web=%d said done, and the formation is %v", c.scaled, info.Formation)
	}
	curConfig, err := c.config(cur.Version)
	if err != nil {
		return append(v, err.Error())
	}
	var appConfig pier.Config
	if out, err := c.s.c.run("", "config", "-a", "chaos", "--json"); err != nil {
		return append(v, fmt.Sprintf("pier config: %v: %s", err, firstLineOf(out)))
	} else {
		jsonOut(c.t, out, &appConfig)
	}
	if !maps.Equal(appConfig, curConfig) {
		bad("the app's config is %v, its current release v%d's is %v", appConfig, cur.Version, curConfig)
	}

	// What runs.
	want := 0
	if cur.Build != nil && cur.Build.ProcessTypes["web"] != "" {
		want = info.Formation["web"]
	}
	greeting := curConfig["GREETING"]
	for _, p := range procs {
		if p.Type != "web" || p.State != "up" || p.Release != cur.Version {
			bad("pier ps shows %s.%d of v%d %s, the current release is v%d", p.Type, p.Index, p.Release, p.State, cur.Version)
		}
	}
	if len(procs) != want {
		bad("pier ps shows %d processes, the formation is web=%d", len(procs), want)
	}
	running := c.appProcesses()
	if len(running) != want {
		bad("%d OS processes of the app run (%v), the formation is web=%d", len(running), running, want)
	}
	for _, pid := range running {
		env := environ(pid)
		if g := env["GREETING"]; g != greeting {
			bad("process %d has GREETING=%q, v%d has %q", pid, g, cur.Version, greeting)
		}
		if exe, _ := readlink(pid); cur.Build == nil || !strings.HasPrefix(exe, cur.Build.Image+"/") {
			bad("process %d runs %s, not v%d's build", pid, exe, cur.Version)
		}
		if ports := listeningPorts(pid); len(ports) != 1 {
			bad("process %d listens on %d ports %v, not 1", pid, len(ports), ports)
		}
	}
	code, body, err := c.s.get(&http.Client{Timeout: 5 * time.Second}, "chaos", "/")
	if want > 0 {
		if body0 := "hello " + greeting + " from " + c.code[buildCommit(*cur)]; code != 200 || body != body0 {
			bad("the app answers %d %q (%v), v%d should answer %q", code, firstLineOf(body), err, cur.Version, body0)
		}
	} else if code == 200 {
		bad("the app answers 200 %q with no process to run", firstLineOf(body))
	}

	// The build store holds the builds on record, each whole (a release
	// may be rolled back to), and nothing else: a build dir no build names
	// would stay for good.
	named := map[string]bool{}
	for _, b := range builds {
		if b.Status == pier.BuildSucceeded {
			named[b.Image] = true
			if _, err := os.Stat(filepath.Join(b.Image, "cnb", "process", "web")); err != nil {
				bad("build %d of %.7s is not whole in the build store: %v", b.ID, b.Commit, err)
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(c.rt, "builds", "chaos", "[^.]*"))
	for _, d := range dirs {
		if !named[d] {
			bad("the build store holds %s, which no build names", d)
		}
	}

	// Nothing left over.
	if b := c.buildProcesses(); len(b) > 0 {
		bad("build processes are left: %v", b)
	}
	for _, pattern := range []string{
		filepath.Join(c.rt, "builds", "chaos", ".tmp-*"),       // build scratch: the platform env dir holds config values
		filepath.Join(c.rt, "builds", "chaos", ".cache.new-*"), // half-saved caches
		filepath.Join(c.rt, "src", "*"),                        // pushed trees
		filepath.Join(c.tmp, "*"),
	} {
		if left, _ := filepath.Glob(pattern); len(left) > 0 {
			bad("left behind: %v", left)
		}
	}
	return v
}

// config is the config of release n (releases:info --json has it; lists
// leave it out).
func (c *chaos) config(n int) (pier.Config, error) {
	if cfg, ok := c.configs[n]; ok {
		return cfg, nil
	}
	out, err := c.s.c.run("", "releases:info", fmt.Sprintf("v%d", n), "-a", "chaos", "--json")
	if err != nil {
		return nil, fmt.Errorf("pier releases:info v%d: %v: %s", n, err, firstLineOf(out))
	}
	var r pier.Release
	jsonOut(c.t, out, &r)
	if r.Config == nil {
		r.Config = pier.Config{}
	}
	c.configs[n] = r.Config
	return r.Config, nil
}

func buildCommit(r pier.Release) string {
	if r.Build == nil {
		return "no build"
	}
	return r.Build.Commit
}

// appProcesses are the app's processes: those with its CHAOS_MARK in their
// environment that are not builds (a build gets the config vars too).
func (c *chaos) appProcesses() []int {
	var out []int
	for _, pid := range markedProcesses(c.t, "CHAOS_MARK", c.mark) {
		if !c.isBuild(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// buildProcesses are the processes of builds: the lifecycle's phases, and
// what they run (compilers), whose scratch dir is below the build store.
func (c *chaos) buildProcesses() []string {
	var out []string
	for _, pid := range allPIDs() {
		if c.isBuild(pid) {
			exe, _ := readlink(pid)
			out = append(out, fmt.Sprintf("%d %s", pid, exe))
		}
	}
	return out
}

// buildPhases are the running lifecycle phases (detector, builder).
func (c *chaos) buildPhases() []int {
	var out []int
	for _, pid := range allPIDs() {
		if exe, _ := readlink(pid); strings.HasPrefix(exe, filepath.Join(c.rt, "builds", ".cnb")+"/") {
			out = append(out, pid)
		}
	}
	return out
}

func (c *chaos) isBuild(pid int) bool {
	if exe, _ := readlink(pid); strings.HasPrefix(exe, filepath.Join(c.rt, "builds", ".cnb")+"/") {
		return true
	}
	// The lifecycle passes HOME on to the buildpacks and what they run,
	// not TMPDIR.
	env, builds := environ(pid), filepath.Join(c.rt, "builds")+"/"
	return strings.HasPrefix(env["HOME"], builds) || strings.HasPrefix(env["TMPDIR"], builds)
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}

func readlink(pid int) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
}

// environ is a process's environment (empty if it is gone).
func environ(pid int) map[string]string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// listeningPorts are the TCP ports a process listens on: its sockets
// (from its open files) in LISTEN state. (Sockets are not counted by uid:
// other tests' apps on this machine may have the same uids.)
func listeningPorts(pid int) []string {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "0A" || !inodes[fl[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fl[1], ":")
			p, _ := strconv.ParseUint(hexPort, 16, 16)
			out = append(out, strconv.FormatUint(p, 10))
		}
		fh.Close()
	}
	return out
}
