package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres/embedded"
)

const backupPassphrase = "a passphrase long enough for the tests"

// pierdCmd runs a one-off pierd command (backup, restore) to completion.
func pierdCmd(t *testing.T, env []string, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "pierd"), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// appState is what a restore must bring back of an app, as the API shows it.
type appState struct {
	Releases  []pier.Release
	Config    pier.Config
	Formation pier.Formation
}

func (s *stack) appState(app string) appState {
	s.t.Helper()
	var st appState
	jsonOut(s.t, s.c.must("", "releases", "-a", app, "-n", "100", "--json"), &st.Releases)
	jsonOut(s.t, s.c.must("", "config", "-a", app, "--json"), &st.Config)
	var info pier.AppInfo
	jsonOut(s.t, s.c.must("", "apps:info", "-a", app, "--json"), &info)
	st.Formation = info.Formation
	return st
}

// TestBackupRestore is issue 15's second acceptance point: a platform with
// three apps is backed up while it runs, the machine loses pierd's data
// dir, its embedded database and its runtime dir (builds, app processes),
// and after `pierd restore` and `pierd all` the apps serve again with
// their code, config, formation and release history; the SSH host key and
// the user's password are the same, and the next push releases the next
// version.
func TestBackupRestore(t *testing.T) {
	skipShort(t)
	phase := time.Now()
	took := func(what string) {
		t.Logf("%s took %s", what, time.Since(phase).Round(100*time.Millisecond))
		phase = time.Now()
	}
	s := startStack(t, "PIER_BACKUP_SCHEDULE=20s", "PIER_BACKUP_KEEP=2", "PIER_BACKUP_PASSPHRASE="+backupPassphrase)
	alpha := s.newRepo("testdata/hello", "alpha") // pushed twice
	alpha.mustPush()
	alpha.edit("main.go", `"one"`, `"two"`, "second")
	if out := alpha.mustPush(); !strings.Contains(out, "Released v3") {
		t.Fatalf("second push of alpha:\n%s", out)
	}
	bravo := s.newRepo("testdata/hello", "bravo") // with config
	s.c.must("", "config:set", "GREETING=from the backup", "SECRET_TOKEN=s3cr3t-value", "-a", "bravo")
	bravo.mustPush()
	charlie := s.newRepo("testdata/hello", "charlie") // scaled to 2
	charlie.mustPush()
	s.c.must("", "scale", "web=2", "-a", "charlie")
	serves := map[string]string{"alpha": "hello  from two", "bravo": "hello from the backup from one", "charlie": "hello  from one"}
	for app, want := range serves {
		if got := s.body(app, "/"); got != want {
			t.Fatalf("%s serves %q before the backup, want %q", app, got, want)
		}
	}
	before := map[string]appState{}
	for app := range serves {
		before[app] = s.appState(app)
	}
	hostKey, err := os.ReadFile(filepath.Join(s.data, "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := regexp.MustCompile(`host_key=(SHA256:\S+)`)
	served := fingerprint.FindStringSubmatch(s.d.out.String())
	if served == nil {
		t.Fatalf("pierd logged no host key fingerprint:\n%s", s.d.out)
	}
	took("setting up 3 apps (4 pushes)")

	// Live: pierd keeps running, and so does its Postgres.
	file := filepath.Join(t.TempDir(), "pier.backup")
	out, err := pierdCmd(t, []string{"PIER_DATA_DIR=" + s.data, "DATABASE_URL=", "PIER_BACKUP_PASSPHRASE="}, backupPassphrase+"\n", "backup", "--to", file, "--passphrase-file", "-")
	if err != nil {
		t.Fatalf("pierd backup: %v\n%s", err, out)
	}
	t.Logf("pierd backup said:\n%s", out)
	if !strings.Contains(out, "left running") || !strings.Contains(out, "3 git repositories") {
		t.Errorf("pierd backup output:\n%s", out)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	sealed, _ := os.ReadFile(file)
	if bytes.Contains(sealed, []byte("s3cr3t-value")) || bytes.Contains(sealed, []byte("OPENSSH PRIVATE KEY")) {
		t.Fatal("the backup file is not sealed")
	}
	t.Logf("backup: %d bytes", fi.Size())
	s.c.must("", "apps") // pierd still answers: its database was left running
	took("pierd backup")

	// Scheduled backups were taken meanwhile, at most --backup-keep kept.
	eventually(t, time.Minute, "a scheduled backup is written", func() (bool, string) {
		return strings.Contains(s.d.out.String(), "backup written"), ""
	})
	s.d.stop(t)
	if kept, _ := filepath.Glob(filepath.Join(s.data, "backups", "pier-*.backup")); len(kept) < 1 || len(kept) > 2 {
		t.Errorf("scheduled backups kept: %v, want 1 or 2", kept)
	}

	// The machine loses everything pierd had: data dir, database, builds.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := embedded.New(s.data).Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(s.data); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.RemoveAll(embedded.RelocatedDir("rt", s.data)); err != nil {
			t.Fatal(err)
		}
	}
	took("stopping pierd and wiping")

	// A wrong passphrase writes nothing.
	out, err = pierdCmd(t, []string{"PIER_DATA_DIR=" + s.data, "DATABASE_URL=", "PIER_BACKUP_PASSPHRASE=not the passphrase at all"}, "", "restore", "--from", file)
	if err == nil || !strings.Contains(out, "wrong passphrase") {
		t.Fatalf("restore with a wrong passphrase: %v\n%s", err, out)
	}
	if _, err := os.Stat(s.data); !os.IsNotExist(err) {
		t.Fatalf("a refused restore made the data dir (%v)", err)
	}
	out, err = pierdCmd(t, []string{"PIER_DATA_DIR=" + s.data, "DATABASE_URL=", "PIER_BACKUP_PASSPHRASE=" + backupPassphrase}, "", "restore", "--from", file)
	if err != nil {
		t.Fatalf("pierd restore: %v\n%s", err, out)
	}
	t.Logf("pierd restore said:\n%s", out)
	took("pierd restore")

	// A second restore over it is refused.
	out, err = pierdCmd(t, []string{"PIER_DATA_DIR=" + s.data, "DATABASE_URL=", "PIER_BACKUP_PASSPHRASE=" + backupPassphrase}, "", "restore", "--from", file)
	if err == nil || !strings.Contains(out, "already holds an SSH host key") {
		t.Fatalf("restore over a restored data dir: %v\n%s", err, out)
	}

	// pierd all on the empty machine: the login works (start logs in with
	// the same password), the host builds are rebuilt, the apps serve.
	s.start()
	for app, want := range serves {
		eventually(t, 5*time.Minute, app+" serves its code and config again", func() (bool, string) {
			code, body, err := s.get(&http.Client{Timeout: 5 * time.Second}, app, "/")
			return code == 200 && body == want, fmt.Sprintf("%d %q %v", code, body, err)
		})
	}
	took("pierd all rebuilding and starting 3 apps")
	for app := range serves {
		after := s.appState(app)
		b, _ := json.Marshal(before[app])
		a, _ := json.Marshal(after)
		if !bytes.Equal(a, b) {
			t.Errorf("%s after the restore:\n%s\nbefore:\n%s", app, a, b)
		}
	}
	if key, _ := os.ReadFile(filepath.Join(s.data, "ssh_host_ed25519_key")); !bytes.Equal(key, hostKey) {
		t.Error("the SSH host key changed")
	}
	if m := fingerprint.FindStringSubmatch(s.d.out.String()); m == nil || m[1] != served[1] {
		t.Errorf("the builder serves host key %v, before the restore %s", m, served[1])
	}
	eventually(t, 20*time.Second, "charlie runs 2 processes", func() (bool, string) {
		out := s.c.must("", "ps", "-a", "charlie")
		return strings.Count(out, ": up") == 2, out
	})
	if !strings.Contains(s.d.out.String(), "Rebuilt 3 missing builds") {
		t.Errorf("pierd did not say it rebuilt the 3 builds:\n%s", s.d.out)
	}

	// The restored repository takes the next push: the next version.
	alpha.edit("main.go", `"two"`, `"three"`, "third")
	if out := alpha.mustPush(); !strings.Contains(out, "Released v4") {
		t.Fatalf("push after the restore:\n%s", out)
	}
	if got := s.body("alpha", "/"); got != "hello  from three" {
		t.Fatalf("alpha after a push: %q", got)
	}
	took("a push after the restore")
	s.d.stop(t)
	for _, secret := range []string{backupPassphrase, "s3cr3t-value"} {
		if strings.Contains(s.d.out.String(), secret) {
			t.Errorf("pierd's output holds a secret (%.8s...)", secret)
		}
	}
}

// TestBackupExternalDatabase: with --database-url (compose, the chart)
// pierd backup only connects, and pierd restore takes a database that a
// pierd started on once (migrated, a bootstrap token, no user) but refuses
// one in use, saying what to do.
func TestBackupExternalDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pierd and Postgres")
	}
	dsn := testenv.Database(t)
	d := startPierd(t, []string{"PIER_DATA_DIR=" + t.TempDir(), "PIER_HTTP_ADDR=127.0.0.1:0"}, "controller", "--database-url", dsn)
	boot := regexp.MustCompile(`pierboot_[A-Za-z0-9_-]+`).FindString(d.out.String())
	c := newCLI(t)
	c.must("an admin's password\n", "register", d.url, "--username", "admin", "--bootstrap-token", boot, "--password-stdin")
	c.must("", "apps:create", "kept")
	c.must("", "config:set", "COLOUR=teal", "-a", "kept")
	file := filepath.Join(t.TempDir(), "nested", "pier.backup")
	env := []string{"PIER_BACKUP_PASSPHRASE=" + backupPassphrase, "PIER_DATA_DIR=" + t.TempDir()}
	out, err := pierdCmd(t, env, "", "backup", "--database-url", dsn, "--to", file)
	if err != nil || strings.Contains(out, "embedded") {
		t.Fatalf("pierd backup --database-url: %v\n%s", err, out)
	}
	d.stop(t)

	// Refused: the database holds a user and an app.
	out, err = pierdCmd(t, env, "", "restore", "--database-url", dsn, "--from", file)
	if err == nil || !strings.Contains(out, "1 users and 1 apps") || !strings.Contains(out, "new database") {
		t.Fatalf("restore into a database in use: %v\n%s", err, out)
	}

	// A database a pierd started on once, and a data dir with its token.
	dsn2 := testenv.Database(t)
	data2 := t.TempDir()
	d2 := startPierd(t, []string{"PIER_DATA_DIR=" + data2, "PIER_HTTP_ADDR=127.0.0.1:0"}, "controller", "--database-url", dsn2)
	d2.stop(t)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(binDir, "pierd"), "restore", "--database-url", dsn2, "--data-dir", data2, "--from", "-")
	cmd.Env = append(os.Environ(), "PIER_BACKUP_PASSPHRASE="+backupPassphrase)
	cmd.Stdin = f
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pierd restore --from -: %v\n%s", err, b)
	}
	d3 := startPierd(t, []string{"PIER_DATA_DIR=" + data2, "PIER_HTTP_ADDR=127.0.0.1:0"}, "controller", "--database-url", dsn2)
	c.must("an admin's password\n", "login", d3.url, "--username", "admin", "--password-stdin")
	var cfg pier.Config
	jsonOut(t, c.must("", "config", "-a", "kept", "--json"), &cfg)
	if cfg["COLOUR"] != "teal" {
		t.Fatalf("config after the restore: %v", cfg)
	}
	if strings.Contains(d3.out.String(), "pierboot_") {
		t.Errorf("a restored platform with users made a new bootstrap token:\n%s", d3.out)
	}
	d3.stop(t)
}
