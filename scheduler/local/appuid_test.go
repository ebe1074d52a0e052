package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pierpaas/pier"
)

// Issue 14, finding 2: as root, an app's processes (and its `pier run`)
// run as the uid the store gave it, Deployment.UID, not a hash of its name
// (payments and blog-75204 hashed to one uid, so each could read the
// other's environ and signal its processes). A deployment without a uid of
// the app range is refused rather than run as root or as someone else.
func TestProcessesRunAsTheAppUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("per-app uids need root")
	}
	s, dir := newScheduler(t)
	ctx := context.Background()
	uids := map[string]int{"payments": 100101, "blog-75204": 100102}
	for app, uid := range uids {
		d := deployment(app, 1, web(1), nil)
		d.UID = uid
		if err := s.Apply(ctx, d); err != nil {
			t.Fatal(err)
		}
		ps := processes(t, s, app)
		if len(ps) != 1 {
			t.Fatalf("%s: processes %+v", app, ps)
		}
		if id := getIdentity(ps[0].Addr); id.UID != uid {
			t.Fatalf("%s runs as uid %d, want its own %d", app, id.UID, uid)
		}
		// Its working dirs are its own, unreadable to other app uids.
		fi, err := os.Lstat(filepath.Join(dir, "run", app))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != uid || fi.Mode().Perm() != 0o700 {
			t.Fatalf("run/%s: %v uid %d gid %d, want 0700 %d:%d", app, fi.Mode(), st.Uid, st.Gid, uid, uid)
		}
		// Its log is root's alone.
		fi, err = os.Stat(filepath.Join(dir, "logs", app+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("logs/%s.log: %v uid %d, want root's, unreadable to others", app, fi.Mode(), st.Uid)
		}
		// A one-off run is the app's uid too.
		var out strings.Builder
		run := deployment(app, 1, nil, nil)
		run.UID = uid
		if code, err := s.Run(ctx, run, pier.RunOptions{Command: []string{"id", "-u"}, Stdout: &out}); err != nil || code != 0 {
			t.Fatalf("%s: run: %d %v", app, code, err)
		}
		if got := strings.TrimSpace(out.String()); got != strconv.Itoa(uid) {
			t.Fatalf("%s: `pier run` ran as uid %s, want %d", app, got, uid)
		}
	}

	// No uid, root's, or one outside the app range: refused, nothing runs.
	for _, uid := range []int{0, 99, 1 << 30} {
		d := deployment("nouid", 1, web(1), nil)
		d.UID = uid
		err := s.Apply(ctx, d)
		if err == nil || !strings.Contains(err.Error(), "outside the range of app uids 100000-165535") {
			t.Fatalf("uid %d: Apply: %v, want refused", uid, err)
		}
		if ps := processes(t, s, "nouid"); len(ps) != 0 {
			t.Fatalf("uid %d: processes %+v", uid, ps)
		}
		var out strings.Builder
		if code, err := s.Run(ctx, d, pier.RunOptions{Command: []string{"id", "-u"}, Stdout: &out}); err == nil {
			t.Fatalf("uid %d: run refused nothing: exit %d, output %q", uid, code, out.String())
		}
	}
	// Scaling to nothing needs no uid: it only stops.
	if err := s.Apply(ctx, deployment("nouid", 1, nil, nil)); err != nil {
		t.Fatal(err)
	}
}
