package bench

import (
	"bufio"
	"context"
	"encoding/json"
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
	"time"

	"github.com/pierpaas/pier/client"
	"github.com/pierpaas/pier/internal/testenv"
)

// propagationTarget is the router issue's bound: a change takes effect
// within 250 ms p99.
const propagationTarget = 250 * time.Millisecond

var routerListening = regexp.MustCompile(`Router listening on (127\.0\.0\.1:\d+)`)

// BenchmarkPropagation measures how long a routing change takes to reach
// the routers: N times (PIER_BENCH_PROPAGATION_N, default 50), a custom
// domain is added to a deployed app through the API (client.AddDomain),
// and from the moment the call returns, both routers are asked for the new
// host every millisecond until they serve it (200):
//
//   - all: the router inside pierd all (Postgres NOTIFY → its watch);
//   - standalone: a `pierd router` process following pierd all's
//     internal listener with a router service token (Postgres NOTIFY →
//     the controller's feed → the stream → the router).
//
// It prints p50, p99 and max of each against the 250 ms target, and
// reports them as metrics. Nothing is asserted: see README.md for the
// numbers measured. Run it with `make bench-propagation`.
func BenchmarkPropagation(b *testing.B) {
	n := 50
	if v := os.Getenv("PIER_BENCH_PROPAGATION_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("PIER_BENCH_PROPAGATION_N=%q: give a positive number", v)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	internal := ln.Addr().String()
	ln.Close()
	b.Setenv("PIER_INTERNAL_ADDR", internal) // pierd all (startPierd) inherits it
	e := newPushEnv(b)

	// A shell app: deployed in seconds, no compiler.
	os.RemoveAll(e.src)
	copyDir(b, filepath.Join("..", "builder", "host", "testdata", "procfile-shell"), e.src)
	e.git(b, "init", "-q", "-b", "main")
	e.git(b, "add", ".")
	e.git(b, "commit", "-q", "-m", "first")
	e.createApp(b)
	if out, err := e.gitCmd("push", "pier", "main").CombinedOutput(); err != nil {
		b.Fatalf("git push: %v\n%s", err, out)
	}

	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(e.pier(b, "", "service-tokens:create", "--scope", "router", "--json")), &tok); err != nil || tok.Token == "" {
		b.Fatalf("service token: %v", err)
	}
	tokenFile := filepath.Join(e.dir, "router.token")
	if err := os.WriteFile(tokenFile, []byte(tok.Token), 0o600); err != nil {
		b.Fatal(err)
	}
	standalone := startStandaloneRouter(b, e.bin, "--controller-internal", "http://"+internal, "--token-file", tokenFile,
		"--controller-url", e.url, "--domain", "pier.localhost", "--listen", "127.0.0.1:0", "--access-log=false")
	all := strings.TrimPrefix(e.url, "http://")

	var cfg struct{ Token string }
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(e.home, "pier", "config.json"))
	if err == nil {
		err = json.Unmarshal(raw, &cfg)
	}
	if err != nil || cfg.Token == "" {
		b.Fatalf("the CLI's token: %v", err)
	}
	api := client.New(e.url, cfg.Token)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	serves := func(addr, host string) bool {
		req, _ := http.NewRequest("GET", "http://"+addr+"/hello.txt", nil)
		req.Host = host
		res, err := hc.Do(req)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode == 200
	}
	// Both routers serve the app before the clock starts.
	deadline := time.Now().Add(30 * time.Second)
	for !serves(all, "hello.pier.localhost") || !serves(standalone, "hello.pier.localhost") {
		if time.Now().After(deadline) {
			b.Fatalf("the routers do not serve the app:\n%s", e.out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var tAll, tStandalone []time.Duration
	b.ResetTimer()
	for range b.N {
		tAll, tStandalone = tAll[:0], tStandalone[:0]
		for i := range n {
			host := fmt.Sprintf("p%d-%d.propagation.test", time.Now().UnixNano(), i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := api.AddDomain(ctx, "hello", host); err != nil {
				cancel()
				b.Fatalf("domains:add %s: %v", host, err)
			}
			cancel()
			start := time.Now()
			var dAll, dStandalone time.Duration
			for dAll == 0 || dStandalone == 0 {
				if time.Since(start) > 10*time.Second {
					b.Fatalf("%s not served after 10 s (all %s, standalone %s)", host, dAll, dStandalone)
				}
				if dAll == 0 && serves(all, host) {
					dAll = time.Since(start)
				}
				if dStandalone == 0 && serves(standalone, host) {
					dStandalone = time.Since(start)
				}
				time.Sleep(time.Millisecond)
			}
			tAll, tStandalone = append(tAll, dAll), append(tStandalone, dStandalone)
		}
	}
	b.StopTimer()
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"all", tAll}, {"standalone", tStandalone}} {
		slices.Sort(r.d)
		p50, p99, mx := pct(r.d, 50), pct(r.d, 99), r.d[len(r.d)-1]
		verdict := "within"
		if p99 > propagationTarget {
			verdict = "OVER"
		}
		fmt.Printf("propagation %-10s n=%d  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms  (%s the %s p99 target)\n",
			r.name, len(r.d), ms(p50), ms(p99), ms(mx), verdict, propagationTarget)
		b.ReportMetric(ms(p50), r.name+"-p50-ms")
		b.ReportMetric(ms(p99), r.name+"-p99-ms")
	}
}

// pct is the p-th percentile of sorted d (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	i := (len(d)*p + 99) / 100
	return d[max(i-1, 0)]
}

// startStandaloneRouter runs `pierd router args...` until the benchmark
// ends and returns its HTTP address.
func startStandaloneRouter(tb testing.TB, bin string, args ...string) string {
	tb.Helper()
	out := &testenv.Buffer{}
	cmd := exec.Command(filepath.Join(bin, "pierd"), append([]string{"router"}, args...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = io.MultiWriter(out, pw), out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
		if tb.Failed() {
			tb.Logf("pierd router output:\n%s", out)
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := routerListening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			tb.Fatalf("pierd router exited:\n%s", out)
		}
		go io.Copy(io.Discard, pr)
		return addr
	case <-time.After(time.Minute):
		tb.Fatalf("pierd router did not start:\n%s", out)
	}
	return ""
}
