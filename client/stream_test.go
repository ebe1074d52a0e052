package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
)

// ndjsonServer answers every request with the given lines, flushed one by
// one after pause each, and records the request.
func ndjsonServer(t *testing.T, pause time.Duration, lines ...string) (*httptest.Server, *http.Request) {
	var seen http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen = *r.Clone(context.Background())
		seen.Body = io.NopCloser(strings.NewReader(string(body)))
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for _, l := range lines {
			time.Sleep(pause)
			io.WriteString(w, l+"\n")
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestRunStreamsOutputAndReturnsExit(t *testing.T) {
	srv, seen := ndjsonServer(t, 0,
		`{"stream":"stdout","data":"hello "}`, `{"stream":"stderr","data":"warn\n"}`,
		`{"stream":"stdout","data":"world\n"}`, ``, `{"exit":42}`)
	var stdout, stderr strings.Builder
	code, err := New(srv.URL, "tok").Run(context.Background(), "my app", []string{"sh", "-c", "echo $X; exit 42"}, &stdout, &stderr)
	if err != nil || code != 42 {
		t.Fatalf("code %d, err %v", code, err)
	}
	if stdout.String() != "hello world\n" || stderr.String() != "warn\n" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	body, _ := io.ReadAll(seen.Body)
	if seen.Method != "POST" || seen.URL.EscapedPath() != "/v1/apps/my%20app/run" || string(body) != `{"command":["sh","-c","echo $X; exit 42"]}`+"\n" ||
		seen.Header.Get("Accept") != "application/x-ndjson" || seen.Header.Get("Authorization") != "Bearer tok" {
		t.Fatalf("request %s %s %s %v", seen.Method, seen.URL, body, seen.Header)
	}
}

func TestRunErrors(t *testing.T) {
	ctx := context.Background()
	// An error frame after the start.
	srv, _ := ndjsonServer(t, 0, `{"stream":"stdout","data":"x"}`, `{"error":{"code":"internal","message":"internal error; the server log has the details"}}`)
	_, err := New(srv.URL, "t").Run(ctx, "myapp", []string{"x"}, nil, nil)
	if pier.ErrorCode(err) != pier.EINTERNAL || !strings.Contains(err.Error(), "server log") {
		t.Fatalf("err %v", err)
	}
	// A stream cut before the exit status.
	srv, _ = ndjsonServer(t, 0, `{"stream":"stdout","data":"x"}`)
	if _, err := New(srv.URL, "t").Run(ctx, "myapp", []string{"x"}, nil, nil); err == nil || !strings.Contains(err.Error(), "ended before the command's exit status") {
		t.Fatalf("err %v", err)
	}
	// An ordinary error answer.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"code":"invalid","message":"app \"myapp\" has no build yet: git push first"}}`)
	}))
	defer api.Close()
	if _, err := New(api.URL, "t").Run(ctx, "myapp", []string{"x"}, nil, nil); pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), "no build yet") {
		t.Fatalf("err %v", err)
	}
	// Something that is not a Pier stream.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>hello</html>")
	}))
	defer web.Close()
	if _, err := New(web.URL, "t").Run(ctx, "myapp", []string{"x"}, nil, nil); err == nil || !strings.Contains(err.Error(), "not a stream") {
		t.Fatalf("err %v", err)
	}
}

// The client's timeout bounds the wait for a stream to begin, not the
// stream itself.
func TestStreamTimeoutIsForTheStartOnly(t *testing.T) {
	line := func(text string) string {
		b, _ := json.Marshal(pier.LogLine{Process: "web.1", Text: text})
		return string(b)
	}
	srv, seen := ndjsonServer(t, 150*time.Millisecond, line("one"), line("two"), line("three"))
	c := New(srv.URL, "t", WithTimeout(100*time.Millisecond))
	var got []string
	err := c.Logs(context.Background(), "myapp", pier.LogOptions{Lines: 5, Type: "web", Follow: true}, func(l pier.LogLine) error {
		got = append(got, l.Process+" "+l.Text)
		return nil
	})
	if err != nil || strings.Join(got, ",") != "web.1 one,web.1 two,web.1 three" {
		t.Fatalf("got %q, %v", got, err)
	}
	if q := seen.URL.RawQuery; q != "follow=true&lines=5&type=web" {
		t.Fatalf("query %q", q)
	}

	// A server that never starts answering times out.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	err = New(hang.URL, "t", WithTimeout(100*time.Millisecond)).Logs(context.Background(), "myapp", pier.LogOptions{}, func(pier.LogLine) error { return nil })
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %T %v, want *TimeoutError", err, err)
	}
}

func TestLogsStopsOnCallbackErrorAndErrorFrame(t *testing.T) {
	srv, _ := ndjsonServer(t, 0, `{"process":"web.1","text":"a"}`, `{"process":"web.1","text":"b"}`)
	stop := errors.New("enough")
	n := 0
	err := New(srv.URL, "t").Logs(context.Background(), "myapp", pier.LogOptions{}, func(pier.LogLine) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d lines", err, n)
	}
	srv, _ = ndjsonServer(t, 0, `{"process":"web.1","text":"a"}`, `{"error":{"code":"not_found","message":"gone"}}`)
	err = New(srv.URL, "t").Logs(context.Background(), "myapp", pier.LogOptions{}, func(pier.LogLine) error { return nil })
	if pier.ErrorCode(err) != pier.ENOTFOUND {
		t.Fatalf("err %v", err)
	}
}

func TestBuildAndProcessPaths(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+strings.TrimSpace(string(b)))
		if r.Method == "POST" {
			w.WriteHeader(204)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":7,"log":"built","items":[]}`)
	}))
	defer srv.Close()
	c := New(srv.URL, "t")
	ctx := context.Background()
	if b, err := c.Build(ctx, "myapp", 7); err != nil || b.Log != "built" {
		t.Fatalf("Build: %+v %v", b, err)
	}
	c.LatestBuild(ctx, "myapp")
	c.Builds(ctx, "myapp", pier.Page{Limit: 3})
	c.Processes(ctx, "myapp")
	c.Restart(ctx, "myapp", "web")
	c.Restart(ctx, "myapp", "")
	want := []string{
		"GET /v1/apps/myapp/builds/7 ",
		"GET /v1/apps/myapp/builds/latest ",
		"GET /v1/apps/myapp/builds?limit=3 ",
		"GET /v1/apps/myapp/ps ",
		`POST /v1/apps/myapp/ps/restart {"type":"web"}`,
		`POST /v1/apps/myapp/ps/restart {}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
