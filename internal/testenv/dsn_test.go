package testenv

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestWithDBName(t *testing.T) {
	for _, raw := range []string{
		"postgres://u:p%40ss@localhost:5433/orig?sslmode=disable",
		"postgresql://u@/orig?host=/tmp/sock",
		"host=/tmp/sock user=u password='a b' dbname=orig sslmode=disable",
		"host=localhost user=u",
	} {
		cfg, err := pgconn.ParseConfig(withDBName(raw, "pier_test_1_ab"))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		orig, _ := pgconn.ParseConfig(raw)
		if cfg.Database != "pier_test_1_ab" || cfg.User != orig.User || cfg.Password != orig.Password || cfg.Host != orig.Host || cfg.Port != orig.Port {
			t.Errorf("%s: got db=%q user=%q host=%q port=%d", raw, cfg.Database, cfg.User, cfg.Host, cfg.Port)
		}
	}
}
