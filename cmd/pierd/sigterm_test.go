package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMUnderLoad is acceptance point 6 of the router issue: SIGTERM
// under load, in-flight requests finish, and not one answer is a 5xx.
//
// The real `pierd all` serves an app (testdata/drain) whose /slow?ms=N
// answers after N ms and which, like a careless app, exits at once when it
// gets SIGTERM, noting in a file what it had served by then. Keep-alive
// clients request it through the router's public port in a loop; four
// 1.5 s requests are in the app when SIGTERM reaches pierd's whole process
// group, as Ctrl-C or `kill -TERM -PGID` sends it. Then:
//   - every request sent before the signal gets a complete 200 with its
//     body, the slow ones included, and no answer at any time is a 5xx;
//   - after the signal, requests fail only at the connection level
//     (refused, or closed before any answer);
//   - pierd exits 0 within its drain deadline;
//   - the app gets SIGTERM only after it answered every request: the
//     signal sent to pierd's group does not reach it, and pierd stops it
//     once the router has drained.
//
// Black box: HTTP on the public port, signals and the exit status, so it
// holds whatever serves the public port.
func TestSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pierd and Postgres, and builds an app")
	}
	// The app runs under its own uid when pierd is root: its note goes to
	// a directory anyone can enter and write (t.TempDir's parent is 0700).
	noteDir, err := os.MkdirTemp("", "pier-drain-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(noteDir) })
	if err := os.Chmod(noteDir, 0o777); err != nil {
		t.Fatal(err)
	}
	note := filepath.Join(noteDir, "sigterm.jsonl")

	// No internal listener: it is not needed here, and its default port
	// is for whichever pierd on this machine asks first.
	s := startStackInGroup(t, "PIER_INTERNAL_ADDR=off")
	r := s.newRepo("testdata/drain", "drain")
	s.c.must("", "config:set", "DRAIN_LOG="+note, "-a", "drain")
	if out := r.mustPush(); !strings.Contains(out, "Released v") {
		t.Fatalf("push:\n%s", out)
	}
	if got := s.body("drain", "/"); got != "fast" {
		t.Fatalf("the app serves %q", got)
	}

	routerAddr := strings.TrimPrefix(s.d.url, "http://")
	host := "drain.pier.localhost:" + s.httpPort()
	var (
		mu       sync.Mutex
		results  []*result
		signalAt time.Time // zero until SIGTERM is sent
	)
	record := func(res *result) {
		mu.Lock()
		results = append(results, res)
		mu.Unlock()
	}
	keepAlive := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
	}
	defer keepAlive.CloseIdleConnections()
	client := &http.Client{Transport: keepAlive, Timeout: 40 * time.Second}

	stop := make(chan struct{}) // closed once pierd has exited
	stopLoad := sync.OnceFunc(func() { close(stop) })
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }() // on every way out
	// Keep-alive workers: six send fast requests, and two send 250 ms
	// ones, so that some are always inside the app. Each pauses a little
	// between requests, more after a failure: the machine is shared.
	const fastWorkers, mediumWorkers = 6, 2
	for w := range fastWorkers + mediumWorkers {
		path := "/"
		if w >= fastWorkers {
			path = "/slow?ms=250"
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				res := do(client, routerAddr, host, path)
				record(res)
				if res.err != nil {
					time.Sleep(10 * time.Millisecond)
				} else {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	// Let the load run a moment, then start the long requests.
	time.Sleep(time.Second)
	const long = 4
	longDone := make(chan *result, long)
	for range long {
		go func() {
			res := do(client, routerAddr, host, "/slow?ms=1500")
			record(res)
			longDone <- res
		}()
	}
	// Signal only once the app itself says all four are in its hands.
	probe := &http.Transport{DisableKeepAlives: true}
	eventually(t, 10*time.Second, "the long requests are in the app", func() (bool, string) {
		res := do(&http.Client{Transport: probe, Timeout: 5 * time.Second}, routerAddr, host, "/inflight?ms=1500")
		return res.err == nil && res.status == 200 && res.body == fmt.Sprint(long), fmt.Sprintf("%d %q %v", res.status, res.body, res.err)
	})

	// SIGTERM to pierd's process group, and new connections after it.
	pid := s.d.cmd.Process.Pid
	mu.Lock()
	signalAt = time.Now()
	mu.Unlock()
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 40 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			res := do(fresh, routerAddr, host, "/")
			res.fresh = true
			record(res)
		}
	})
	var exitErr error
	select {
	case exitErr = <-s.d.done:
	case <-time.After(60 * time.Second):
		s.d.cmd.Process.Kill()
		t.Fatalf("pierd did not exit within 60 s of SIGTERM:\n%s", s.d.out)
	}
	exited := time.Now()
	stopLoad()
	wg.Wait()
	for range long {
		<-longDone // recorded, and checked with the rest
	}
	t.Logf("pierd exited %.2fs after SIGTERM: %v", exited.Sub(signalAt).Seconds(), exitErr)
	if out := s.d.out.String(); strings.Contains(out, "Shutting down") {
		var shown []string
		for _, l := range strings.Split(out[strings.LastIndex(out, "Shutting down"):], "\n") {
			if l != "" && !strings.Contains(l, "msg=access") {
				shown = append(shown, "  "+l)
			}
		}
		t.Logf("pierd's output from the signal on, but for its access log:\n%s", strings.Join(shown, "\n"))
	}
	if exitErr != nil {
		t.Errorf("pierd exited with %v after SIGTERM, want status 0", exitErr)
	}

	// Every answer, at any time: a complete 200 with the right body.
	// Before the signal (less a grace for requests written while pierd was
	// being signalled: a request on a kept-alive connection that the
	// server closes as idle before reading it is the one race HTTP/1.1
	// leaves, and it ends at the connection level) nothing may fail at
	// all; after it, only at the connection level.
	const grace = 50 * time.Millisecond
	var (
		before, after, inFlight, freshOK              int
		refused, closedEarly, raced, longOK, mediumOK int
		failed                                        int
		failures                                      []string
		lastInFlightEnd                               time.Time
	)
	fail := func(res *result, why string) {
		failed++
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf("%s %s (started %+.3fs, ended %+.3fs from the signal): %s",
				res.path, map[bool]string{true: "on a new connection", false: "kept alive"}[res.fresh],
				res.start.Sub(signalAt).Seconds(), res.end.Sub(signalAt).Seconds(), why))
		}
	}
	for _, res := range results {
		switch {
		case res.err != nil:
			var ne net.Error
			switch {
			case errors.As(res.err, &ne) && ne.Timeout():
				fail(res, "timed out: "+res.err.Error())
			case res.start.Before(signalAt.Add(-grace)):
				fail(res, "no answer before the signal: "+res.err.Error())
			case errors.Is(res.err, syscall.ECONNREFUSED):
				refused++
			case res.start.Before(signalAt):
				raced++
			default:
				closedEarly++
			}
			continue
		case res.status >= 500:
			fail(res, fmt.Sprintf("a 5xx: %d %q", res.status, res.body))
		case res.status != 200:
			fail(res, fmt.Sprintf("%d %q", res.status, res.body))
		case res.bodyErr != nil:
			fail(res, fmt.Sprintf("%d, then the body broke off after %q: %v", res.status, res.body, res.bodyErr))
		case res.body != wantBody(res.path):
			fail(res, fmt.Sprintf("body %q, want %q", res.body, wantBody(res.path)))
		}
		if res.status != 200 || res.bodyErr != nil {
			continue
		}
		switch res.path {
		case "/slow?ms=1500":
			longOK++
		case "/slow?ms=250":
			mediumOK++
		}
		switch {
		case res.end.Before(signalAt):
			before++
		case res.start.Before(signalAt):
			inFlight++
			if res.end.After(lastInFlightEnd) {
				lastInFlightEnd = res.end
			}
		default:
			after++
			if res.fresh {
				freshOK++
			}
		}
	}
	t.Logf("%d requests: %d answered before SIGTERM, %d in flight at SIGTERM and answered (%d of them 1.5 s long), %d sent after it and answered (%d on new connections); after it, %d refused, %d closed before any answer, %d written within %s before it and closed unanswered",
		len(results), before, inFlight, longOK, after, freshOK, refused, closedEarly, raced, grace)
	if failed > 0 {
		t.Errorf("%d requests went wrong, first:\n%s", failed, strings.Join(failures, "\n"))
	}
	if longOK != long {
		t.Errorf("%d of the %d long requests in flight at SIGTERM were answered", longOK, long)
	}
	if refused == 0 {
		t.Errorf("no new connection was refused between SIGTERM and pierd's exit: was the listener closed while draining?")
	}

	// The app was stopped, with SIGTERM, only after it had answered every
	// request: nothing in flight, and as many answers as the clients got.
	b, err := os.ReadFile(note)
	if err != nil {
		t.Fatalf("the app left no note of a SIGTERM (was it killed, or never stopped?): %v\n%s", err, s.d.out)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var got struct {
		Inflight int            `json:"inflight"`
		Done     map[string]int `json:"done"`
		At       int64          `json:"at"`
	}
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &got) != nil {
		t.Fatalf("the app's note: want one SIGTERM, got:\n%s", b)
	}
	stoppedAt := time.UnixMilli(got.At)
	t.Logf("the app got SIGTERM %.2fs after pierd did, %d ms after the last in-flight answer, with %d requests in flight; it had answered %v",
		stoppedAt.Sub(signalAt).Seconds(), stoppedAt.Sub(lastInFlightEnd).Milliseconds(), got.Inflight, got.Done)
	if got.Inflight != 0 || got.Done["1500"] != long || got.Done["250"] != mediumOK {
		t.Errorf("the app was stopped with %d requests in flight, having answered %v; the clients got %d long and %d 250 ms answers",
			got.Inflight, got.Done, long, mediumOK)
	}
	// pierd's own record agrees, where it keeps one.
	if m := regexp.MustCompile(`(?m)^.*msg=access .*status=5\d\d.*$`).FindAllString(s.d.out.String(), 5); m != nil {
		t.Errorf("pierd's access log has 5xx answers:\n%s", strings.Join(m, "\n"))
	}
}

// result is what one request through the router came to.
type result struct {
	path       string
	fresh      bool // sent on a new connection by the post-signal prober
	start, end time.Time
	status     int
	body       string
	err        error // no answer at all
	bodyErr    error // an answer that broke off
}

func wantBody(path string) string {
	switch path {
	case "/":
		return "fast"
	case "/slow?ms=250":
		return "slow 250"
	case "/slow?ms=1500":
		return "slow 1500"
	}
	return ""
}

// do sends GET path to the router at addr with the app's host name.
func do(client *http.Client, addr, host, path string) *result {
	res := &result{path: path, start: time.Now()}
	defer func() { res.end = time.Now() }()
	req, err := http.NewRequestWithContext(context.Background(), "GET", "http://"+addr+path, nil)
	if err != nil {
		res.err = err
		return res
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		res.err = err
		return res
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	b, err := io.ReadAll(resp.Body)
	res.body, res.bodyErr = strings.TrimSpace(string(b)), err
	return res
}

// startStackInGroup is startStack with pierd in a process group of its
// own, so that the test can signal the group as a terminal does.
func startStackInGroup(t *testing.T, env ...string) *stack {
	t.Helper()
	return newStack(t, &syscall.SysProcAttr{Setpgid: true}, env...)
}
