package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupScheduleFlags: scheduled backups are off by default; on, pierd
// refuses to start without a passphrase long enough to seal them, and
// never takes one from argv.
func TestBackupScheduleFlags(t *testing.T) {
	t.Setenv("PIER_BACKUP_PASSPHRASE", "")
	parse := func(args ...string) (options, error) {
		var o options
		if err := newFlags(&o, &bytes.Buffer{}).Parse(args); err != nil {
			t.Fatal(err)
		}
		return o, o.backups.check()
	}
	if o, err := parse(); err != nil || o.backups.every != 0 || o.backups.keep != 7 || o.backups.dir != "" {
		t.Fatalf("default: %+v %v", o.backups, err)
	}
	short := filepath.Join(t.TempDir(), "short")
	long := filepath.Join(t.TempDir(), "long")
	os.WriteFile(short, []byte("too short\n"), 0o600)
	os.WriteFile(long, []byte("long enough to seal a backup\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--backup-schedule", "24h"}, "no backup passphrase"},
		{[]string{"--backup-schedule", "24h", "--backup-passphrase-file", short}, "at least 16"},
		{[]string{"--backup-schedule", "24h", "--backup-passphrase-file", "-"}, "give a file"},
		{[]string{"--backup-schedule", "-1h"}, "positive"},
		{[]string{"--backup-schedule", "24h", "--backup-keep", "0"}, "at least 1"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	o, err := parse("--backup-schedule", "24h", "--backup-passphrase-file", long, "--backup-keep", "3")
	if err != nil || o.backups.every != 24*time.Hour || o.backups.keep != 3 || o.backups.pass != "long enough to seal a backup" {
		t.Fatalf("24h, keep 3: %+v %v", o.backups.every, err)
	}
	t.Setenv("PIER_BACKUP_SCHEDULE", "daily")
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "24h") {
		t.Errorf("PIER_BACKUP_SCHEDULE=daily: %v", err)
	}
}
