package builder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFailedDeployLeavesBranchForRetry: as with Heroku's rejecting hook, a
// deploy that fails leaves main where it was, so pushing the same commit
// again retries it rather than answering "Everything up-to-date".
func TestFailedDeployLeavesBranchForRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	h.app("shop", "ada")
	work := h.workRepo(map[string]string{"README": "x"})
	first := strings.TrimSpace(h.mustGit(work, "", "rev-parse", "HEAD"))

	h.deployer.mu.Lock()
	h.deployer.err = errFake("the build failed")
	h.deployer.mu.Unlock()
	out, err := h.git(work, ada, "push", h.remote("shop"), "main")
	if err == nil || !strings.Contains(out, "main was not updated: push again to retry") {
		t.Fatalf("failed first deploy: %v\n%s", err, out)
	}
	if refs := h.mustGit(work, ada, "ls-remote", h.remote("shop")); strings.Contains(refs, "refs/heads/main") {
		t.Fatalf("main exists after its first deploy failed:\n%s", refs)
	}

	// The same commit, pushed again once the cause is fixed, deploys.
	h.deployer.mu.Lock()
	h.deployer.err = nil
	h.deployer.mu.Unlock()
	h.mustGit(work, ada, "push", h.remote("shop"), "main")
	second := h.commit(work, "second", map[string]string{"README": "y"})
	h.deployer.mu.Lock()
	h.deployer.err = errFake("crashed on boot")
	h.deployer.mu.Unlock()
	if out, err := h.git(work, ada, "push", h.remote("shop"), "main"); err == nil {
		t.Fatalf("failed deploy of the second commit succeeded:\n%s", out)
	}
	if refs := h.mustGit(work, ada, "ls-remote", h.remote("shop"), "main"); !strings.HasPrefix(refs, first) {
		t.Fatalf("main after a failed deploy of %s: %s, want %s", second[:7], refs, first[:7])
	}
	h.deployer.mu.Lock()
	h.deployer.err = nil
	h.deployer.mu.Unlock()
	h.mustGit(work, ada, "push", h.remote("shop"), "main")
	var commits []string
	for _, c := range h.deployer.Calls() {
		commits = append(commits, c.req.Commit[:7])
	}
	if want := []string{first[:7], first[:7], second[:7], second[:7]}; strings.Join(commits, " ") != strings.Join(want, " ") {
		t.Fatalf("deploys %v, want %v", commits, want)
	}
}

// TestInterruptedDeployIsUndone: a pierd killed mid-deploy leaves its
// journal; the next push to the app undoes the ref update first, so the
// commit that never ran deploys when pushed again.
func TestInterruptedDeployIsUndone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ada := h.user("ada", false)
	h.app("shop", "ada")
	work := h.workRepo(map[string]string{"README": "x"})
	first := strings.TrimSpace(h.mustGit(work, "", "rev-parse", "HEAD"))
	h.mustGit(work, ada, "push", h.remote("shop"), "main")
	second := h.commit(work, "second", map[string]string{"README": "y"})

	// What a kill between receive-pack and the end of the deploy leaves:
	// main at the new commit, and the journal.
	repo := filepath.Join(h.cfg.DataDir, "repos", "shop.git")
	h.mustGit(work, "", "push", "-q", repo, "main")
	j, _ := json.Marshal(journal{Ref: "refs/heads/main", Old: first, New: second})
	if err := os.WriteFile(filepath.Join(repo, journalName), j, 0o600); err != nil {
		t.Fatal(err)
	}

	out := h.mustGit(work, ada, "push", h.remote("shop"), "main")
	if strings.Contains(out, "up-to-date") {
		t.Fatalf("push after an interrupted deploy:\n%s", out)
	}
	calls := h.deployer.Calls()
	if len(calls) != 2 || calls[1].req.Commit != second {
		t.Fatalf("deploys after the interrupted one: %+v", calls)
	}
	if _, err := os.Stat(filepath.Join(repo, journalName)); !os.IsNotExist(err) {
		t.Fatalf("journal left after a finished deploy: %v", err)
	}
}

type errFake string

func (e errFake) Error() string { return string(e) }
