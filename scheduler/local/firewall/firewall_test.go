package firewall_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pierpaas/pier/scheduler/local/firewall"
)

func rules(t *testing.T, tool, table, chain string) string {
	t.Helper()
	b, _ := exec.Command(tool, "-w", "-t", table, "-S", chain).CombinedOutput()
	return string(b)
}

// A pierd that was killed leaves its chain: the next start on its data dir
// refills it (one jump, the new rules), and a start of any installation
// removes the chain of a data dir that is gone.
func TestChainOfKilledPierdReplaced(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("netfilter rules need root")
	}
	cfg := firewall.Config{DataDir: t.TempDir(), UIDs: [2]uint32{100000, 165535}, Allow: []int{8080}}
	if _, err := firewall.Install(cfg); err != nil { // then "killed": never removed
		t.Fatal(err)
	}
	cfg.Allow = []int{9090}
	g, err := firewall.Install(cfg)
	if err != nil {
		t.Fatal(err)
	}
	chain := firewall.Chain(cfg.DataDir)
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"mangle", "filter"} {
			if n := strings.Count(rules(t, tool, table, "OUTPUT"), "-j "+chain); n != 1 {
				t.Errorf("%s: %d jumps to %s in %s OUTPUT", tool, n, chain, table)
			}
		}
		mangle, filter := rules(t, tool, "mangle", chain), rules(t, tool, "filter", chain)
		if strings.Contains(mangle, "8080") || !strings.Contains(mangle, "--dport 9090 --tcp-flags FIN,SYN,RST,ACK SYN -j MARK --set-xmark "+firewall.Mark) {
			t.Errorf("%s: mangle chain %s:\n%s", tool, chain, mangle)
		}
		if !strings.Contains(filter, "-m mark --mark "+firewall.Mark+" -j RETURN") || !strings.Contains(filter, "--uid-owner 100000-165535 -j REJECT --reject-with tcp-reset") {
			t.Errorf("%s: chain %s:\n%s", tool, chain, filter)
		}
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}

	gone := firewall.Config{DataDir: t.TempDir() + "/gone", UIDs: cfg.UIDs}
	os.Mkdir(gone.DataDir, 0o700)
	if _, err := firewall.Install(gone); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(gone.DataDir)
	g, err = firewall.Install(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"mangle", "filter"} {
			if out := rules(t, tool, table, "OUTPUT"); strings.Contains(out, firewall.Chain(gone.DataDir)) {
				t.Errorf("%s: the chain of a removed data dir is left in %s:\n%s", tool, table, out)
			}
		}
	}
}
