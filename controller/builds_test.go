package controller_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
)

// noisyStrategy prints n bytes of build output in lines, between a first
// and a last line, from two goroutines as a build's stdout and stderr do.
type noisyStrategy struct {
	n   int
	res *pier.BuildResult
	err error
}

func (noisyStrategy) Name() string { return "noisy" }
func (s noisyStrategy) Build(_ context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	io.WriteString(req.Log, "-----> FIRST LINE\n")
	line := strings.Repeat("x", 99) + "\n"
	done := make(chan struct{})
	for g := range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := g; i < s.n/len(line); i += 2 {
				io.WriteString(req.Log, line)
			}
		}()
	}
	<-done
	<-done
	io.WriteString(req.Log, "-----> LAST LINE\n")
	return s.res, s.err
}

// countingWriter is the pusher's terminal: it counts what it is sent.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

func TestBuildsAndTheirLogs(t *testing.T) {
	e := newEnvWith(t, newProcScheduler())
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "myapp"}, 201, nil)
	e.must("POST", "/v1/apps", e.alice, map[string]string{"name": "other"}, 201, nil)
	ctx := context.Background()
	e.apiError("GET", "/v1/apps/myapp/builds/latest", e.alice, nil, 404, pier.ENOTFOUND, "no builds yet")

	// A failed build keeps its log, ending with why it failed.
	req := controller.DeployRequest{App: "myapp", User: "alice", Commit: "aaaaaaa111", Log: io.Discard}
	if _, err := e.rec.Deploy(ctx, fakeStrategy{err: pier.Errorf(pier.EINVALID, "no buildpack detected")}, req); err == nil {
		t.Fatal("a failed build deployed")
	}
	// A huge log is kept whole for the pusher, and cut in the middle on
	// the Build row.
	pusher := &countingWriter{}
	req = controller.DeployRequest{App: "myapp", User: "alice", Commit: "bbbbbbb222", Log: pusher}
	if _, err := e.rec.Deploy(ctx, noisyStrategy{n: 3 << 20, res: webWorker}, req); err != nil {
		t.Fatal(err)
	}
	if pusher.n.Load() < 3<<20 {
		t.Fatalf("the pusher saw %d bytes of 3 MiB", pusher.n.Load())
	}
	req = controller.DeployRequest{App: "myapp", User: "alice", Commit: "ccccccc333", Log: io.Discard}
	if _, err := e.rec.Deploy(ctx, fakeStrategy{res: webWorker}, req); err != nil {
		t.Fatal(err)
	}

	var l pier.List[pier.Build]
	e.must("GET", "/v1/apps/myapp/builds", e.alice, nil, 200, &l)
	if len(l.Items) != 3 || l.Items[0].Commit != "ccccccc333" || l.Items[2].Status != pier.BuildFailed || l.Items[1].Strategy != "noisy" {
		t.Fatalf("builds %+v", l.Items)
	}
	_, raw := e.do("GET", "/v1/apps/myapp/builds", e.alice, nil)
	if strings.Contains(string(raw), `"log"`) {
		t.Fatalf("the list holds logs: %.300s", raw)
	}
	// Paged, newest first.
	e.must("GET", "/v1/apps/myapp/builds?limit=2", e.alice, nil, 200, &l)
	if len(l.Items) != 2 || l.Next == "" {
		t.Fatalf("page %+v", l)
	}
	var l2 pier.List[pier.Build] // decoding into l would keep its next
	e.must("GET", "/v1/apps/myapp/builds?limit=2&after="+l.Next, e.alice, nil, 200, &l2)
	if len(l2.Items) != 1 || l2.Items[0].Status != pier.BuildFailed || l2.Next != "" {
		t.Fatalf("second page %+v", l2)
	}
	failedID := l2.Items[0].ID

	var b pier.Build
	e.must("GET", fmt.Sprintf("/v1/apps/myapp/builds/%d", failedID), e.alice, nil, 200, &b)
	if len(b.ProcessTypes) != 0 {
		t.Fatalf("a failed build with process types: %+v", b)
	}
	if b.Status != pier.BuildFailed || !strings.HasPrefix(b.Log, "-----> Fake app detected\n") || !strings.HasSuffix(b.Log, "!     no buildpack detected\n") {
		t.Fatalf("failed build %+v", b)
	}
	b = pier.Build{}
	e.must("GET", "/v1/apps/myapp/builds/latest", e.alice, nil, 200, &b)
	if b.Commit != "ccccccc333" || b.Log != "-----> Fake app detected\n" {
		t.Fatalf("latest build %+v", b)
	}
	b = pier.Build{}
	e.must("GET", fmt.Sprintf("/v1/apps/myapp/builds/%d", failedID+1), e.alice, nil, 200, &b)
	if b.Commit != "bbbbbbb222" || len(b.Log) > pier.BuildLogMax || len(b.Log) < pier.BuildLogMax-8<<10 {
		t.Fatalf("the big log is %d bytes, want a little under %d", len(b.Log), pier.BuildLogMax)
	}
	if !strings.HasPrefix(b.Log, "-----> FIRST LINE\n") || !strings.HasSuffix(b.Log, "\n-----> LAST LINE\n") || strings.Count(b.Log, "bytes cut ...]\n") != 1 {
		t.Fatalf("the big log does not keep its start and end: %.100q ... %.100q", b.Log, b.Log[len(b.Log)-100:])
	}
	// The cut falls between lines.
	i := strings.Index(b.Log, "\n[... ")
	j := strings.Index(b.Log, " bytes cut ...]\n")
	if i < 0 || !strings.HasPrefix(b.Log[j+len(" bytes cut ...]\n"):], strings.Repeat("x", 99)+"\n") || !strings.HasSuffix(b.Log[:i+1], strings.Repeat("x", 99)+"\n") {
		t.Fatalf("the cut is not between lines: %q", b.Log[i-120:j+120])
	}
	var cut int
	written := len("-----> FIRST LINE\n") + (3<<20)/100*100 + len("-----> LAST LINE\n")
	kept := i + 1 + len(b.Log) - j - len(" bytes cut ...]\n")
	if _, err := fmt.Sscanf(b.Log[i+1:], "[... %d bytes cut ...]", &cut); err != nil || cut != written-kept {
		t.Fatalf("the marker says %d bytes were cut (%v); %d were", cut, err, written-kept)
	}

	e.apiError("GET", "/v1/apps/myapp/builds/abc", e.alice, nil, 400, pier.EINVALID, "build ID")
	e.apiError("GET", "/v1/apps/myapp/builds/0", e.alice, nil, 400, pier.EINVALID, "build ID")
	e.apiError("GET", "/v1/apps/myapp/builds/99999", e.alice, nil, 404, pier.ENOTFOUND, "99999")
	e.apiError("GET", fmt.Sprintf("/v1/apps/other/builds/%d", failedID), e.alice, nil, 404, pier.ENOTFOUND, "not found")
	e.apiError("GET", "/v1/apps/myapp/builds?after=zz", e.alice, nil, 400, pier.EINVALID, "cursor")
}
