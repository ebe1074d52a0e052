package local_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/scheduler/local"
	"github.com/pierpaas/pier/scheduler/local/firewall"
)

// strangerUID is a uid of the app range that no app of these tests gets:
// the neighbour who takes a port.
const strangerUID = 165000

// isolationMain is the neighbour of the isolation tests. hijack: listen on
// HIJACK_ADDR and answer "hijacked" until killed. dial: try a TCP
// connection to each argument and print "ADDR ok" or "ADDR refused: why".
func isolationMain(mode string) {
	switch mode {
	case "hijack":
		l, err := net.Listen("tcp", os.Getenv("HIJACK_ADDR"))
		if err != nil {
			fmt.Println("cannot listen:", err)
			os.Exit(1)
		}
		fmt.Println("listening")
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hijacked") }))
	case "dial":
		for _, addr := range os.Args[1:] {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				fmt.Println(addr, "refused:", err)
				continue
			}
			c.Close()
			fmt.Println(addr, "ok")
		}
	}
}

// serveRetrying serves srv, retrying its bind while the port is taken.
func serveRetrying(srv *http.Server) {
	for {
		l, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			fmt.Println("cannot listen, retrying:", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		fmt.Println("listening on", os.Getenv("PORT"))
		srv.Serve(l)
		return
	}
}

// startAs starts the helper in mode as uid (when the tests run as root;
// otherwise as ourselves, in a process group of its own) and returns its
// first line of output.
func startAs(t *testing.T, uid uint32, env ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(helperBin)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	go io.Copy(io.Discard, out)
	return cmd, strings.TrimSpace(line)
}

// Finding 5 (ports): a process's port is free while it waits to restart,
// and readiness used to need only someone to accept on it, so a neighbour
// that bound it got the app's traffic. Here web.1 of "victim" crashes after
// serving; during its backoff a stranger (another uid as root, another
// process group otherwise) listens on its port. The restarted process must
// never be marked up nor routed on the stranger's listener, the app's log
// must say why, and once the stranger goes the app's own listener serves.
func TestPortHijackNeverRouted(t *testing.T) {
	s, dir := newScheduler(t, func(c *local.Config) {
		c.RestartBackoff = 2 * time.Second
		c.MaxRestartBackoff = 2 * time.Second
	})
	v := deployVictim(t, s, "crash-once")
	routedNow, port := v.routed, v.port
	eventually(t, "web.1 crashes", func() bool {
		ps := processes(t, s, "victim")
		return len(ps) == 1 && ps[0].State == pier.ProcessCrashed
	})

	hijacker, said := v.hijack(t)
	if said != "listening" {
		t.Fatalf("the stranger could not take the port during the backoff: %s", said)
	}
	if body := get(t, v.addr); body != "hijacked" {
		t.Fatalf("the port answers %q, not the stranger", body)
	}
	want := v.strangerHolds()
	logFile := filepath.Join(dir, "logs", "victim.log")
	// Through the restart and a start that timed out on the stranger's
	// listener, and the next restart.
	eventually(t, "the restarted web.1 runs again beside the stranger, twice", func() bool {
		if routedNow() {
			t.Fatalf("web.1 is routed while a stranger holds its port %s", port)
		}
		ps := processes(t, s, "victim")
		logs, _ := os.ReadFile(logFile)
		return strings.Contains(string(logs), want) && len(ps) == 1 && ps[0].Restarts >= 2
	})
	if v.routedToStranger.Load() {
		t.Fatalf("web.1 was routed while a stranger held its port %s", port)
	}
	if ps := processes(t, s, "victim"); ps[0].State == pier.ProcessUp {
		t.Fatalf("web.1 is up on the stranger's listener: %+v", ps[0])
	}

	v.release(hijacker)
	eventually(t, "web.1 serves on its own listener once the stranger is gone", func() bool {
		return routedNow()
	})
	if body := get(t, v.addr); body != "web.1 v1" {
		t.Fatalf("the port answers %q", body)
	}
}

// Finding 5 (ports), the other way to lose a port: a web process that is up
// closes its listener and lives on. Its port is anyone's; a neighbour that
// binds it must not get the app's traffic. The process leaves the routes
// once its group no longer holds the listening socket, stays out while the
// stranger holds the port, and comes back when it listens again.
func TestClosedListenerLeavesRoutes(t *testing.T) {
	s, dir := newScheduler(t, func(c *local.Config) {
		c.StartTimeout = time.Minute // the stranger's turn must not end in a restart
	})
	v := deployVictim(t, s, "close-listener")
	routedNow, port := v.routed, v.port
	eventually(t, "web.1 is routed", routedNow)
	home := getIdentity(v.addr).Env["HOME"]
	if home == "" {
		t.Fatal("web.1 has no HOME")
	}
	if err := os.WriteFile(filepath.Join(home, "close"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web.1 leaves the routes once it closed its listener", func() bool { return !routedNow() })
	logFile := filepath.Join(dir, "logs", "victim.log")
	logs, _ := os.ReadFile(logFile)
	if !strings.Contains(string(logs), "closed its listener on port "+port) {
		t.Fatalf("the app's log does not say why web.1 left the routes:\n%s", logs)
	}

	hijacker, said := v.hijack(t)
	if said != "listening" {
		t.Fatalf("the stranger could not take the closed port: %s", said)
	}
	want := v.strangerHolds()
	eventually(t, "the scheduler sees the stranger on web.1's port", func() bool {
		if routedNow() {
			t.Fatalf("web.1 is routed while a stranger holds its port %s", port)
		}
		logs, _ := os.ReadFile(logFile)
		return strings.Contains(string(logs), want)
	})
	if v.routedToStranger.Load() {
		t.Fatalf("web.1 was routed while a stranger held its port %s", port)
	}

	v.release(hijacker)
	if err := os.WriteFile(filepath.Join(home, "rebind"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web.1 is routed again on its own listener", routedNow)
	if body := get(t, v.addr); body != "web.1 v1" {
		t.Fatalf("the port answers %q", body)
	}
}

// victim is the app of the port tests: web.1 of "victim", whose port a
// stranger takes while it is not listening there.
type victim struct {
	s          *local.Scheduler
	addr, port string
	// routedToStranger: the router was told of web.1's address while
	// hijacking was set, between two polls of a test.
	hijacking, routedToStranger atomic.Bool
}

// deployVictim deploys victim in mode and watches its routes.
func deployVictim(t *testing.T, s *local.Scheduler, mode string) *victim {
	t.Helper()
	v := &victim{s: s}
	if err := s.Apply(context.Background(), deployment("victim", 1, web(1), pier.Config{"MODE": mode})); err != nil {
		t.Fatal(err)
	}
	ps := processes(t, s, "victim")
	if len(ps) != 1 || ps[0].Addr == "" {
		t.Fatalf("processes: %+v", ps)
	}
	v.addr = ps[0].Addr
	_, v.port, _ = net.SplitHostPort(v.addr)
	t.Cleanup(s.Subscribe(func() {
		if v.hijacking.Load() && v.routed() {
			v.routedToStranger.Store(true)
		}
	}))
	return v
}

func (v *victim) routed() bool { return slices.Contains(v.s.Routes()["victim"], v.addr) }

// hijack starts a stranger (another uid as root) listening on web.1's
// port; said is what it reports.
func (v *victim) hijack(t *testing.T) (stranger *exec.Cmd, said string) {
	v.hijacking.Store(true)
	return startAs(t, strangerUID, "PIER_TEST_HELPER=hijack", "HIJACK_ADDR="+v.addr)
}

func (v *victim) release(stranger *exec.Cmd) {
	v.hijacking.Store(false)
	stranger.Process.Kill()
	stranger.Wait()
}

// strangerHolds is what the app's log says while the stranger holds the
// port: its uid, pierd's own when not root.
func (v *victim) strangerHolds() string {
	uid := strangerUID
	if os.Geteuid() != 0 {
		uid = os.Geteuid()
	}
	return fmt.Sprintf("port %s is held by another process (uid %d)", v.port, uid)
}

func get(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Every app listens on loopback, and a port is no secret (ss lists them):
// as root, an app's processes must not open a TCP connection to another
// app's port, while the router (root) still can, and the apps can still
// reach the router's ports. The rules are gone after Shutdown.
func TestAppsCannotConnectToEachOther(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("per-app uids and their firewall rules need root")
	}
	router := listenAsRoot(t, "127.0.0.1:0") // stands in for the router's port
	// pierd's internal listener, an operator's service: on no allowed port.
	internal4, internal6 := listenAsRoot(t, "127.0.0.1:0"), listenAsRoot(t, "[::1]:0")
	routerPort := router.Addr().(*net.TCPAddr).Port
	s, dir := newScheduler(t, func(c *local.Config) { c.AllowedPorts = []int{routerPort} })
	// Another installation on this host (tests run many at once), whose
	// router is elsewhere, must not refuse this one's router.
	otherRouter := listenAsRoot(t, "127.0.0.1:0")
	other, err := firewall.Install(firewall.Config{DataDir: t.TempDir(), UIDs: local.DefaultAppUIDs, Allow: []int{otherRouter.Addr().(*net.TCPAddr).Port}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Remove()
	ctx := context.Background()
	if err := s.Apply(ctx, deployment("alpha", 1, web(1), nil)); err != nil {
		t.Fatal(err)
	}
	alpha := s.Backends("alpha")
	if len(alpha) != 1 {
		t.Fatalf("backends of alpha: %v", alpha)
	}
	// The router's side: root reaches alpha.
	if body := get(t, alpha[0]); body != "web.1 v1" {
		t.Fatalf("alpha answers %q", body)
	}
	// beta's `pier run`, as beta's uid.
	var out strings.Builder
	code, err := s.Run(ctx, deployment("beta", 1, nil, pier.Config{"PIER_TEST_HELPER": "dial"}), pier.RunOptions{
		Command: []string{helperBin, alpha[0], router.Addr().String(), internal4.Addr().String(), internal6.Addr().String()},
		Stdout:  &out, Stderr: &out,
	})
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v\n%s", code, err, out.String())
	}
	if !strings.Contains(out.String(), alpha[0]+" refused: ") {
		t.Errorf("beta's process reached alpha's port %s:\n%s", alpha[0], out.String())
	}
	for _, l := range []net.Listener{internal4, internal6} {
		if !strings.Contains(out.String(), l.Addr().String()+" refused: ") {
			t.Errorf("beta's process reached root's loopback service %s:\n%s", l.Addr(), out.String())
		}
	}
	if !strings.Contains(out.String(), router.Addr().String()+" ok") {
		t.Errorf("beta's process cannot reach the router's port %d:\n%s", routerPort, out.String())
	}
	chain := firewall.Chain(dir)
	for _, tool := range []string{"iptables", "ip6tables"} {
		if b, err := exec.Command(tool, "-w", "-S", "OUTPUT").CombinedOutput(); err != nil || !strings.Contains(string(b), "-j "+chain) {
			t.Fatalf("%s: no jump to %s in OUTPUT: %v\n%s", tool, chain, err, b)
		}
	}
	shut, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Shutdown(shut); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"mangle", "filter"} {
			if b, _ := exec.Command(tool, "-w", "-t", table, "-S", "OUTPUT").CombinedOutput(); strings.Contains(string(b), chain) {
				t.Errorf("%s: the jump to %s is left in %s after Shutdown:\n%s", tool, chain, table, b)
			}
			if b, err := exec.Command(tool, "-w", "-t", table, "-S", chain).CombinedOutput(); err == nil {
				t.Errorf("%s: chain %s is left in %s after Shutdown:\n%s", tool, chain, table, b)
			}
		}
	}
}

// listenAsRoot accepts and closes connections on addr until the test ends.
func listenAsRoot(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l
}
