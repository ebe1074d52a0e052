package local_test

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
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/scheduler/local"
)

// helperBin is a copy of this test binary in a directory any uid can reach:
// app processes run under an unprivileged uid when the tests run as root,
// and go test's own build directory is private to root.
var helperBin string

func TestMain(m *testing.M) {
	if mode := os.Getenv("PIER_TEST_HELPER"); mode != "" {
		helperMain(mode)
		return
	}
	dir, err := os.MkdirTemp("", "pier-local-bin-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	helperBin = filepath.Join(dir, "app")
	if err := copyFile(self, helperBin); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Close()
}

// identity is what the test app reports about itself at /env.
type identity struct {
	PID   int               `json:"pid"`
	Child int               `json:"child"`
	UID   int               `json:"uid"`
	Dir   string            `json:"dir"`
	Args  []string          `json:"args"`
	Env   map[string]string `json:"env"`
}

// helperMain is the test app. Its behaviour comes from the release config
// (MODE), as a real app's would.
func helperMain(mode string) {
	env := map[string]string{}
	for _, k := range []string{"PORT", "DYNO", "GREETING", "SECRET", "MODE", "HOME", "PATH", "VERSION"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	switch mode {
	case "sleep":
		// The child of a web process (MODE=child), in its process group.
		time.Sleep(time.Hour)
		return
	case "run":
		fmt.Println("args", os.Args[1:], "greeting", os.Getenv("GREETING"))
		in, _ := io.ReadAll(os.Stdin)
		fmt.Fprintf(os.Stderr, "stdin %q\n", in)
		code, _ := strconv.Atoi(os.Args[len(os.Args)-1])
		os.Exit(code)
	case "worker":
		for i := 0; ; i++ {
			fmt.Printf("tick %d\n", i)
			time.Sleep(20 * time.Millisecond)
		}
	case "supervisor":
		superviseMain()
		return
	case "hijack", "dial":
		isolationMain(mode)
		return
	case "hog", "forkbomb":
		limitsMain(mode)
		return
	}
	// web
	switch os.Getenv("MODE") {
	case "crash":
		fmt.Fprintln(os.Stderr, "boom: cannot reach the database")
		os.Exit(1)
	case "noport":
		time.Sleep(time.Hour)
	}
	id := identity{PID: os.Getpid(), UID: os.Getuid(), Args: os.Args, Env: env}
	id.Dir, _ = os.Getwd()
	if os.Getenv("MODE") == "child" {
		c := exec.Command(os.Args[0])
		c.Env = []string{"PIER_TEST_HELPER=sleep"}
		if err := c.Start(); err == nil {
			id.Child = c.Process.Pid
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(id) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", os.Getenv("DYNO"), os.Getenv("VERSION"))
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	fmt.Println("listening on", os.Getenv("PORT"))
	if os.Getenv("MODE") == "crash-once" {
		// Crashes after serving, the first time only (its working dir
		// outlives restarts); later runs wait for the port to be free, as
		// an app that retries its bind does.
		marker := filepath.Join(os.Getenv("HOME"), "crashed-once")
		if _, err := os.Stat(marker); err != nil {
			os.WriteFile(marker, nil, 0o600)
			go func() {
				time.Sleep(300 * time.Millisecond)
				fmt.Println("crashing now")
				os.Exit(3)
			}()
		} else {
			serveRetrying(srv)
			return
		}
	}
	if os.Getenv("MODE") == "close-listener" {
		// Serves until $HOME/close appears, then closes its listener and
		// stays alive (a port anyone can take), and listens again once
		// $HOME/rebind appears.
		l, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		go srv.Serve(l)
		awaitFile(filepath.Join(os.Getenv("HOME"), "close"))
		l.Close()
		fmt.Println("closed my listener")
		awaitFile(filepath.Join(os.Getenv("HOME"), "rebind"))
		serveRetrying(srv)
		return
	}
	if os.Getenv("MODE") == "crash-after" {
		go func() {
			time.Sleep(300 * time.Millisecond)
			fmt.Println("crashing now")
			os.Exit(3)
		}()
	}
	// A graceful stop on SIGTERM, as a well-behaved app does: in-flight
	// requests finish.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Println("SIGTERM: shutting down")
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// awaitFile returns once path exists.
func awaitFile(path string) {
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// superviseMain plays pierd: it runs a scheduler with one web process (in
// the MODE given as APP_MODE), prints the process's pid and its child's (0
// when it has none) and waits to be killed.
func superviseMain() {
	var cfg pier.Config
	if m := os.Getenv("APP_MODE"); m != "" {
		cfg = pier.Config{"MODE": m}
	}
	s, err := local.New(local.Config{DataDir: os.Getenv("DATA_DIR"), Launch: launch})
	if err != nil {
		panic(err)
	}
	if err := s.Apply(context.Background(), deployment("orphan", 1, pier.Formation{"web": 1}, cfg)); err != nil {
		panic(err)
	}
	ps, _ := s.Processes(context.Background(), "orphan")
	id := getIdentity(ps[0].Addr)
	fmt.Println(id.PID, id.Child)
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// startSupervisor runs superviseMain on dir in a process of its own, to be
// killed as pierd can be, and returns it with the pids of its web process
// and of that process's child.
func startSupervisor(t *testing.T, dir, appMode string) (sup *exec.Cmd, pid, child int) {
	t.Helper()
	cmd := exec.Command(helperBin)
	cmd.Env = []string{"PIER_TEST_HELPER=supervisor", "DATA_DIR=" + dir, "APP_MODE=" + appMode}
	stdin, _ := cmd.StdinPipe()
	t.Cleanup(func() { stdin.Close() })
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var line []byte
	buf := make([]byte, 1)
	for {
		if _, err := out.Read(buf); err != nil || buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
	}
	if _, err := fmt.Sscan(string(line), &pid, &child); err != nil || !alive(pid) {
		t.Fatalf("supervisor said %q", line)
	}
	return cmd, pid, child
}

func launch(d pier.Deployment, typ string) (*exec.Cmd, error) {
	cmd := exec.Command(helperBin)
	if helperBin == "" {
		cmd = exec.Command(os.Args[0])
	}
	cmd.Env = []string{"PIER_TEST_HELPER=" + typ}
	return cmd, nil
}

func deployment(app string, v int, f pier.Formation, cfg pier.Config) pier.Deployment {
	c := pier.Config{"VERSION": "v" + strconv.Itoa(v)}
	for k, val := range cfg {
		c[k] = val
	}
	return pier.Deployment{App: app, UID: appUID(app), Release: pier.Release{App: app, Version: v, Config: c}, Formation: f}
}

// appUID stands in for the store: each app name of a test process gets a
// uid of the default range of its own, the same every time.
func appUID(app string) int {
	testUIDs.Lock()
	defer testUIDs.Unlock()
	if testUIDs.m == nil {
		testUIDs.m = map[string]int{}
	}
	if _, ok := testUIDs.m[app]; !ok {
		testUIDs.m[app] = 100001 + len(testUIDs.m)
	}
	return testUIDs.m[app]
}

var testUIDs struct {
	sync.Mutex
	m map[string]int
}

func getIdentity(addr string) identity {
	var id identity
	resp, err := http.Get("http://" + addr + "/env")
	if err != nil {
		return id
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&id)
	return id
}

// newScheduler gives a test its own scheduler and data dir, shut down and
// removed when the test ends.
func newScheduler(t *testing.T, mod ...func(*local.Config)) (*local.Scheduler, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pier-local-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	cfg := local.Config{
		DataDir:           dir,
		Launch:            launch,
		StartTimeout:      5 * time.Second,
		StopGrace:         2 * time.Second,
		UpAfter:           100 * time.Millisecond,
		RestartBackoff:    20 * time.Millisecond,
		MaxRestartBackoff: 200 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := local.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		os.RemoveAll(dir)
	})
	return s, dir
}

// eventually polls cond for a bounded time; it asserts an outcome, not a
// duration.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive says whether pid is a live process (a zombie is dead).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return true
}
