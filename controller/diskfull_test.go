package controller_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
)

// discardingStrategy builds webBuild and records what it is told to
// discard (pier.BuildDiscarder).
type discardingStrategy struct {
	fakeStrategy
	discarded *[]string
}

func (s discardingStrategy) Discard(res *pier.BuildResult) error {
	*s.discarded = append(*s.discarded, res.Image)
	return nil
}

// A build that succeeded but whose Build row cannot be written (the
// database's disk is full) leaves no build output behind, and no
// release; the error says the disk is full. Through the API, a config
// change on that full disk is a 507 with the same words, never a 500.
func TestDeployOnFullDatabaseDisk(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	for _, q := range []string{
		`CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device' USING ERRCODE = '53100'; END $$`,
		`CREATE TRIGGER full_builds BEFORE INSERT ON builds FOR EACH ROW EXECUTE FUNCTION disk_full()`,
		`CREATE TRIGGER full_releases BEFORE INSERT ON releases FOR EACH ROW EXECUTE FUNCTION disk_full()`,
	} {
		if _, err := e.db.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var discarded []string
	sched := &recordingScheduler{}
	r := controller.NewReconciler(e.db, sched, nil)
	_, err := r.Deploy(ctx, discardingStrategy{fakeStrategy{res: webBuild}, &discarded},
		controller.DeployRequest{App: "myapp", User: "alice", Commit: "1a2b3c4d5e", Log: io.Discard})
	if pier.ErrorCode(err) != pier.ENOSPACE || !strings.Contains(pier.ErrorMessage(err), "no space left on device") {
		t.Fatalf("deploy on a full disk: %v (code %q)", err, pier.ErrorCode(err))
	}
	if len(discarded) != 1 || discarded[0] != webBuild.Image {
		t.Fatalf("discarded %v, want the unrecorded build %s", discarded, webBuild.Image)
	}
	if len(sched.applied) != 0 || len(e.releases("myapp")) != 1 {
		t.Fatalf("a build on a full disk changed things: %d applies, %d releases", len(sched.applied), len(e.releases("myapp")))
	}

	var body struct {
		Error pier.Error `json:"error"`
	}
	e.must("PATCH", "/v1/apps/myapp/config", e.alice, map[string]string{"A": "1"}, 507, &body)
	if body.Error.Code != pier.ENOSPACE || !strings.Contains(body.Error.Message, "nothing was changed") {
		t.Fatalf("config change on a full disk: %+v", body.Error)
	}
}
