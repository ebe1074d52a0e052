package main_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier/internal/testenv"
)

// TestCompose is the single-host install's smoke test: in a fresh copy of
// the repository, docker-compose.yml validates, builds pierd's image from
// the Dockerfile and brings up Postgres, the registry and pierd (images made
// here: nothing is pulled); then the README's steps: register with the
// bootstrap token, add a key, create an app, git push the Go sample over
// SSH and get it through the router. Recreating pierd, as an upgrade does,
// keeps the user and the app. Run it alone, with a long timeout: a cold
// build of pierd's image takes minutes.
//
//	go test -count=1 -timeout 30m -run TestCompose ./cmd/pierd/ -v
func TestCompose(t *testing.T) {
	skipShort(t)
	testenv.Docker(t)
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-compose is not installed (CI=true: not skipping): apt-get install docker-compose")
		}
		t.Skip("\n\n*** SKIPPING the compose smoke test: docker-compose is not installed (apt-get install docker-compose) ***\n\n")
	}
	times := &phases{t: t, last: time.Now()}
	t.Cleanup(times.report)

	// The images the compose file's parameters name, made locally.
	imgs := testenv.MakeComposeImages(t)
	builder := testenv.BuilderImage(t)
	times.done("images (Postgres, registry, RUN_IMAGE, BUILD_IMAGE, CNB builder)")

	// A checkout as a user has it, with vendor/ so that the image builds
	// offline, and the secrets as the README makes them.
	dir := checkoutCopy(t)
	times.done("copy of the repository and go mod vendor")
	run(t, dir, nil, "deploy/compose/make-secrets")
	secrets := map[string]string{}
	for _, name := range []string{"postgres-password", "registry-password"} {
		b, err := os.ReadFile(filepath.Join(dir, "deploy/compose/secrets", name))
		if err != nil || len(strings.TrimSpace(string(b))) < 16 {
			t.Fatalf("make-secrets wrote no %s: %v %q", name, err, b)
		}
		secrets[name] = strings.TrimSpace(string(b))
	}

	// pierd's container gets the socket of the daemon the tests use.
	socket := "/var/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		socket = h
	}
	var st syscall.Stat_t
	if err := syscall.Stat(socket, &st); err != nil {
		t.Fatalf("the compose file mounts the Docker socket %s: %v", socket, err)
	}
	httpPort, sshPort := freePort(t), freePort(t)
	env := map[string]string{
		"DOCKER_SOCKET":      socket,
		"DOCKER_GID":         fmt.Sprint(st.Gid),
		"PIER_HTTP_PORT":     httpPort,
		"PIER_SSH_PORT":      sshPort,
		"PIER_POSTGRES_PORT": freePort(t),
		"PIER_REGISTRY_PORT": freePort(t),
		// Not the default range: other packages' tests run docker
		// schedulers at the same time.
		"PIER_PROCESS_PORTS":  "27000-27999",
		"PIER_BUILDER":        builder,
		"PIER_IMAGE":          "pier-test/pierd:compose",
		"PIER_BUILD_IMAGE":    imgs.Build,
		"PIER_RUN_IMAGE":      imgs.Run,
		"PIER_GOFLAGS":        "-mod=vendor",
		"PIER_POSTGRES_IMAGE": imgs.Postgres,
		"PIER_REGISTRY_IMAGE": imgs.Registry,
	}
	// The .env file the README has the operator write.
	var dotenv strings.Builder
	for k, v := range env {
		fmt.Fprintf(&dotenv, "%s=%s\n", k, v)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	project := "piercompose" + randomHex(t, 4)
	// dc runs docker-compose and returns its standard output; on failure,
	// with its standard error too (where its progress and warnings go).
	dc := func(args ...string) (string, error) {
		cmd := exec.Command(compose, append([]string{"-p", project}, args...)...)
		cmd.Dir = dir
		cmd.Env = composeEnv()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out) + stderr.String(), err
		}
		return string(out), nil
	}
	mustDC := func(args ...string) string {
		t.Helper()
		out, err := dc(args...)
		if err != nil {
			t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	mustDC("config", "-q")
	cfg := mustDC("config")
	if n := strings.Count(cfg, "network_mode: host"); n != 3 {
		t.Fatalf("%d services with network_mode: host, want all 3:\n%s", n, cfg)
	}
	for name, pw := range secrets {
		if strings.Contains(cfg, pw) {
			t.Fatalf("the %s is in the compose configuration, where docker inspect shows it", name)
		}
	}
	times.done("docker-compose config")

	if out, err := dc("build", "pierd"); err != nil {
		t.Fatalf("docker-compose build pierd: %v\n%s", err, out)
	} else {
		t.Logf("docker-compose build pierd: %s", lastLines(out, 3))
	}
	times.done("docker-compose build (pierd's image from the Dockerfile)")

	app := "cmp" + randomHex(t, 3)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := dc("logs", "--no-color", "--tail", "200")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := dc("down", "-v", "--timeout", "20"); err != nil {
			t.Errorf("docker-compose down -v: %v\n%s", err, out)
		}
		// The docker scheduler's containers outlive pierd, by design;
		// only this test's app's are removed: other tests may be running.
		removeContainers(t, "label=io.pier.app="+app)
		removeImages(t, "127.0.0.1:"+env["PIER_REGISTRY_PORT"]+"/*/*")
		removeVolumes(t, "pier-cache-"+app+"-build", "pier-cache-"+app+"-launch")
		removeOldPierdImages(t)
	})
	mustDC("up", "-d", "--no-build")
	url := "http://127.0.0.1:" + httpPort
	waitHealthy(t, url, dc)
	times.done("docker-compose up until pierd answers")

	// pierd runs as its own user, and no password is in any container's
	// configuration.
	if out := strings.TrimSpace(mustDC("exec", "-T", "pierd", "id", "-u")); out != "10001" {
		t.Fatalf("pierd runs as uid %q, want 10001", out)
	}
	ids := strings.Fields(mustDC("ps", "-q"))
	if len(ids) != 3 {
		t.Fatalf("%d containers, want 3: %v", len(ids), ids)
	}
	inspect, err := exec.Command("docker", append([]string{"inspect"}, ids...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	for name, pw := range secrets {
		if strings.Contains(string(inspect), pw) {
			t.Fatalf("docker inspect shows the %s", name)
		}
	}

	// The README's first session.
	token := filepath.Join(t.TempDir(), "bootstrap-token")
	if err := os.WriteFile(token, []byte(mustDC("exec", "-T", "pierd", "cat", "/var/lib/pier/bootstrap-token")), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	c.must("compose test password\n", "register", url, "--username", "dev", "--bootstrap-token-file", token, "--password-stdin")
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	c.must("", "keys:add", key+".pub")
	s := &stack{t: t, c: c, key: key, sshPort: sshPort, d: &daemon{component: &component{out: &testenv.Buffer{}}, url: url}}
	r := s.newRepo("../../builder/host/testdata/go-hello", app)
	times.done("register, keys:add, apps:create")

	out := r.mustPush()
	if !strings.Contains(out, "Released v2") {
		t.Fatalf("push:\n%s", out)
	}
	if got := s.body(app, "/"); got != "hello from go" {
		t.Fatalf("%s serves %q, want %q", app, got, "hello from go")
	}
	times.done("git push to serving")
	// The compose healthcheck (pier status) agrees.
	eventually(t, time.Minute, "pierd's container healthy", func() (bool, string) {
		id, _ := dc("ps", "-q", "pierd")
		out, err := exec.Command("docker", "inspect", "--format", "{{.State.Health.Status}}", strings.TrimSpace(id)).CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == "healthy", fmt.Sprintf("%s %v", out, err)
	})

	// An upgrade recreates pierd: the user, the app and its route remain.
	mustDC("up", "-d", "--no-build", "--force-recreate", "pierd")
	waitHealthy(t, url, dc)
	if out := c.must("", "apps", "--json"); !strings.Contains(out, app) {
		t.Fatalf("apps after pierd was recreated: %s", out)
	}
	eventually(t, time.Minute, app+" served after pierd was recreated", func() (bool, string) {
		code, body, err := s.get(http.DefaultClient, app, "/")
		return err == nil && code == 200 && body == "hello from go", fmt.Sprintf("%d %q %v", code, body, err)
	})
	times.done("pierd recreated (an upgrade), app still served")
}

// phases logs how long each step of a test took.
type phases struct {
	t     *testing.T
	last  time.Time
	lines []string
}

func (p *phases) done(what string) {
	now := time.Now()
	p.lines = append(p.lines, fmt.Sprintf("%7.1fs  %s", now.Sub(p.last).Seconds(), what))
	p.t.Logf("phase: %s: %.1fs", what, now.Sub(p.last).Seconds())
	p.last = now
}

func (p *phases) report() { p.t.Logf("phases:\n%s", strings.Join(p.lines, "\n")) }

// checkoutCopy copies the repository's files (tracked and untracked, not
// ignored) into a temp dir and vendors the modules there.
func checkoutCopy(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dir := t.TempDir()
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "deploy/compose/secrets/") || name == ".env" {
			continue
		}
		from, to := filepath.Join(root, name), filepath.Join(dir, name)
		info, err := os.Lstat(from)
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if info.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(from)
			if err == nil {
				err = os.Symlink(link, to)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := copyFile(from, to, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	run(t, dir, []string{"GOFLAGS=-mod=mod", "GOWORK=off"}, "go", "mod", "vendor")
	return dir
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// run runs a command in dir and fails the test if it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// composeEnv is this process's environment without what would override the
// .env file, as a fresh shell has it.
func composeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PIER_") || strings.HasPrefix(k, "COMPOSE_") || k == "DOCKER_GID" || k == "DOCKER_SOCKET" || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitHealthy waits until pierd answers /healthz, failing early if its
// container stops.
func waitHealthy(t *testing.T, url string, dc func(...string) (string, error)) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		res, err := http.Get(url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if ps, _ := dc("ps", "pierd"); strings.Contains(ps, "Exit") || strings.Contains(ps, "Restarting") {
			logs, _ := dc("logs", "--no-color", "pierd")
			t.Fatalf("pierd's container exited:\n%s\n%s", ps, logs)
		}
		if time.Now().After(deadline) {
			ps, _ := dc("ps")
			t.Fatalf("pierd did not answer at %s/healthz within 3 minutes (%v):\n%s", url, err, ps)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// removeContainers force-removes the containers a docker ps filter finds.
func removeContainers(t *testing.T, filter string) {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", filter).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		if b, err := exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).CombinedOutput(); err != nil {
			t.Logf("removing containers %v: %v\n%s", ids, err, b)
		}
	}
}

// removeImages removes the images whose reference matches.
func removeImages(t *testing.T, reference string) {
	out, _ := exec.Command("docker", "images", "-q", "--filter", "reference="+reference).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		if b, err := exec.Command("docker", append([]string{"rmi", "-f"}, ids...)...).CombinedOutput(); err != nil {
			t.Logf("removing images %v: %v\n%s", ids, err, b)
		}
	}
}

// removeVolumes removes the named volumes that exist (pack's caches).
func removeVolumes(t *testing.T, names ...string) {
	for _, name := range names {
		if exec.Command("docker", "volume", "inspect", name).Run() == nil {
			if b, err := exec.Command("docker", "volume", "rm", name).CombinedOutput(); err != nil {
				t.Logf("removing volume %s: %v\n%s", name, err, b)
			}
		}
	}
}

// removeOldPierdImages removes what earlier builds of pierd's image left
// untagged: the previous image and the build stage's images (2 GB each,
// with vendor/ and Go's caches), except the newest, which is the layer
// cache of a rebuild of unchanged sources.
func removeOldPierdImages(t *testing.T) {
	out, _ := exec.Command("docker", "images", "-q", "--no-trunc", "--filter", "dangling=true").Output()
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return
	}
	out, err := exec.Command("docker", append([]string{"image", "inspect", "--format",
		"{{.ID}} {{.Created}} {{json .Config.Entrypoint}} {{json .ContainerConfig.Cmd}}"}, ids...)...).Output()
	if err != nil {
		return
	}
	var old []string
	newest, newestID := "", ""
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 4 {
			continue
		}
		switch {
		case f[2] == `["pierd"]`:
			old = append(old, f[0])
		case strings.Contains(f[3], "-o /out/pierd ./cmd/pierd"):
			if f[1] > newest { // RFC 3339 times sort as strings
				if newestID != "" {
					old = append(old, newestID)
				}
				newest, newestID = f[1], f[0]
			} else {
				old = append(old, f[0])
			}
		}
	}
	if len(old) > 0 {
		if b, err := exec.Command("docker", append([]string{"rmi"}, old...)...).CombinedOutput(); err != nil {
			t.Logf("removing old images of pierd: %v\n%s", err, b)
		}
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
