package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pierpaas/pier/postgres/embedded"
)

// pgbench runs, with pgbench, the SQL that the store runs for one API
// request, at the same concurrency and on the same database as the API
// benchmark.
type pgbench struct {
	bin  string
	dir  string   // scripts and per-transaction logs
	conn []string // -h -p -U dbname
	env  []string // PGPASSWORD...
	vars []string // -D name=value: the seeded data the scripts refer to
}

// findPgbench finds pgbench where embedded finds the server binaries (the
// directory of pg_ctl on PATH, else /usr/lib/postgresql/*/bin), or on PATH.
func findPgbench() (string, error) {
	if dir, err := embedded.FindBinaries(); err == nil {
		p := filepath.Join(dir, "pgbench")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	return "", errors.New("pgbench not found next to the Postgres server binaries or on PATH (apt-get install -y postgresql-contrib or postgresql-client)")
}

func newPgbench(e *apiEnv) (*pgbench, error) {
	bin, err := findPgbench()
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(e.dsn)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pier-pgbench-")
	if err != nil {
		return nil, err
	}
	p := &pgbench{
		bin: bin, dir: dir,
		conn: []string{"-h", cfg.Host, "-p", strconv.Itoa(int(cfg.Port)), "-U", cfg.User, cfg.Database},
		env:  []string{"PGPASSWORD=" + cfg.Password, "PGSSLMODE=disable", "PGAPPNAME=pier-bench", "LC_ALL=C"},
	}
	// The values the server would bind: the session's user ID and token ID
	// (from the JWT the benchmark sends), the user, the apps.
	userID, jti, err := jwtSubjectAndID(e.token)
	if err != nil {
		p.close()
		return nil, err
	}
	p.vars = []string{
		"user_id=" + userID, "jti=" + jti, "username=" + e.user,
		"info_app=" + e.infoApp,
	}
	return p, nil
}

func (p *pgbench) close() { os.RemoveAll(p.dir) }

// jwtSubjectAndID reads sub and jti from a JWT without verifying it (it is
// our own, just issued).
func jwtSubjectAndID(token string) (string, string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", "", errors.New("session token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", err
	}
	var c struct {
		Sub string `json:"sub"`
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", "", err
	}
	if c.Sub == "" || c.JTI == "" {
		return "", "", errors.New("session token has no sub or jti")
	}
	return c.Sub, c.JTI, nil
}

var tpsRE = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// run runs script kind ("config-set" or "apps-info") from n clients for d,
// or, when d is 0, txPerClient transactions per client, and summarises the
// latencies from pgbench's per-transaction log.
func (p *pgbench) run(kind string, n int, d time.Duration, txPerClient int) (stats, error) {
	script, ok := scripts[kind]
	if !ok {
		return stats{}, fmt.Errorf("no pgbench script %q", kind)
	}
	file := filepath.Join(p.dir, kind+".sql")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		return stats{}, err
	}
	prefix := filepath.Join(p.dir, kind)
	old, _ := filepath.Glob(prefix + ".[0-9]*")
	for _, f := range old {
		os.Remove(f)
	}
	// -M prepared: pgx's default mode caches prepared statements per
	// connection, so the server plans each statement once per connection.
	// -n: no vacuum of pgbench's own tables (there are none).
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(n), "-j", strconv.Itoa(min(n, 2)),
		"-f", file, "--log", "--log-prefix", prefix}
	if d > 0 {
		args = append(args, "-T", strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))))
	} else {
		args = append(args, "-t", strconv.Itoa(txPerClient))
	}
	for _, v := range p.vars {
		args = append(args, "-D", v)
	}
	args = append(args, p.conn...)
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(cleanEnv(), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return stats{}, fmt.Errorf("%v\n%s", err, out)
	}
	if strings.Contains(string(out), "aborted") {
		return stats{}, fmt.Errorf("some pgbench clients aborted:\n%s", out)
	}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		return stats{}, fmt.Errorf("no tps in pgbench's output:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	lat, err := readPgbenchLogs(prefix)
	if err != nil {
		return stats{}, err
	}
	if len(lat) == 0 || tps <= 0 {
		return stats{}, fmt.Errorf("pgbench ran no transactions:\n%s", out)
	}
	wall := time.Duration(float64(len(lat)) / tps * float64(time.Second))
	return summarize(lat, wall), nil
}

// cleanEnv is the environment without PG* variables, which would redirect
// pgbench elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// readPgbenchLogs reads the per-transaction logs (prefix.PID and
// prefix.PID.N, one per thread). Each line is
// "client_id transaction_no time script_no time_epoch time_us", time being
// the transaction's latency in microseconds.
func readPgbenchLogs(prefix string) ([]time.Duration, error) {
	files, err := filepath.Glob(prefix + ".[0-9]*")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no pgbench log files %s.*: %v", prefix, err)
	}
	var lat []time.Duration
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 6 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				fh.Close()
				return nil, fmt.Errorf("%s: bad line %q", f, sc.Text())
			}
			lat = append(lat, time.Duration(us)*time.Microsecond)
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	return lat, nil
}
