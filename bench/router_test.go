package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// The router benchmark's files: the servers' command, nginx's config and
// wrk's script for many hosts.
var (
	routerBenchCmd = "./router/cmd/pier-router-bench"
	nginxTemplate  = filepath.Join("router", "nginx.conf.tmpl")
	hostsScript    = filepath.Join("router", "hosts.lua")
)

// routerDomain is the platform domain of the benchmark: appK.pier.localhost
// reaches appK, on either proxy.
const routerDomain = "pier.localhost"

// The CPUs, with taskset: each proxy gets the first; wrk and the backend
// share the second.
const (
	proxyCPU  = "0"
	clientCPU = "1"
)

// routerCase is one route table: hosts apps, requests spread over all of
// them round-robin.
type routerCase struct {
	name  string
	hosts int
}

var routerCases = []routerCase{{"1host", 1}, {"1000hosts", 1000}}

// BenchmarkRouterVsNginx puts Pier's router (GOMAXPROCS=1, served by
// rt.NewServer as pierd serves it) and Debian's nginx (one
// worker, configured as a fair reverse proxy: router/nginx.conf.tmpl) in
// front of the same backend, and drives both with wrk with the same
// parameters: keep-alive, a 12-byte body, first with one host, then with
// 1,000 hosts in the table (app1 … app1000.pier.localhost, requested in
// turn by router/hosts.lua). With taskset, both proxies run on CPU 0 and
// wrk and the backend on CPU 1. After a warm-up of each, nginx and Pier
// take turns, nginx first in odd rounds and Pier first in even ones; the
// table shows the median requests/s and p99 of each, their spread, and
// the ratios. It runs once whatever b.N is (make bench-router).
//
// Environment: PIER_BENCH_ROUTER_ROUNDS (3), PIER_BENCH_ROUTER_DURATION
// (10s), PIER_BENCH_ROUTER_CONNS (50), PIER_BENCH_ROUTER_PIN=0 not to use
// taskset, PIER_BENCH_ROUTER_NGINX_BLOCKS=1 to give nginx one server block
// per host (default: one block with all the server_names),
// PIER_BENCH_ROUTER_PROFILE=DIR to write a CPU profile of Pier's router
// under the same load, one per case, after the rounds.
//
// Before each run it waits (up to 2 min) for the machine to be quiet, and
// it marks a run during which other processes took more than 10% of the
// proxy's CPU: on a shared machine, rerun rather than trust those.
func BenchmarkRouterVsNginx(b *testing.B) {
	for _, tool := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("needs %s (Debian: apt-get install nginx wrk): %v", tool, err)
		}
	}
	o := routerOptionsFromEnv(b)
	e := newRouterEnv(b, o.pin)
	blocks := "one server block with all the server_names"
	if o.blocks {
		blocks = "one server block per host"
	}
	fmt.Printf("router against nginx: %s; wrk -t1 -c%d -d%s --latency, %d rounds each after a warm-up; %s; nginx: %s\n",
		e.versions(), o.conns, o.dur, o.rounds, e.placement(), blocks)
	var results []routerResult
	for _, c := range routerCases {
		b.Run(c.name, func(b *testing.B) {
			r := e.compare(b, c, o)
			results = append(results, r)
			b.ReportMetric(r.median("pier", rps), "pier-req/s")
			b.ReportMetric(r.median("nginx", rps), "nginx-req/s")
			b.ReportMetric(r.median("pier", rps)/r.median("nginx", rps), "ratio")
			b.ReportMetric(r.median("pier", p99ms), "pier-p99-ms")
			b.ReportMetric(r.median("nginx", p99ms), "nginx-p99-ms")
		})
	}
	printRouterResults(results)
}

// TestRouterBenchSmoke keeps the benchmark's pieces working without nginx
// or wrk: it builds the command, runs its backend and Pier's router (1 and
// 1,000 apps) as the benchmark does, and checks that requests through the
// router to the first and last host get the backend's body, and a host not
// in the table 404. It also reads a sample of wrk's output, and renders
// nginx's config for 1,000 hosts (checked with nginx -t when nginx is
// installed).
func TestRouterBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the router benchmark's command; skipped with -short")
	}
	e := newRouterEnv(t, false)
	for _, c := range routerCases {
		_, pier := e.startPier(t, c.hosts, "")
		for _, k := range []int{1, c.hosts} {
			if err := checkProxy(pier, routerHost(k)); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		if err := getBody(pier, "app0."+routerDomain, http.StatusNotFound, ""); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	got, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkRun{rps: 61234.56, p50: 756 * time.Microsecond, p99: 3210 * time.Microsecond, requests: 612960, non2xx: 3}
	if got != want {
		t.Errorf("parseWrk = %+v, want %+v", got, want)
	}

	for _, blocks := range []bool{false, true} {
		dir := t.TempDir()
		conf := writeNginxConf(t, dir, "127.0.0.1:1", "127.0.0.1:2", 1000, blocks)
		text, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(text), "server_name app"); n != 1000 {
			t.Errorf("nginx config (blocks %v) has %d server_names, want 1000", blocks, n)
		}
		if n, want := strings.Count(string(text), "proxy_pass"), map[bool]int{false: 1, true: 1000}[blocks]; n != want {
			t.Errorf("nginx config (blocks %v) has %d proxy_pass, want %d", blocks, n, want)
		}
		if _, err := exec.LookPath("nginx"); err == nil {
			if out, err := exec.Command("nginx", "-t", "-q", "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log")).CombinedOutput(); err != nil {
				t.Errorf("nginx -t (blocks %v): %v\n%s", blocks, err, out)
			}
		}
	}
}

// wrkSample is wrk 4.1's output, with --latency and errors.
const wrkSample = `Running 10s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.86ms    1.02ms  31.50ms   97.10%
    Req/Sec    61.59k     2.50k   66.00k    80.00%
  Latency Distribution
     50%  756.00us
     75%    0.90ms
     90%    1.10ms
     99%    3.21ms
  612960 requests in 10.01s, 73.07MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  61234.56
Transfer/sec:      7.30MB
`

type routerOptions struct {
	rounds, conns int
	dur           time.Duration
	pin           bool
	blocks        bool // nginx: one server block per host
	profile       string
}

func routerOptionsFromEnv(tb testing.TB) routerOptions {
	o := routerOptions{rounds: 3, conns: 50, dur: 10 * time.Second, pin: true, profile: os.Getenv("PIER_BENCH_ROUTER_PROFILE")}
	for name, p := range map[string]*int{"PIER_BENCH_ROUTER_ROUNDS": &o.rounds, "PIER_BENCH_ROUTER_CONNS": &o.conns} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				tb.Fatalf("%s=%q: want a number ≥ 1", name, v)
			}
			*p = n
		}
	}
	if v := os.Getenv("PIER_BENCH_ROUTER_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			tb.Fatalf("PIER_BENCH_ROUTER_DURATION=%q: want a duration of 1s or more", v)
		}
		o.dur = d
	}
	o.blocks = os.Getenv("PIER_BENCH_ROUTER_NGINX_BLOCKS") == "1"
	if os.Getenv("PIER_BENCH_ROUTER_PIN") == "0" {
		o.pin = false
	}
	return o
}

// routerEnv is the command built, and the backend running.
type routerEnv struct {
	dir, bin string
	taskset  string // its path when pinning CPUs; "" not to
	backend  string // host:port
	bpid     int    // the backend's process
}

func newRouterEnv(tb testing.TB, pin bool) *routerEnv {
	tb.Helper()
	e := &routerEnv{dir: tb.TempDir()}
	if pin {
		if p, err := exec.LookPath("taskset"); err == nil {
			e.taskset = p
		} else {
			tb.Logf("no taskset (%v): the processes are not pinned to CPUs", err)
		}
	}
	e.bin = filepath.Join(e.dir, "pier-router-bench")
	if out, err := exec.Command("go", "build", "-o", e.bin, routerBenchCmd).CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", routerBenchCmd, err, out)
	}
	// GOMAXPROCS=1: on its CPU with wrk it has one core at most anyway,
	// and one P has no work to steal or hand over.
	cmd, addr := e.start(tb, clientCPU, []string{"GOMAXPROCS=1"}, "backend")
	e.backend, e.bpid = addr, cmd.Process.Pid
	return e
}

// start runs the command with args, on cpu if pinning, and returns it with
// the address it printed once listening. It is stopped (SIGTERM, and
// waited for) at the end of the test.
func (e *routerEnv) start(tb testing.TB, cpu string, env []string, args ...string) (*exec.Cmd, string) {
	tb.Helper()
	cmd := e.command(cpu, e.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		tb.Fatalf("%s %s: want \"listening on ADDR\", got %q (%v)", e.bin, args[0], line, err)
	}
	go io.Copy(io.Discard, out)
	return cmd, addr
}

// command makes name args, run on cpu with taskset when pinning.
func (e *routerEnv) command(cpu, name string, args ...string) *exec.Cmd {
	if e.taskset == "" {
		return exec.Command(name, args...)
	}
	return exec.Command(e.taskset, append([]string{"-c", cpu, name}, args...)...)
}

// startPier runs Pier's router with apps app1 … appN on the backend, with
// GOMAXPROCS=1, and returns its address; profile, if set, is where it
// writes a CPU profile when stopped.
func (e *routerEnv) startPier(tb testing.TB, apps int, profile string) (*exec.Cmd, string) {
	args := []string{"router", "-backend", e.backend, "-apps", strconv.Itoa(apps), "-domain", routerDomain}
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	return e.start(tb, proxyCPU, []string{"GOMAXPROCS=1"}, args...)
}

// stopPier stops the router at addr now (for its profile to be written).
func stopPier(cmd *exec.Cmd) error {
	cmd.Process.Signal(syscall.SIGTERM)
	return cmd.Wait()
}

// startNginx runs nginx with the benchmark's config for hosts hosts, and
// returns its address and the pid of its worker.
func (e *routerEnv) startNginx(tb testing.TB, hosts int, blocks bool) (addr string, worker int) {
	tb.Helper()
	dir, err := os.MkdirTemp(e.dir, "nginx-")
	if err != nil {
		tb.Fatal(err)
	}
	addr = freeAddr(tb)
	conf := writeNginxConf(tb, dir, addr, e.backend, hosts, blocks)
	cmd := e.command(proxyCPU, "nginx", "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful: the master waits for its worker
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			tb.Fatalf("nginx did not listen on %s in 10 s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The master's only child is its worker.
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if f := strings.Fields(string(kids)); len(f) == 1 {
		worker, _ = strconv.Atoi(f[0])
	}
	return addr, worker
}

// writeNginxConf writes nginx.conf into dir, for nginx to listen on addr
// and proxy the hosts app1 … appN to backend: in one server block, or in
// one block per host.
func writeNginxConf(tb testing.TB, dir, addr, backend string, hosts int, blocks bool) string {
	tb.Helper()
	tmpl, err := template.ParseFiles(nginxTemplate)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		tb.Fatal(err)
	}
	names := make([]string, hosts)
	for k := range names {
		names[k] = routerHost(k + 1)
	}
	conf := filepath.Join(dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	err = tmpl.Execute(f, map[string]any{"Dir": dir, "Listen": addr, "Backend": backend, "Hosts": names, "Blocks": blocks})
	if err != nil {
		tb.Fatal(err)
	}
	return conf
}

func routerHost(k int) string { return fmt.Sprintf("app%d.%s", k, routerDomain) }

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// checkProxy checks that a request for host through the proxy at addr gets
// the backend's body.
func checkProxy(addr, host string) error {
	return getBody(addr, host, http.StatusOK, "hello world\n")
}

func getBody(addr, host string, status int, body string) error {
	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != status || (body != "" && string(got) != body) {
		return fmt.Errorf("GET %s via %s: %s %q, want %d %q", host, addr, resp.Status, got, status, body)
	}
	return nil
}

// wrkRun is what one run of wrk measured.
type wrkRun struct {
	rps          float64
	p50, p99     time.Duration
	requests     int
	non2xx       int
	socketErrors string  // wrk's "Socket errors:" line, if any
	proxyCPU     float64 // the proxy's CPU time over the run's wall time
	clientCPU    float64 // wrk's and the backend's
	others       float64 // the most that other processes took of either CPU, when pinned
	cpu0, cpu1   float64 // how busy each CPU was (all processes)
	load1        string  // the load average after the run
	side         string  // "nginx" or "pier"
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	wrkSocket   = regexp.MustCompile(`(?m)^\s*(Socket errors: .*)$`)
)

// parseWrk reads requests/s, the requests, p50 and p99 and the errors from
// wrk's output (run with --latency).
func parseWrk(out string) (wrkRun, error) {
	var r wrkRun
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit)).Round(time.Microsecond)
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p99 == 0 {
		return r, fmt.Errorf("no 99%% latency in wrk's output (run it with --latency):\n%s", out)
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		r.socketErrors = m[1]
	}
	return r, nil
}

// wrk runs wrk against the proxy at addr for d with conns connections,
// with hosts hosts in turn, pinned with the backend, and measures the
// CPU time of pid (the proxy) meanwhile.
func (e *routerEnv) wrk(tb testing.TB, addr string, hosts, conns int, d time.Duration, pid int) wrkRun {
	tb.Helper()
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + d.String(), "--latency"}
	if hosts == 1 {
		args = append(args, "-H", "Host: "+routerHost(1), "http://"+addr+"/")
	} else {
		args = append(args, "-s", hostsScript, "http://"+addr+"/", "--", strconv.Itoa(hosts), routerDomain)
	}
	cmd := e.command(clientCPU, "wrk", args...)
	quiet(tb)
	_, cpuBefore := procCPU(fmt.Sprintf("/proc/%d", pid))
	_, backendBefore := procCPU(fmt.Sprintf("/proc/%d", e.bpid))
	statBefore := cpuTicks()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	_, cpuAfter := procCPU(fmt.Sprintf("/proc/%d", pid))
	_, backendAfter := procCPU(fmt.Sprintf("/proc/%d", e.bpid))
	statAfter := cpuTicks()
	if err != nil {
		tb.Fatalf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		tb.Fatal(err)
	}
	if r.non2xx > 0 {
		tb.Fatalf("wrk got %d responses that are not 2xx or 3xx:\n%s", r.non2xx, out)
	}
	r.proxyCPU = (cpuAfter - cpuBefore).Seconds() / wall.Seconds()
	r.cpu0, r.cpu1 = statAfter.share(statBefore, 0), statAfter.share(statBefore, 1)
	r.clientCPU = (backendAfter - backendBefore + cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() / wall.Seconds()
	if e.taskset != "" {
		r.others = max(r.cpu0-r.proxyCPU, r.cpu1-r.clientCPU)
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.load1, _, _ = strings.Cut(string(load), " ")
	}
	return r
}

// quiet waits until the machine's CPUs were less than 10% busy over a
// second (this benchmark's processes idle in between runs), for 2 min at
// most.
func quiet(tb testing.TB) {
	start := time.Now()
	for {
		before := cpuTicks()
		time.Sleep(time.Second)
		after := cpuTicks()
		var busy float64
		for cpu := range after.total {
			busy += after.share(before, cpu)
		}
		if len(after.total) == 0 || busy/float64(len(after.total)) < 0.1 {
			if waited := time.Since(start); waited > 2*time.Second {
				fmt.Printf("  (waited %s for the machine to be quiet)\n", waited.Round(time.Second))
			}
			return
		}
		if time.Since(start) > 2*time.Minute {
			fmt.Printf("  (the machine is still %.0f%% busy after 2 min: measuring anyway)\n", 100*busy/float64(len(after.total)))
			return
		}
	}
}

// cpuStat is the busy and total clock ticks of each CPU, from /proc/stat.
type cpuStat struct{ busy, total []int64 }

func cpuTicks() cpuStat {
	var s cpuStat
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var busy, total int64
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		s.busy, s.total = append(s.busy, busy), append(s.total, total)
	}
	return s
}

// share is the share of CPU cpu's time that was busy since before.
func (s cpuStat) share(before cpuStat, cpu int) float64 {
	if cpu >= len(s.total) || cpu >= len(before.total) || s.total[cpu] == before.total[cpu] {
		return 0
	}
	return float64(s.busy[cpu]-before.busy[cpu]) / float64(s.total[cpu]-before.total[cpu])
}

// routerResult is every measured run of one case.
type routerResult struct {
	c    routerCase
	runs []wrkRun
}

func rps(r wrkRun) float64   { return r.rps }
func p99ms(r wrkRun) float64 { return float64(r.p99) / float64(time.Millisecond) }

// disturbed says whether other processes took more than 10% of either CPU
// during the run (known only when pinned).
func (r wrkRun) disturbed() bool { return r.others > 0.1 }

// values returns f of side's runs, sorted: of its undisturbed runs if it
// has any, else of all.
func (r routerResult) values(side string, f func(wrkRun) float64) []float64 {
	var v, all []float64
	for _, run := range r.runs {
		if run.side == side {
			all = append(all, f(run))
			if !run.disturbed() {
				v = append(v, f(run))
			}
		}
	}
	if len(v) == 0 {
		v = all
	}
	slices.Sort(v)
	return v
}

// counted says how many of side's runs values uses, of how many.
func (r routerResult) counted(side string) string {
	n, all := 0, 0
	for _, run := range r.runs {
		if run.side == side {
			all++
			if !run.disturbed() {
				n++
			}
		}
	}
	if n == 0 || n == all {
		return strconv.Itoa(all)
	}
	return fmt.Sprintf("%d of %d", n, all)
}

func (r routerResult) median(side string, f func(wrkRun) float64) float64 {
	v := r.values(side, f)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 0 {
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

// compare measures one case: nginx and Pier warm up, then take turns.
func (e *routerEnv) compare(b *testing.B, c routerCase, o routerOptions) routerResult {
	ngx, worker := e.startNginx(b, c.hosts, o.blocks)
	pierCmd, pier := e.startPier(b, c.hosts, "")
	if worker == 0 {
		b.Fatal("could not find nginx's worker process")
	}
	for _, k := range []int{1, c.hosts} {
		for _, addr := range []string{ngx, pier} {
			if err := checkProxy(addr, routerHost(k)); err != nil {
				b.Fatal(err)
			}
		}
	}
	pids := map[string]int{"nginx": worker, "pier": pierCmd.Process.Pid}
	addrs := map[string]string{"nginx": ngx, "pier": pier}
	warm := min(o.dur, 3*time.Second)
	for _, side := range []string{"nginx", "pier"} {
		e.wrk(b, addrs[side], c.hosts, o.conns, warm, pids[side])
	}
	res := routerResult{c: c}
	for i := range o.rounds {
		order := []string{"nginx", "pier"}
		if i%2 == 1 {
			order = []string{"pier", "nginx"}
		}
		for _, side := range order {
			r := e.wrk(b, addrs[side], c.hosts, o.conns, o.dur, pids[side])
			r.side = side
			res.runs = append(res.runs, r)
			note := ""
			if r.socketErrors != "" {
				note = "  " + r.socketErrors
			}
			if r.disturbed() {
				note += fmt.Sprintf("  DISTURBED: other processes took %.0f%% of a CPU", 100*r.others)
			}
			fmt.Printf("  %-9s round %d %-5s %8.0f req/s  p50 %7s  p99 %7s  CPU: proxy %3.0f%%, wrk+backend %3.0f%%; CPU0 %3.0f%%, CPU1 %3.0f%% busy; load %s%s\n",
				c.name, i+1, side, r.rps, r.p50, r.p99, 100*r.proxyCPU, 100*r.clientCPU, 100*r.cpu0, 100*r.cpu1, r.load1, note)
		}
	}
	if o.profile != "" {
		e.profile(b, c, o)
	}
	return res
}

// profile runs Pier's router of case c under the same load with a CPU
// profile, written to o.profile/pier-router-<case>.pprof.
func (e *routerEnv) profile(b *testing.B, c routerCase, o routerOptions) {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		b.Fatal(err)
	}
	file, err := filepath.Abs(filepath.Join(o.profile, "pier-router-"+c.name+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	cmd, addr := e.startPier(b, c.hosts, file)
	r := e.wrk(b, addr, c.hosts, o.conns, o.dur, cmd.Process.Pid)
	if err := stopPier(cmd); err != nil {
		b.Fatalf("router with -cpuprofile: %v", err)
	}
	fmt.Printf("  %-9s profiled  pier  %8.0f req/s  p99 %7s: go tool pprof -top %s\n", c.name, r.rps, r.p99, file)
}

func printRouterResults(results []routerResult) {
	if len(results) == 0 {
		return
	}
	fmt.Printf("  median [min–max] of the undisturbed runs (all if none was)\n")
	fmt.Printf("  %-9s %-24s %-24s %7s   %-22s %-22s %-15s %s\n", "", "nginx req/s", "Pier req/s", "ratio", "nginx p99", "Pier p99", "p99 Pier/nginx", "runs nginx / Pier")
	for _, r := range results {
		cell := func(side string, f func(wrkRun) float64, format string) string {
			v := r.values(side, f)
			return fmt.Sprintf(format+" ["+format+"–"+format+"]", r.median(side, f), v[0], v[len(v)-1])
		}
		ratio := r.median("pier", rps) / r.median("nginx", rps)
		verdict := "target ≥ 1.0 met"
		if ratio < 1 {
			verdict = "target ≥ 1.0 MISSED"
		}
		fmt.Printf("  %-9s %-24s %-24s %6.2f×   %-22s %-22s %-15s %-17s %s\n", r.c.name,
			cell("nginx", rps, "%.0f"), cell("pier", rps, "%.0f"), ratio,
			cell("nginx", p99ms, "%.2f")+" ms", cell("pier", p99ms, "%.2f")+" ms",
			fmt.Sprintf("%.2f×", r.median("pier", p99ms)/r.median("nginx", p99ms)),
			r.counted("nginx")+" / "+r.counted("pier"), verdict)
	}
	// When wrk and the backend saturate their CPU, both proxies idle part
	// of the time and requests/s says more about the client than about
	// them: requests per second of the proxy's own CPU time says which one
	// does more with a core.
	fmt.Printf("  requests per second of proxy CPU time (req/s ÷ the proxy's CPU share), median:\n")
	for _, r := range results {
		n, p := r.median("nginx", perCPU), r.median("pier", perCPU)
		fmt.Printf("  %-9s nginx %6.0f   Pier %6.0f   ratio %.2f×   (proxy CPU busy: nginx %.0f%%, Pier %.0f%%)\n", r.c.name, n, p, p/n,
			100*r.median("nginx", func(w wrkRun) float64 { return w.proxyCPU }), 100*r.median("pier", func(w wrkRun) float64 { return w.proxyCPU }))
	}
}

func perCPU(r wrkRun) float64 {
	if r.proxyCPU <= 0 {
		return 0
	}
	return r.rps / r.proxyCPU
}

// versions says what is measured: nginx's, wrk's and Go's versions.
func (e *routerEnv) versions() string {
	var v []string
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		v = append(v, strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
	}
	if out, _ := exec.Command("wrk", "-v").CombinedOutput(); len(out) > 0 {
		line, _, _ := strings.Cut(string(out), "\n")
		if f := strings.Fields(line); len(f) >= 2 {
			v = append(v, "wrk "+f[1])
		}
	}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		v = append(v, strings.TrimSpace(string(out)))
	}
	return strings.Join(v, ", ")
}

func (e *routerEnv) placement() string {
	if e.taskset == "" {
		return "not pinned (nginx: 1 worker; Pier: GOMAXPROCS=1)"
	}
	return "proxies on CPU " + proxyCPU + " (nginx: 1 worker; Pier: GOMAXPROCS=1), wrk and the backend (GOMAXPROCS=1) on CPU " + clientCPU
}
