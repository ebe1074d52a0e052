package main_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres/embedded"
)

// chaosRounds is how many rounds TestChaos runs: `make test` runs the
// default, `make chaos N=200` more.
var chaosRounds = flag.Int("chaos", 20, "rounds of TestChaos (make chaos N=...)")

// The operations and victims of a chaos round.
const (
	opPush     = "push"
	opConfig   = "config:set"
	opScale    = "scale"
	opRollback = "rollback"
	opRestart  = "ps:restart"

	victimPierd      = "pierd"
	victimPostmaster = "postmaster"
	victimApp        = "app process"
	victimBuild      = "build phase"
)

// chaosOps are drawn from evenly; a push, the richest (a build, a new
// release, a rollout), is there twice.
var chaosOps = []string{opPush, opPush, opConfig, opScale, opRollback, opRestart}

// TestChaos is issue 15's chaos suite: on the embedded default (pierd all,
// local scheduler, host builds) each round starts a random operation on an
// app and SIGKILLs a random victim at a random moment of it, lets the
// platform recover (pierd is started again if it was the victim), then
// checks the invariants (chaos.invariants). A violation fails the test,
// and the rounds go on so that one run gathers all of them. -chaos N sets
// the rounds; PIER_CHAOS_SEED replays a run: the seed is printed first.
func TestChaos(t *testing.T) {
	skipShort(t)
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		// As root (CI's case) the runtime dir is under /var/lib/pier and
		// the app's processes run as its uid; without root it is another
		// layout, with sandboxes, that this suite does not know.
		t.Skip("the chaos suite runs as root, as CI does")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PIER_CHAOS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("PIER_CHAOS_SEED=%q is not a number: %v", v, err)
		}
	}
	t.Logf("chaos: seed %d (replay with PIER_CHAOS_SEED=%d), %d rounds", seed, seed, *chaosRounds)

	// pierd's own temporary files go to a directory of this test's, which
	// must be empty between operations.
	tmp := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, "TMPDIR="+tmp)
	c := &chaos{
		t: t, s: s, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tmp: tmp,
		rt:         embedded.RelocatedDir("rt", s.data),
		pg:         embedded.New(s.data),
		mark:       fmt.Sprintf("chaos-%d", seed),
		code:       map[string]string{},
		released:   map[int]string{},
		set:        map[int]string{},
		rolledBack: map[int]int{},
		scaled:     -1,
		bad:        map[int]bool{},
		configs:    map[int]pier.Config{},
		counts:     map[string]int{},
		took:       map[string]time.Duration{opPush: 6 * time.Second, "build": 2 * time.Second},
		version:    "one",
	}
	c.r = s.newRepo("testdata/hello", "chaos")
	// A config var of its own finds the app's processes (markedProcesses);
	// GREETING is what config:set changes and the app serves.
	s.c.must("", "config:set", "CHAOS_MARK="+c.mark, "GREETING=g0", "-a", "chaos")
	c.code[c.r.head()] = c.version
	out := c.r.mustPush()
	c.releasedBy(out, c.r.head())
	if v, _ := c.check(0); c.violations > 0 {
		t.Fatalf("after the first push: %s", v)
	}

	start := time.Now()
	for round := 1; round <= *chaosRounds; round++ {
		c.round(round)
	}
	c.summary(time.Since(start))
	s.d.stop(t)
}

// chaos is the state of one chaos run: the stack, the app's repository and
// what the rounds did, to check against.
type chaos struct {
	t    *testing.T
	s    *stack
	r    *repo
	rng  *rand.Rand
	rt   string            // pierd's runtime dir
	tmp  string            // pierd's TMPDIR
	pg   *embedded.Cluster // the embedded Postgres
	mark string            // CHAOS_MARK, in every app process's environment

	version    string            // the version const of the work tree's main.go
	code       map[string]string // commit → the version it serves
	released   map[int]string    // version → commit, from "Released vN" lines
	set        map[int]string    // version → GREETING, from config:set's "done, vN"
	rolledBack map[int]int       // version → the one it rolled back to, from "done, vN"
	scaled     int               // web's quantity after this round's scale said done; -1: none
	n          int               // the round under way
	unreleased string            // the commit of the last push, if it released nothing
	upToDate   string            // the commit this round's push exited 0 about, releasing nothing
	greetings  int
	configs    map[int]pier.Config      // version → its config (releases are immutable)
	took       map[string]time.Duration // how long each operation took when undisturbed
	counts     map[string]int           // "op × victim" → rounds
	missed     map[string]int           // victims that had no process to kill
	bad        map[int]bool             // rounds with a violation
	violations int
}

// round runs one operation, kills one victim during it, waits for the
// platform to recover and checks the invariants.
func (c *chaos) round(n int) {
	op := chaosOps[c.rng.IntN(len(chaosOps))]
	// pierd supervises the postmaster: killed, it is started again.
	victims := []string{victimPierd, victimApp, victimPostmaster}
	if op == opPush {
		victims = append(victims, victimBuild)
	}
	victim := victims[c.rng.IntN(len(victims))]
	c.counts[op+" × "+victim]++

	c.n, c.scaled, c.upToDate = n, -1, ""
	cmd, desc, after := c.start(op)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// A random moment of the operation, as long as it usually takes.
	est := c.took[op]
	if est == 0 {
		est = 2 * time.Second
	}
	delay := time.Duration(c.rng.Int64N(int64(est) + 1))
	if victim == victimBuild {
		// A random moment of the build: kill waits for it to start.
		delay = 0
	}
	var err error
	finished := false
	select {
	case err = <-done:
		finished = true
	case <-time.After(delay):
	}
	what := c.kill(victim, done, &finished, &err)
	killedAt := time.Since(begin)
	if !finished {
		select {
		case err = <-done:
		case <-time.After(5 * time.Minute):
			cmd.Process.Kill()
			err = <-done
			c.violation(n, "%s did not end 5 minutes after the kill of %s:\n%s", desc, what, out)
		}
	}
	took := time.Since(begin)
	if victim == victimPierd {
		c.s.start()
	} else {
		select {
		case e := <-c.s.d.done:
			c.violation(n, "pierd exited by itself (%v) after the kill of %s:\n%s", e, what, c.s.d.out)
			c.s.start()
		default:
		}
	}
	after(out.String(), err)
	result := "ok"
	if err != nil {
		result = "failed: " + lastLine(out.String())
	}
	violated, settled := c.check(n)
	// The operation's work goes on after the command returns (a restart's
	// rollout): the next kill's moment is drawn over both.
	if err == nil && (victim == victimApp || finished) {
		c.took[op] = (c.took[op] + took + settled) / 2
	}
	c.t.Logf("round %3d: %-10s killed %-32s at %5.2fs: %s; %s", n, desc, what, killedAt.Seconds(), result, violated)
}

// start makes the command of op, a description of it, and what to do with
// its output and exit once it ends.
func (c *chaos) start(op string) (*exec.Cmd, string, func(string, error)) {
	noop := func(string, error) {}
	switch op {
	case opPush:
		c.r.pointRemote()
		desc := "repush " + c.version
		if c.unreleased == "" || c.rng.IntN(2) == 0 {
			next := fmt.Sprintf("p%d", len(c.code))
			c.r.edit("main.go", `"`+c.version+`"`, `"`+next+`"`, "chaos "+next)
			c.version, desc = next, "push "+next
			c.code[c.r.head()] = next
		} // else the push that failed is tried again, as its pusher would
		commit := c.r.head()
		return c.r.command("push", "pier", "main"), desc, func(out string, err error) {
			c.unreleased = ""
			if c.releasedBy(out, commit) {
				return
			}
			c.unreleased = commit
			if err == nil {
				// "Everything up-to-date": the commit must be what runs.
				c.upToDate = commit
			}
		}
	case opConfig:
		c.greetings++
		g := fmt.Sprintf("g%d", c.greetings)
		return c.pier("config:set", "GREETING="+g, "-a", "chaos"), "config " + g, func(out string, err error) {
			if m := doneLine.FindStringSubmatch(out); m != nil {
				v, _ := strconv.Atoi(m[1])
				c.set[v] = g
			}
		}
	case opScale:
		web := []int{0, 1, 1, 2, 2, 3, 3}[c.rng.IntN(7)]
		return c.pier("scale", fmt.Sprintf("web=%d", web), "-a", "chaos"), fmt.Sprintf("scale %d", web), func(out string, err error) {
			if err == nil {
				c.scaled = web
			}
		}
	case opRollback:
		var rels []pier.Release
		jsonOut(c.t, c.s.c.must("", "releases", "-a", "chaos", "-n", "500", "--json"), &rels)
		var to []int
		for i, r := range rels {
			if i > 0 && r.Status == pier.ReleaseSucceeded && r.Build != nil {
				to = append(to, r.Version)
			}
		}
		if len(to) > 0 {
			v := to[c.rng.IntN(len(to))]
			return c.pier("releases:rollback", fmt.Sprintf("v%d", v), "-a", "chaos"), fmt.Sprintf("rollback %d", v), func(out string, err error) {
				if m := doneLine.FindStringSubmatch(out); m != nil {
					n, _ := strconv.Atoi(m[1])
					c.rolledBack[n] = v
				}
			}
		}
	}
	return c.pier("ps:restart", "-a", "chaos"), "restart", noop
}

// pier is a command of the CLI, signed in as the stack's user.
func (c *chaos) pier(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "pier"), args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.s.c.config, "HOME="+c.s.c.config)
	cmd.Dir = c.s.c.config
	return cmd
}

var (
	releasedLine = regexp.MustCompile(`Released v(\d+)`)
	doneLine     = regexp.MustCompile(`done, v(\d+)`) // config:set's and releases:rollback's
)

// releasedBy notes the version a push of commit said it released, if it
// said so.
func (c *chaos) releasedBy(out, commit string) bool {
	m := releasedLine.FindStringSubmatch(out)
	if m != nil {
		v, _ := strconv.Atoi(m[1])
		c.released[v] = commit
	}
	return m != nil
}

// kill SIGKILLs a process of the victim kind and says which; a victim
// with no process running (an app scaled to 0, a build not started yet)
// is waited for while the operation runs. finished and err are set if
// the operation ends meanwhile.
func (c *chaos) kill(victim string, done chan error, finished *bool, err *error) string {
	for {
		pid := 0
		switch victim {
		case victimPierd:
			if err := c.s.d.cmd.Process.Kill(); err != nil {
				c.t.Fatal(err)
			}
			<-c.s.d.done
			return "pierd"
		case victimPostmaster:
			pid = c.postmasterPID()
		case victimApp:
			pid = pick(c.rng, c.appProcesses())
		case victimBuild:
			if len(c.buildPhases()) > 0 {
				// The build started: a random moment of it, as long as
				// its phases run. That estimate shrinks when the phases
				// were over before the kill, and grows when they were not.
				est := c.took["build"]
				seen := time.Now()
				d := time.Duration(c.rng.Int64N(int64(est) + 1))
				select {
				case *err = <-done:
					*finished = true
				case <-time.After(d):
				}
				if pid = pick(c.rng, c.buildPhases()); pid == 0 {
					c.took["build"] = (est + time.Since(seen)) / 2
					c.miss(victim)
					return "no build phase (it ended)"
				}
				c.took["build"] = est * 11 / 10
			}
		}
		if pid > 0 {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Sprintf("%s %d (%s)", victim, pid, strings.TrimSpace(string(comm)))
		}
		if *finished {
			c.miss(victim)
			return "no " + victim
		}
		select {
		case *err = <-done:
			*finished = true
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// miss counts a victim that had no process to kill.
func (c *chaos) miss(victim string) {
	if c.missed == nil {
		c.missed = map[string]int{}
	}
	c.missed[victim]++
}

func pick(rng *rand.Rand, pids []int) int {
	if len(pids) == 0 {
		return 0
	}
	return pids[rng.IntN(len(pids))]
}

// postmasterPID is the embedded Postgres's postmaster, from postmaster.pid.
func (c *chaos) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(c.pg.Dir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// violation fails the test and goes on: a run gathers every violation.
func (c *chaos) violation(round int, format string, args ...any) {
	c.t.Helper()
	c.violations++
	c.bad[round] = true
	c.t.Errorf("round %d: VIOLATION: %s", round, fmt.Sprintf(format, args...))
}

// summary logs the run's figures, as bench/README.md reports them.
func (c *chaos) summary(d time.Duration) {
	var pairs []string
	for k, n := range c.counts {
		pairs = append(pairs, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(pairs)
	c.t.Logf("chaos summary: %d rounds, %d violations in %d rounds, %s", *chaosRounds, c.violations, len(c.bad), d.Round(time.Second))
	c.t.Logf("chaos summary: operation × victim: %s", strings.Join(pairs, ", "))
	if len(c.missed) > 0 {
		c.t.Logf("chaos summary: victims with no process to kill before the operation ended: %v", c.missed)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return firstLineOf(lines[len(lines)-1])
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}
