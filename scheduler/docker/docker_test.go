package docker

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

var (
	cnbTypes   = map[string]string{"web": "server web", "worker": "server worker"}
	plainTypes = map[string]string{"web": "", "worker": "/server worker"}
)

// TestDocker runs every test against one Docker daemon, with images built
// once; the apps' tests run in parallel, each with its own app.
func TestDocker(t *testing.T) {
	cli := testenv.Docker(t)
	imgs := buildImages(t, cli)
	s := newScheduler(t, cli)

	// Sequential first: they make their own schedulers over the daemon,
	// which adopt every Pier container there.
	t.Run("adopted after a restart of pierd", func(t *testing.T) { testRestartOfPierd(t, cli, imgs) })
	t.Run("pulled with Pier's registry credentials", func(t *testing.T) { testPull(t, cli, imgs) })

	t.Run("CNB image", func(t *testing.T) { t.Parallel(); testCNB(t, s, cli, imgs) })
	t.Run("plain image", func(t *testing.T) { t.Parallel(); testPlain(t, s, cli, imgs) })
	t.Run("zero-downtime swap and failed rollouts", func(t *testing.T) { t.Parallel(); testSwap(t, s, cli, imgs) })
	t.Run("refused deployments", func(t *testing.T) { t.Parallel(); testRefused(t, s, imgs) })
}

func testCNB(t *testing.T, s *Scheduler, cli dockerClient, imgs testImages) {
	const app = "cnbapp"
	cleanupApp(t, cli, app)
	d := deployment(app, 1, imgs.cnb, pier.StrategyPack, cnbTypes, pier.Formation{"web": 2, "worker": 1}, pier.Config{"FOO": "bar baz"})
	apply(t, s, d)
	before := waitContainers(t, cli, app, "web.1@v1", "web.2@v1", "worker.1@v1")

	routes := s.Routes()[app]
	if len(routes) != 2 {
		t.Fatalf("routes of %s: %v, want 2", app, routes)
	}
	for _, addr := range routes {
		code, body, err := get(addr, "/")
		if err != nil || code != 200 {
			t.Fatalf("GET %s: %d %q %v", addr, code, body, err)
		}
		in := getInfo(t, addr)
		if in.UID != 1000 {
			t.Errorf("web runs as uid %d, want the image's CNB user 1000", in.UID)
		}
		if "127.0.0.1:"+in.env("PORT") != addr || in.env("FOO") != "bar baz" {
			t.Errorf("web at %s got PORT=%q FOO=%q", addr, in.env("PORT"), in.env("FOO"))
		}
	}

	// What the containers are, as the daemon says.
	for key, id := range before {
		ci, err := cli.ContainerInspect(ctxT(t, 10*time.Second), id)
		if err != nil {
			t.Fatal(err)
		}
		typ, idx, _ := strings.Cut(strings.Split(key, "@")[0], ".")
		l := ci.Config.Labels
		if l[LabelManagedBy] != "pier" || l[LabelApp] != app || l[LabelType] != typ || l[LabelIndex] != idx || l[LabelRelease] != "1" || l[LabelHash] == "" || l[LabelPort] == "" {
			t.Errorf("%s labels: %v", key, l)
		}
		if !slices.Contains(ci.Config.Env, "PORT="+l[LabelPort]) || !slices.Contains(ci.Config.Env, "FOO=bar baz") {
			t.Errorf("%s env lacks PORT or the config", key)
		}
		if want := []string{"/cnb/process/" + typ}; !slices.Equal(ci.Config.Entrypoint, want) {
			t.Errorf("%s entrypoint %v, want %v", key, ci.Config.Entrypoint, want)
		}
		hc := ci.HostConfig
		if !hc.NetworkMode.IsHost() || hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped ||
			!slices.Equal(hc.CapDrop, []string{"ALL"}) || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
			t.Errorf("%s host config: network %s, restart %v, cap drop %v, security %v", key, hc.NetworkMode, hc.RestartPolicy, hc.CapDrop, hc.SecurityOpt)
		}
		if !strings.HasPrefix(ci.Name, "/pier-"+app+"-"+typ+"-"+idx+"-v1-") {
			t.Errorf("container name %s", ci.Name)
		}
	}

	procs, err := s.Processes(ctxT(t, 10*time.Second), app)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 3 {
		t.Fatalf("processes: %+v", procs)
	}
	for _, p := range procs {
		if p.State != pier.ProcessUp || p.Release != 1 || p.StartedAt.IsZero() || (p.Type == "web") != (p.Addr != "") {
			t.Errorf("process %+v", p)
		}
	}
	apps, err := s.Apps(ctxT(t, 10*time.Second))
	if err != nil || !slices.Contains(apps, app) {
		t.Errorf("Apps: %v %v", apps, err)
	}

	// The same deployment again touches nothing.
	apply(t, s, d)
	if got := ids(t, cli, app); !maps(got, before) {
		t.Errorf("re-applying the same deployment changed containers: %v → %v", before, got)
	}

	// Logs: the tail of every container, merged.
	var tail []pier.LogLine
	err = s.Logs(ctxT(t, 10*time.Second), app, pier.LogOptions{Lines: 1000}, func(l pier.LogLine) error { tail = append(tail, l); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !hasLine(tail, "web.1", "listening on") || !hasLine(tail, "web.2", "listening on") || !hasLine(tail, "worker.1", "worker started as uid 1000") {
		t.Errorf("log tail lacks lines: %v", tail)
	}
	if !slices.IsSortedFunc(tail, func(a, b pier.LogLine) int { return a.Time.Compare(b.Time) }) {
		t.Errorf("log tail not in time order")
	}
	var two []pier.LogLine
	s.Logs(ctxT(t, 10*time.Second), app, pier.LogOptions{Lines: 2, Type: "web"}, func(l pier.LogLine) error { two = append(two, l); return nil })
	if len(two) != 2 || two[0].Process[:4] != "web." {
		t.Errorf("2 lines of web: %v", two)
	}
	// Scaling starts and stops only what it must.
	d.Formation = pier.Formation{"web": 3, "worker": 0}
	apply(t, s, d)
	got := waitContainers(t, cli, app, "web.1@v1", "web.2@v1", "web.3@v1")
	if got["web.1@v1"] != before["web.1@v1"] || got["web.2@v1"] != before["web.2@v1"] {
		t.Errorf("scaling up replaced web.1 or web.2")
	}
	eventually(t, "3 routes", func() bool { return len(s.Routes()[app]) == 3 })
	d.Formation = pier.Formation{"web": 1}
	apply(t, s, d)
	got = waitContainers(t, cli, app, "web.1@v1")
	if got["web.1@v1"] != before["web.1@v1"] {
		t.Errorf("scaling down replaced web.1")
	}
	if r := s.Routes()[app]; len(r) != 1 {
		t.Errorf("routes after scaling to 1: %v", r)
	}

	// Following, through a scale-up.
	testFollow(t, s, cli, d)

	// Restart replaces web with fresh containers, which serve.
	got = ids(t, cli, app)
	if err := s.Restart(ctxT(t, time.Minute), app, "web"); err != nil {
		t.Fatal(err)
	}
	after := waitContainers(t, cli, app, "web.1@v1", "web.2@v1")
	if after["web.1@v1"] == got["web.1@v1"] {
		t.Errorf("Restart kept web.1's container")
	}
	for _, addr := range s.Routes()[app] {
		if code, _, err := get(addr, "/"); err != nil || code != 200 {
			t.Errorf("after Restart, GET %s: %d %v", addr, code, err)
		}
	}
	if err := s.Restart(ctxT(t, time.Minute), app, "clock"); pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Errorf("Restart of a type not running: %v", err)
	}

	// One-off processes, through the CNB launcher.
	var out, errOut bytes.Buffer
	code, err := s.Run(ctxT(t, time.Minute), d, pier.RunOptions{Command: []string{"/server", "echo", "hello", "there"}, Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 || out.String() != "hello there\n" || errOut.String() != "to stderr\n" {
		t.Errorf("Run echo: code %d, err %v, stdout %q, stderr %q", code, err, out.String(), errOut.String())
	}
	code, err = s.Run(ctxT(t, time.Minute), d, pier.RunOptions{Command: []string{"/server", "exit", "7"}})
	if err != nil || code != 7 {
		t.Errorf("Run exit 7: code %d, err %v", code, err)
	}
	// A Run whose ctx ends is killed and removed.
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	code, err = s.Run(rctx, d, pier.RunOptions{Command: []string{"/server", "worker"}})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its ctx: code %d, err %v", code, err)
	}
	waitContainers(t, cli, app, "web.1@v1", "web.2@v1") // no one-off left

	// Limits replace the containers of their type.
	d.Formation = pier.Formation{"web": 2}
	d.Limits = map[string]pier.Limits{"web": {Memory: "64Mi", CPU: "500m"}}
	apply(t, s, d)
	now := waitContainers(t, cli, app, "web.1@v1", "web.2@v1")
	ci, err := cli.ContainerInspect(ctxT(t, 10*time.Second), now["web.1@v1"])
	if err != nil {
		t.Fatal(err)
	}
	if ci.HostConfig.Memory != 64<<20 || ci.HostConfig.NanoCPUs != 5e8 {
		t.Errorf("limits: memory %d, nano cpus %d", ci.HostConfig.Memory, ci.HostConfig.NanoCPUs)
	}

	if err := s.Destroy(ctxT(t, time.Minute), app); err != nil {
		t.Fatal(err)
	}
	if left := ids(t, cli, app); len(left) != 0 {
		t.Errorf("containers left after Destroy: %v", left)
	}
	if _, ok := s.Routes()[app]; ok {
		t.Errorf("routes of a destroyed app: %v", s.Routes()[app])
	}
	apps, _ = s.Apps(ctxT(t, 10*time.Second))
	if slices.Contains(apps, app) {
		t.Errorf("Apps after Destroy: %v", apps)
	}
}

// testFollow follows the logs of d's app (web=1 now) and checks that a
// line written after the follow started arrives, also from a container
// started later.
func testFollow(t *testing.T, s *Scheduler, cli dockerClient, d pier.Deployment) {
	ctx, cancel := context.WithCancel(ctxT(t, time.Minute))
	lines := make(chan pier.LogLine, 1000)
	done := make(chan error, 1)
	go func() {
		done <- s.Logs(ctx, d.App, pier.LogOptions{Lines: 1, Follow: true}, func(l pier.LogLine) error {
			lines <- l
			return nil
		})
	}()
	<-lines // the tail: the follow has started
	want := func(proc, text string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l := <-lines:
				if l.Process == proc && strings.Contains(l.Text, text) {
					if l.Time.IsZero() || time.Since(l.Time) > time.Minute {
						t.Errorf("line time %v", l.Time)
					}
					return
				}
			case <-timeout:
				t.Fatalf("no %s line %q while following", proc, text)
			}
		}
	}
	addr := s.Routes()[d.App][0]
	msg := "followed-" + randHex(4)
	if code, _, err := get(addr, "/log?msg="+msg); err != nil || code != 200 {
		t.Fatalf("GET /log: %d %v", code, err)
	}
	want("web.1", msg)
	d.Formation = pier.Formation{"web": 2}
	apply(t, s, d)
	want("web.2", "listening on")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Logs follow: %v", err)
	}
}

func hasLine(lines []pier.LogLine, proc, text string) bool {
	for _, l := range lines {
		if l.Process == proc && strings.Contains(l.Text, text) && l.App != "" && !l.Time.IsZero() {
			return true
		}
	}
	return false
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func testPlain(t *testing.T, s *Scheduler, cli dockerClient, imgs testImages) {
	const app = "plainapp"
	cleanupApp(t, cli, app)
	d := deployment(app, 3, imgs.plain, pier.StrategyImage, plainTypes, pier.Formation{"web": 1, "worker": 1}, pier.Config{"A": "1"})
	apply(t, s, d)
	got := waitContainers(t, cli, app, "web.1@v3", "worker.1@v3")
	routes := s.Routes()[app]
	if len(routes) != 1 {
		t.Fatalf("routes: %v", routes)
	}
	if in := getInfo(t, routes[0]); in.UID != 65534 || in.GID != 65534 {
		t.Errorf("an image without USER runs as %d:%d, want 65534:65534", in.UID, in.GID)
	}
	ci, err := cli.ContainerInspect(ctxT(t, 10*time.Second), got["worker.1@v3"])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/sh", "-c", "/server worker"}; !slices.Equal(ci.Config.Entrypoint, want) || ci.Config.User != nobody {
		t.Errorf("worker: entrypoint %v, user %q", ci.Config.Entrypoint, ci.Config.User)
	}
	ci, _ = cli.ContainerInspect(ctxT(t, 10*time.Second), got["web.1@v3"])
	if !slices.Equal(ci.Config.Entrypoint, []string{"/server"}) {
		t.Errorf("web without a command runs the image's entrypoint, got %v", ci.Config.Entrypoint)
	}

	var out bytes.Buffer
	code, err := s.Run(ctxT(t, time.Minute), d, pier.RunOptions{Command: []string{"/server", "echo", "a  b", "$HOME"}, Stdout: &out})
	if err != nil || code != 0 || out.String() != "a  b $HOME\n" {
		t.Errorf("Run, never through a shell: code %d, err %v, out %q", code, err, out.String())
	}
	out.Reset()
	code, err = s.Run(ctxT(t, time.Minute), d, pier.RunOptions{Command: []string{"/server", "cat"}, Stdin: strings.NewReader("from stdin\n"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "from stdin\n" {
		t.Errorf("Run with stdin: code %d, err %v, out %q", code, err, out.String())
	}
	code, err = s.Run(ctxT(t, time.Minute), d, pier.RunOptions{Command: []string{"/no/such/program"}})
	if err == nil || pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("Run of a missing program: code %d, err %v", code, err)
	}

	// A crashed web process leaves the routes, and comes back once Docker
	// has restarted it and it listens again.
	var wentAway atomic.Bool
	cancel := s.Subscribe(func() {
		if len(s.Routes()[app]) == 0 {
			wentAway.Store(true)
		}
	})
	defer cancel()
	// (docker kill would count as stopping it by hand: no restart.)
	get(routes[0], "/crash")
	eventually(t, "the route of the crashed web.1 to go and come back", func() bool {
		return wentAway.Load() && len(s.Routes()[app]) == 1
	})
	procs, err := s.Processes(ctxT(t, 10*time.Second), app)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.Type == "web" && p.Restarts != 1 {
			t.Errorf("web.1 after a crash: %+v", p)
		}
	}
	if code, _, err := get(s.Routes()[app][0], "/"); err != nil || code != 200 {
		t.Errorf("GET after restart: %d %v", code, err)
	}
	if err := s.Destroy(ctxT(t, time.Minute), app); err != nil {
		t.Fatal(err)
	}
}

// testSwap deploys v2 over v1 with requests to the current routes all the
// while, then releases that do not come up.
func testSwap(t *testing.T, s *Scheduler, cli dockerClient, imgs testImages) {
	const app = "swapapp"
	cleanupApp(t, cli, app)
	d1 := deployment(app, 1, imgs.plain, pier.StrategyImage, plainTypes, pier.Formation{"web": 2}, pier.Config{"VERSION": "one"})
	apply(t, s, d1)
	v1 := waitContainers(t, cli, app, "web.1@v1", "web.2@v1")

	var total, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				routes := s.Routes()[app]
				total.Add(1)
				if len(routes) == 0 {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, "no route")
					mu.Unlock()
					continue
				}
				code, body, err := get(routes[i%len(routes)], "/")
				if err != nil || code != 200 || !strings.HasPrefix(body, "ok ") {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, strconv.Itoa(code)+" "+body+" "+errString(err))
					mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	stopLoad := func() {
		close(stop)
		wg.Wait()
	}
	defer func() {
		select {
		case <-stop:
		default:
			stopLoad()
		}
	}()

	d2 := d1
	d2.Release.Version = 2
	d2.Release.Config = pier.Config{"VERSION": "two"}
	apply(t, s, d2)
	for _, addr := range s.Routes()[app] {
		if _, body, _ := get(addr, "/"); body != "ok two\n" {
			t.Errorf("after the swap %s answers %q", addr, body)
		}
	}
	v2 := waitContainers(t, cli, app, "web.1@v2", "web.2@v2")

	// v3 crashes on boot: v2 serves on, untouched, and the error says why.
	d3 := d2
	d3.Release.Version = 3
	d3.Release.Config = pier.Config{"VERSION": "three", "BOOT": "crash"}
	err := s.Apply(ctxT(t, time.Minute), d3)
	if !errors.Is(err, pier.ErrRolloutFailed) || !strings.Contains(err.Error(), "v3 did not come up") ||
		!strings.Contains(err.Error(), "crashed on boot") || !strings.Contains(err.Error(), "boot failure: DATABASE_URL is not reachable") ||
		!strings.Contains(err.Error(), "v2 keeps running") {
		t.Errorf("Apply of a release crashing on boot: %v", err)
	}
	if got := ids(t, cli, app); !maps(got, v2) {
		t.Errorf("a failed rollout changed containers: %v → %v", v2, got)
	}
	// v4 never listens: it fails after StartTimeout.
	d4 := d2
	d4.Release.Version = 4
	d4.Release.Config = pier.Config{"BOOT": "nolisten"}
	err = s.Apply(ctxT(t, time.Minute), d4)
	if !errors.Is(err, pier.ErrRolloutFailed) || !strings.Contains(err.Error(), "did not accept connections on its port within 4s") ||
		!strings.Contains(err.Error(), "thinking about listening") {
		t.Errorf("Apply of a release that never listens: %v", err)
	}
	if got := ids(t, cli, app); !maps(got, v2) {
		t.Errorf("a failed rollout changed containers: %v → %v", v2, got)
	}
	stopLoad()
	if failed.Load() > 0 || total.Load() < 50 {
		t.Errorf("%d of %d requests failed during the swap: %v", failed.Load(), total.Load(), failures[:min(len(failures), 10)])
	}
	t.Logf("%d requests during the swap and two failed rollouts, %d failed", total.Load(), failed.Load())
	_ = v1
	if err := s.Destroy(ctxT(t, time.Minute), app); err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func testRefused(t *testing.T, s *Scheduler, imgs testImages) {
	const app = "refusedapp"
	ctx := ctxT(t, time.Minute)
	host := deployment(app, 1, "/var/lib/pier/builds/1", pier.StrategyHost, cnbTypes, pier.Formation{"web": 1}, nil)
	if err := s.Apply(ctx, host); pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), "build with pack") {
		t.Errorf("host build: %v", err)
	}
	bad := deployment(app, 1, "Not/An:Image!", pier.StrategyImage, plainTypes, pier.Formation{"web": 1}, nil)
	if err := s.Apply(ctx, bad); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("bad image reference: %v", err)
	}
	for _, l := range []pier.Limits{{Memory: "lots"}, {Memory: "512m"}, {CPU: "-1"}, {CPU: "0"}} {
		d := deployment(app, 1, imgs.plain, pier.StrategyImage, plainTypes, pier.Formation{"web": 1}, nil)
		d.Limits = map[string]pier.Limits{"web": l}
		if err := s.Apply(ctx, d); pier.ErrorCode(err) != pier.EINVALID || !strings.HasPrefix(err.Error(), "web: ") {
			t.Errorf("limits %+v: %v", l, err)
		}
	}
	// A CNB image whose USER is root is refused.
	root := deployment(app, 1, imgs.plain, pier.StrategyPack, cnbTypes, pier.Formation{"web": 1}, nil)
	if err := s.Apply(ctx, root); pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), "USER is root") {
		t.Errorf("CNB image running as root: %v", err)
	}
	if _, err := s.Run(ctx, root, pier.RunOptions{Command: []string{"/server"}}); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("Run in a CNB image running as root: %v", err)
	}
	if _, err := s.Run(ctx, root, pier.RunOptions{}); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("Run without a command: %v", err)
	}
	if s.CanRunImages() != nil {
		t.Errorf("CanRunImages: %v", s.CanRunImages())
	}
	if procs, err := s.Processes(ctx, app); err != nil || len(procs) != 0 {
		t.Errorf("processes of a refused app: %v %v", procs, err)
	}
}

func testRestartOfPierd(t *testing.T, cli dockerClient, imgs testImages) {
	const app = "adoptapp"
	cleanupApp(t, cli, app)
	d := deployment(app, 2, imgs.cnb, pier.StrategyPack, cnbTypes, pier.Formation{"web": 2, "worker": 1}, pier.Config{"K": "v"})
	first := newScheduler(t, cli)
	apply(t, first, d)
	before := waitContainers(t, cli, app, "web.1@v2", "web.2@v2", "worker.1@v2")
	routes := first.Routes()[app]
	if err := first.Shutdown(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, addr := range routes {
		if code, _, err := get(addr, "/"); err != nil || code != 200 {
			t.Errorf("after Shutdown the app no longer serves: %d %v", code, err)
		}
	}

	// Another Pier on the same daemon leaves this one's containers alone.
	other := newInstance(t, cli, "other-"+randHex(4))
	if apps, err := other.Apps(ctxT(t, 10*time.Second)); err != nil || slices.Contains(apps, app) {
		t.Errorf("another instance lists %v (%v): it sees %s", apps, err, app)
	}
	if err := other.Destroy(ctxT(t, 30*time.Second), app); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, cli, app); !maps(got, before) || len(other.Routes()[app]) != 0 {
		t.Errorf("another instance's Destroy touched the app's containers: %v → %v", before, got)
	}

	second := newScheduler(t, cli)
	eventually(t, "the adopted web processes to be routed", func() bool { return len(second.Routes()[app]) == 2 })
	if got := second.Routes()[app]; !slices.Equal(got, routes) {
		t.Errorf("routes after the restart %v, before %v", got, routes)
	}
	apply(t, second, d)
	if got := ids(t, cli, app); !maps(got, before) {
		t.Errorf("Apply of the same deployment after a restart changed containers: %v → %v", before, got)
	}
	eventually(t, "worker.1 up", func() bool {
		procs, err := second.Processes(ctxT(t, 10*time.Second), app)
		if err != nil || len(procs) != 3 {
			return false
		}
		for _, p := range procs {
			if p.State != pier.ProcessUp || p.Release != 2 {
				return false
			}
		}
		return true
	})
	// Scaling after the restart keeps the adopted containers.
	d.Formation = pier.Formation{"web": 1, "worker": 1}
	apply(t, second, d)
	got := waitContainers(t, cli, app, "web.1@v2", "worker.1@v2")
	if got["web.1@v2"] != before["web.1@v2"] || got["worker.1@v2"] != before["worker.1@v2"] {
		t.Errorf("scaling after a restart replaced containers")
	}
	if err := second.Destroy(ctxT(t, time.Minute), app); err != nil {
		t.Fatal(err)
	}
}
