package sandbox_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pierpaas/pier/internal/sandbox"
)

// bin is a copy of this test binary that any uid can run.
var bin string

func TestMain(m *testing.M) {
	sandbox.Main()
	switch os.Getenv("SANDBOX_TEST") {
	case "outer":
		outer()
		return
	case "probe":
		probe()
		return
	}
	dir, err := os.MkdirTemp("", "pier-sandbox-bin-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	bin = filepath.Join(dir, "probe")
	in, _ := os.Open(self)
	out, _ := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE, 0o755)
	io.Copy(out, in)
	in.Close()
	out.Close()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// outer plays pierd without root: it runs the probe sandboxed (or not,
// SANDBOX=off) in the data dir's app dir.
func outer() {
	data := os.Getenv("DATA")
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = []string{"SANDBOX_TEST=probe", "DATA=" + data}
	cmd.Dir = filepath.Join(data, "app")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if os.Getenv("SANDBOX") != "off" {
		if err := sandbox.Wrap(cmd, sandbox.Spec{Hide: []string{data}, Keep: []string{filepath.Join(data, "app"), filepath.Dir(self)}, PrivateTmp: true}); err != nil {
			fmt.Println("wrap:", err)
			os.Exit(1)
		}
	}
	if err := cmd.Run(); err != nil {
		fmt.Println("run:", err)
		os.Exit(1)
	}
}

// probe is app code: it reports what it can reach.
func probe() {
	data := os.Getenv("DATA")
	report := func(what string, b []byte, err error) {
		if err != nil {
			fmt.Printf("%s: refused: %v\n", what, err)
			return
		}
		fmt.Printf("%s: read %q\n", what, b)
	}
	b, err := os.ReadFile(filepath.Join(data, "admin-password"))
	report("secret", b, err)
	b, err = os.ReadFile("../admin-password")
	report("secret via ..", b, err)
	b, err = os.ReadFile(filepath.Join(data, "app", "own"))
	report("own", b, err)
	ents, _ := os.ReadDir(data)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	fmt.Printf("list: %s\n", strings.Join(names, ","))
	procs, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	fmt.Printf("pids: %d\n", n)
	fmt.Printf("uid: %d\n", os.Getuid())
}

// Finding 4 of issue 14: without root, every app ran as pierd's own user
// and read pierd's data dir (admin-password, postgres-password, the SSH
// host key). Sandboxed, app code of the same uid cannot read or list the
// data dir, even through ".." from its working dir, sees only its own
// processes, and still reads its own dir and runs as its uid.
func TestNonRootAppCannotReadDataDir(t *testing.T) {
	uid := os.Getuid()
	if uid == 0 {
		uid = 100777 // pierd without root: a uid of its own
	}
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	for d := base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's parents are 0700
	}
	data := filepath.Join(base, "data")
	os.MkdirAll(filepath.Join(data, "app"), 0o700)
	os.WriteFile(filepath.Join(data, "admin-password"), []byte("the admin's password"), 0o600)
	os.WriteFile(filepath.Join(data, "app", "own"), []byte("its own file"), 0o600)
	if os.Getuid() == 0 {
		for _, p := range []string{data, filepath.Join(data, "app"), filepath.Join(data, "admin-password"), filepath.Join(data, "app", "own")} {
			os.Chown(p, uid, uid)
		}
	}
	run := func(sandboxed bool) string {
		cmd := exec.Command(bin)
		cmd.Env = []string{"SANDBOX_TEST=outer", "DATA=" + data, "HOME=" + base}
		if !sandboxed {
			cmd.Env = append(cmd.Env, "SANDBOX=off")
		}
		if os.Getuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}

	// Without the sandbox, the app reads the secret: what the issue found.
	if out := run(false); !strings.Contains(out, `secret: read "the admin's password"`) {
		t.Fatalf("unsandboxed, the probe did not read the secret (the test is wrong):\n%s", out)
	}

	out := run(true)
	t.Logf("sandboxed:\n%s", out)
	for _, want := range []string{
		"secret: refused",
		"secret via ..: refused",
		`own: read "its own file"`,
		"list: app\n",
		"pids: 2\n",
		fmt.Sprintf("uid: %d\n", uid),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sandboxed, want %q", want)
		}
	}
	if strings.Contains(out, "the admin's password") {
		t.Error("the sandboxed app reached the data dir's secret")
	}
}
