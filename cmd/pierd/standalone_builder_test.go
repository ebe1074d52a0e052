package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

// TestStandaloneBuilder: `pierd builder` as a process of its own, with a
// builder service token and no database credentials, beside pierd all
// --ssh-addr=off: a git push to it is built and released by the controller
// with the build's output streamed to the pusher, and the app serves; a
// build that fails fails the push with the reason and releases nothing; an
// unknown key and a user without access are refused; a token of another
// scope is refused at start, with what to do.
func TestStandaloneBuilder(t *testing.T) {
	skipShort(t)
	internal := "127.0.0.1:" + freePort(t)
	sshPort := freePort(t)
	s := startStack(t, "PIER_SSH_ADDR=off", "PIER_INTERNAL_ADDR="+internal, "PIER_SSH_PUBLIC_HOST=localhost:"+sshPort)
	if !strings.Contains(s.d.out.String(), "Builder: none in this process (--ssh-addr=off)") {
		t.Fatalf("pierd all --ssh-addr=off:\n%s", s.d.out)
	}
	s.sshPort = sshPort

	var router pier.NewServiceToken
	jsonOut(t, s.c.must("", "service-tokens:create", "--scope", "router", "--json"), &router)
	routerFile := filepath.Join(t.TempDir(), "router.token")
	os.WriteFile(routerFile, []byte(router.Token), 0o600)
	refused := exec.Command(filepath.Join(binDir, "pierd"), "builder", "--controller-internal", "http://"+internal, "--token-file", routerFile, "--ssh-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	refused.Env = append(os.Environ(), "DATABASE_URL=")
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), "the controller refuses the token") || !strings.Contains(string(out), "--scope builder") {
		t.Fatalf("pierd builder with a router token: %v\n%s", err, out)
	}

	var tok pier.NewServiceToken
	jsonOut(t, s.c.must("", "service-tokens:create", "--scope", "builder", "--description", "git-1", "--json"), &tok)
	tokenFile := filepath.Join(t.TempDir(), "builder.token")
	if err := os.WriteFile(tokenFile, []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No database credentials in its environment.
	b := startComponent(t, "builder", sshListening, []string{"DATABASE_URL="}, "--controller-internal", "http://"+internal, "--token-file", tokenFile,
		"--ssh-addr", "127.0.0.1:"+sshPort, "--data-dir", filepath.Join(t.TempDir(), "builder"))

	// The git remote the controller hands out names the builder.
	r := s.newRepo("../../builder/host/testdata/procfile-shell", "shore")
	if url := strings.TrimSpace(r.git("remote", "get-url", "pier")); url != "ssh://git@localhost:"+sshPort+"/shore.git" {
		t.Fatalf("git remote %q, want the builder's", url)
	}
	out := r.mustPush()
	for _, want := range []string{"-----> Procfile", "-----> Released v2 in ", "http://shore.pier.localhost:" + s.httpPort()} {
		if !strings.Contains(out, want) {
			t.Fatalf("the push's output lacks %q:\n%s", want, out)
		}
	}
	if got := s.body("shore", "/hello.txt"); got != "hello from the shell" {
		t.Fatalf("the app serves %q", got)
	}
	var builds []pier.Build
	jsonOut(t, s.c.must("", "builds", "-a", "shore", "--json"), &builds)
	if len(builds) != 1 || builds[0].Commit != r.head() || builds[0].Status != pier.BuildSucceeded {
		t.Fatalf("builds %+v, want one of %s, succeeded", builds, r.head())
	}

	// A build that fails: the push fails with the reason, no release.
	os.Remove(filepath.Join(r.dir, "Procfile"))
	r.git("commit", "-q", "-am", "no Procfile, nothing to detect")
	out, err := r.push()
	if err == nil || !strings.Contains(out, "deploy failed: no buildpack detected") {
		t.Fatalf("push of an app nothing detects: %v\n%s", err, out)
	}
	var rels []pier.Release
	jsonOut(t, s.c.must("", "releases", "-a", "shore", "--json"), &rels)
	if rels[0].Version != 2 {
		t.Fatalf("a failed build made a release: %+v", rels[0])
	}
	if got := s.body("shore", "/hello.txt"); got != "hello from the shell" {
		t.Fatalf("after the failed build the app serves %q", got)
	}

	// A key nobody registered is refused before any command runs.
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	push := r.command("push", "pier", "main")
	push.Env = append(push.Env, "GIT_SSH_COMMAND=ssh -F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p "+sshPort+" -i "+key)
	if out, err := push.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("push with an unknown key: %v\n%s", err, out)
	}
	if strings.Contains(b.out.String(), tok.Token) || strings.Contains(s.d.out.String(), tok.Token) {
		t.Fatal("the builder token is in a log")
	}
}
