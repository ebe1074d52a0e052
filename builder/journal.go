package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// A deploy that does not finish puts the deployed branch back where it was,
// as Heroku's rejecting pre-receive hook leaves it: pushing the same commit
// again retries the deploy, instead of answering "Everything up-to-date"
// about a commit that never ran. While a deploy runs, a journal in the
// repository records how to undo its ref update, so that a pierd killed
// mid-deploy is undone by the next push (the push lock is held throughout).
const journalName = "pier-deploying"

type journal struct {
	Ref string `json:"ref"`
	Old string `json:"old"` // "" when the push created the ref
	New string `json:"new"`
}

func (s *Server) writeJournal(dir string, j journal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, journalName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, journalName))
}

func (s *Server) clearJournal(dir string) error {
	err := os.Remove(filepath.Join(dir, journalName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// undoRef moves j.Ref back from j.New to j.Old, only if it still points to
// j.New (update-ref checks and swaps atomically).
func (s *Server) undoRef(ctx context.Context, dir string, j journal) error {
	if !strings.HasPrefix(j.Ref, "refs/heads/") || !isSHA(j.New) || (j.Old != "" && !isSHA(j.Old)) {
		return fmt.Errorf("journal names %q %q→%q: not a branch update", j.Ref, j.Old, j.New)
	}
	args := []string{"--git-dir=" + dir, "update-ref", "-m", "pier: deploy did not finish"}
	if j.Old == "" {
		args = append(args, "-d", j.Ref, j.New)
	} else {
		args = append(args, j.Ref, j.Old, j.New)
	}
	_, err := s.gitOutput(ctx, args...)
	return err
}

// recoverJournal undoes the ref update of a deploy that a previous pierd did
// not finish. The caller holds the app's push lock.
func (s *Server) recoverJournal(ctx context.Context, dir string, log *slog.Logger) {
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var j journal
	if err == nil {
		err = json.Unmarshal(b, &j)
	}
	if err == nil {
		err = s.undoRef(ctx, dir, j)
	}
	if err != nil {
		log.Warn("undoing an interrupted deploy", "err", err)
	} else {
		log.Info("undid the ref update of an interrupted deploy", "ref", j.Ref, "commit", j.New)
	}
	if err := s.clearJournal(dir); err != nil {
		log.Warn("removing the deploy journal", "err", err)
	}
}

func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
