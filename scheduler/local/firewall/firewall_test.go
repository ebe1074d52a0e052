package firewall_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pierpaas/pier/scheduler/local/firewall"
)

func rules(t *testing.T, tool string, args ...string) string {
	t.Helper()
	b, _ := exec.Command(tool, append([]string{"-w", "-S"}, args...)...).CombinedOutput()
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
		if n := strings.Count(rules(t, tool, "OUTPUT"), "-j "+chain); n != 1 {
			t.Errorf("%s: %d jumps to %s in OUTPUT", tool, n, chain)
		}
		got := rules(t, tool, chain)
		if strings.Contains(got, "8080") || !strings.Contains(got, "--dport 9090 --tcp-flags FIN,SYN,RST,ACK SYN -j RETURN") || !strings.Contains(got, "--uid-owner 100000-165535 -j REJECT --reject-with tcp-reset") {
			t.Errorf("%s: chain %s:\n%s", tool, chain, got)
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
		if out := rules(t, tool, "OUTPUT"); strings.Contains(out, firewall.Chain(gone.DataDir)) {
			t.Errorf("%s: the chain of a removed data dir is left:\n%s", tool, out)
		}
	}
}
