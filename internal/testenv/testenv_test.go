package testenv_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestDatabaseGivesDistinctWorkingDatabases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn1, dsn2 := testenv.Database(t), testenv.Database(t)
	if dsn1 == dsn2 {
		t.Fatalf("same DSN twice: %s", dsn1)
	}
	names := map[string]bool{}
	for _, dsn := range []string{dsn1, dsn2} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var name string
		var tables int
		err = conn.QueryRow(ctx, `SELECT current_database(),
			(SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "pier_test_") || tables != 0 {
			t.Fatalf("database %q with %d tables, want a fresh pier_test_*", name, tables)
		}
		names[name] = true
		if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
			t.Fatal(err)
		}
	}
	if len(names) != 2 {
		t.Fatalf("want two distinct databases, got %v", names)
	}
}

func TestDatabaseParallel(t *testing.T) {
	for i := 0; i < 4; i++ {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, testenv.Database(t))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if err := conn.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSSHKey(t *testing.T) {
	line, fp := testenv.SSHKey(t)
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if key.Type() != ssh.KeyAlgoED25519 || ssh.FingerprintSHA256(key) != fp || !strings.HasPrefix(fp, "SHA256:") {
		t.Fatalf("key %s fingerprint %s", line, fp)
	}
	if line2, _ := testenv.SSHKey(t); line2 == line {
		t.Fatal("same key twice")
	}
}

func TestSSHSigner(t *testing.T) {
	signer, line, fp := testenv.SSHSigner(t)
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || ssh.FingerprintSHA256(key) != fp {
		t.Fatalf("key %s fingerprint %s: %v", line, fp, err)
	}
	sig, err := signer.Sign(nil, []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Verify([]byte("data"), sig); err != nil {
		t.Fatal(err)
	}
}
