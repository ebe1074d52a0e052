// Package firewall owns the netfilter rules that keep the app processes of
// one Pier installation off each other's loopback ports.
//
// Every app process and build of the local scheduler runs, when pierd is
// root, as a uid of the app range, and on this host every app listens on
// loopback. Netfilter's owner match knows the uid of the socket that sends
// a packet, so one rule refuses (with a TCP reset: the caller sees
// "connection refused") every new TCP connection that a socket of the app
// range opens over the loopback interface, except to the ports the
// operator allows: the router's. Apps reach each other through the
// router, as on Heroku; pierd's internal listener, its metrics, and the
// operator's own services on loopback are out of their reach too. Replies
// from an app's listener to the router are not new connections, and the
// router runs as root, outside the range: serving is untouched.
//
// The rules live in chains of their own, named after the scheduler's data
// dir, jumped to from the top of OUTPUT, in IPv4 (iptables) and, when the
// kernel has IPv6, IPv6 (ip6tables): refilled at every start and removed
// at Shutdown. Several installations on one host (tests run many) must not
// refuse each other's router ports: so the allowed ports are not accepted
// in the filter chain, where the first installation's refusal would come
// before the second's exception, but marked (Mark) in the mangle table,
// which the kernel runs before filter, and every installation's filter
// chain lets a marked SYN pass. A pierd that was killed leaves its chain behind;
// the next start on the same data dir replaces it, and any start removes
// the chains of data dirs that no longer exist. Commands are run with
// argv, never through a shell.
package firewall

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Config says whose connections are refused and where they may still go.
type Config struct {
	DataDir string    // the scheduler's: it names the chain
	UIDs    [2]uint32 // the app uids, inclusive
	Allow   []int     // loopback TCP ports the app uids may still open connections to (the router's)
	Logger  *slog.Logger
}

// Guard is an installed chain.
type Guard struct {
	chain, comment string
	tools          []string
	log            *slog.Logger
	once           sync.Once
	err            error
}

// Mark is the bit of the packet mark that says "a SYN to an allowed port".
// Other users of marks take other bits: kube-proxy 0x4000 and 0x8000,
// Tailscale 0xff0000, Cilium 0xf00.
const Mark = "0x20000000/0x20000000"

// commentPrefix marks the jumps of Pier in OUTPUT; the data dir follows.
const commentPrefix = "pier "

// Chain is the name of the chain of the scheduler whose data dir is dir.
func Chain(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	sum := sha256.Sum256([]byte(abs))
	return "PIER-" + hex.EncodeToString(sum[:6])
}

// Install creates or refills the chain of cfg.DataDir and puts its jump at
// the top of OUTPUT. It fails, saying how to install iptables, when the
// tools are missing or refuse (pierd is not root, or the kernel has no
// netfilter).
func Install(cfg Config) (*Guard, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UIDs[0] == 0 || cfg.UIDs[0] > cfg.UIDs[1] {
		return nil, fmt.Errorf("app uid range %d-%d is invalid: give a range above 0, low-high", cfg.UIDs[0], cfg.UIDs[1])
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	names := []string{"iptables"}
	// Without IPv6 in the kernel there is no ::1 to connect to, and
	// ip6tables would fail.
	if _, err := os.Stat("/proc/net/if_inet6"); err == nil {
		names = append(names, "ip6tables")
	}
	g := &Guard{chain: Chain(abs), comment: commentPrefix + abs, log: cfg.Logger}
	for _, name := range names {
		path, err := lookTool(name)
		if err != nil {
			return nil, err
		}
		g.tools = append(g.tools, path)
	}
	uids := fmt.Sprintf("%d-%d", cfg.UIDs[0], cfg.UIDs[1])
	for _, p := range cfg.Allow {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("allowed port %d is not a TCP port", p)
		}
	}
	for _, tool := range g.tools {
		removeStale(tool, g.log)
		for _, table := range tables {
			if _, err := run(tool, "-t", table, "-N", g.chain); err != nil {
				if _, err2 := run(tool, "-t", table, "-S", g.chain); err2 != nil {
					return nil, installErr(tool, err)
				}
			}
		}
		rules := [][]string{{"-t", "mangle", "-F", g.chain}, {"-t", "filter", "-F", g.chain}}
		for _, p := range cfg.Allow {
			rules = append(rules, []string{"-t", "mangle", "-A", g.chain, "-o", "lo", "-p", "tcp", "--syn", "--dport", strconv.Itoa(p), "-j", "MARK", "--set-xmark", Mark})
		}
		rules = append(rules,
			[]string{"-t", "filter", "-A", g.chain, "-m", "mark", "--mark", Mark, "-j", "RETURN"},
			[]string{"-t", "filter", "-A", g.chain, "-o", "lo", "-p", "tcp", "--syn", "-m", "owner", "--uid-owner", uids, "-j", "REJECT", "--reject-with", "tcp-reset"})
		// At the top of OUTPUT, once: an "-o lo -j ACCEPT" that many
		// firewalls have must not come first.
		for _, table := range tables {
			deleteJumps(tool, table, g.jump())
			rules = append(rules, append([]string{"-t", table, "-I", "OUTPUT", "1"}, g.jump()...))
		}
		for _, r := range rules {
			if _, err := run(tool, r...); err != nil {
				g.Remove()
				return nil, installErr(tool, err)
			}
		}
	}
	return g, nil
}

// tables hold a chain each: mangle marks, filter refuses.
var tables = []string{"mangle", "filter"}

// jump is the OUTPUT rule that sends loopback TCP to the chain.
func (g *Guard) jump() []string { return jumpTo(g.chain, g.comment) }

func jumpTo(chain, comment string) []string {
	return []string{"-o", "lo", "-p", "tcp", "-m", "comment", "--comment", comment, "-j", chain}
}

// Remove deletes the jump and the chain. Calling it again does nothing.
func (g *Guard) Remove() error {
	g.once.Do(func() {
		var errs []error
		for _, tool := range g.tools {
			for _, table := range tables {
				deleteJumps(tool, table, g.jump())
				if _, err := run(tool, "-t", table, "-S", g.chain); err != nil {
					continue // never made, or gone
				}
				if _, err := run(tool, "-t", table, "-F", g.chain); err != nil {
					errs = append(errs, err)
				}
				if _, err := run(tool, "-t", table, "-X", g.chain); err != nil {
					errs = append(errs, err)
				}
			}
		}
		g.err = errors.Join(errs...)
	})
	return g.err
}

// deleteJumps deletes every copy of the jump from table's OUTPUT.
func deleteJumps(tool, table string, jump []string) {
	for range 100 {
		if _, err := run(tool, append([]string{"-t", table, "-D", "OUTPUT"}, jump...)...); err != nil {
			return
		}
	}
}

// removeStale removes the jumps and chains of data dirs that no longer
// exist (a killed pierd's temporary dir, a removed installation).
func removeStale(tool string, log *slog.Logger) {
	for _, table := range tables {
		removeStaleIn(tool, table, log)
	}
}

func removeStaleIn(tool, table string, log *slog.Logger) {
	out, err := run(tool, "-t", table, "-S", "OUTPUT")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(line, ` --comment "`+commentPrefix)
		if !ok {
			continue
		}
		dir, chain, ok := strings.Cut(rest, `" -j `)
		// A dir with a quote or backslash is printed escaped: left alone.
		if !ok || strings.ContainsAny(dir, `"\`) || chain != Chain(dir) {
			continue
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		deleteJumps(tool, table, jumpTo(chain, commentPrefix+dir))
		run(tool, "-t", table, "-F", chain)
		run(tool, "-t", table, "-X", chain)
		log.Info("removed the firewall chain of a data dir that is gone", "table", table, "chain", chain, "dir", dir)
	}
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	// pierd's PATH may lack the sbin directories.
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed: as root, the local scheduler refuses app processes' connections to each other's loopback ports with it; install it (Debian and Ubuntu: apt-get install iptables) and start pierd again", name)
}

func installErr(tool string, err error) error {
	return fmt.Errorf("cannot install the firewall rules that keep apps off each other's loopback ports: %w; pierd must run as root with netfilter in the kernel (Debian and Ubuntu: apt-get install iptables)", err)
}

// run runs tool with args, waiting for the xtables lock (-w) that other
// users of iptables may hold, and returns its output.
func run(tool string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(tool, append([]string{"-w"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("%s %s: %s", filepath.Base(tool), strings.Join(args, " "), msg)
	}
	return out.String(), nil
}
