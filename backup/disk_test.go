package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
)

// smallDisk mounts a 256 KiB tmpfs, unmounted when the test ends.
func smallDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs needs root (CI runs as root)")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=256k,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// backupOf backs up the database at dsn (and an empty data dir) to path.
func backupOf(t *testing.T, dsn, path string) (Summary, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	snap, err := postgres.OpenSnapshot(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	src := Source{DB: snap, SchemaVersion: snap.Version, DataDir: t.TempDir()}
	for _, tb := range snap.Tables {
		src.Tables = append(src.Tables, Table{Name: tb.Name, Columns: tb.Columns, Rows: tb.Rows})
	}
	return WriteFile(ctx, path, pass, src, nil)
}

// TestFullDisk: a backup to a full disk fails saying "no space left",
// leaves nothing behind and keeps the previous backup whole; once space is
// freed, the next backup is written.
func TestFullDisk(t *testing.T) {
	dsn := testenv.Database(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateUser(ctx, &pier.User{Username: "ada", Email: "ada@example.com", Admin: true}, "hash"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateApp(ctx, &pier.App{Name: "web-one"}, "ada"); err != nil {
		t.Fatal(err)
	}
	// A build log that does not compress: 96 KiB of random text.
	noise := make([]byte, 72<<10)
	rand.Read(noise)
	b := &pier.Build{App: "web-one", Strategy: pier.StrategyHost, Image: "/x", Status: pier.BuildFailed, CreatedBy: "ada", Log: base64.StdEncoding.EncodeToString(noise)}
	if err := db.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}

	disk := smallDisk(t)
	first := filepath.Join(disk, Name(time.Now().Add(-time.Hour)))
	sum, err := backupOf(t, dsn, first)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first backup: %d bytes", sum.Bytes)
	before, _ := os.ReadFile(first)

	// Fill the disk, as other files would.
	ballast := filepath.Join(disk, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	second := filepath.Join(disk, Name(time.Now()))
	_, err = backupOf(t, dsn, second)
	if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("backup to a full disk: %v", err)
	}
	t.Logf("full disk: %v", err)
	ents, _ := os.ReadDir(disk)
	if len(ents) != 2 {
		t.Errorf("a failed backup left files behind: %v", ents)
	}
	after, _ := os.ReadFile(first)
	if !bytes.Equal(before, after) {
		t.Error("the previous backup changed")
	}
	fr, _ := os.Open(first)
	st, err := Stage(fr, pass, t.TempDir())
	fr.Close()
	if err != nil {
		t.Fatalf("the previous backup no longer restores: %v", err)
	}
	st.Remove()

	// Space freed: the next backup is written.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if _, err := backupOf(t, dsn, second); err != nil {
		t.Fatalf("backup once space was freed: %v", err)
	}
	sr, _ := os.Open(second)
	defer sr.Close()
	st, err = Stage(sr, pass, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st.Remove()
}
