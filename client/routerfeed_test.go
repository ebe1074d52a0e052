package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/client"
)

func TestDecodeRouterFrames(t *testing.T) {
	in := `{"type":"heartbeat"}
{"type":"snapshot","seq":1,"state":{"routes":{"web":["127.0.0.1:5000"]},"domains":{"a.test":"web"},"certs":[{"app":"web","name":"n","domains":["a.test"],"chain":"C","key":"K"}],"https":{"web":{"https_redirect":true,"hsts":false}},"settings":{"web":{"maintenance":true}},"challenges":{"tok":"tok.auth"}}}
{"type":"from-the-future","x":1}
{"type":"snapshot","seq":2,"state":{}}
`
	var got []pier.RouterFrame
	if err := client.DecodeRouterFrames(strings.NewReader(in), func(f pier.RouterFrame) error { got = append(got, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Type != "heartbeat" || got[1].Seq != 1 || got[2].Seq != 2 {
		t.Fatalf("frames %+v", got)
	}
	st := got[1].State
	if st.Routes["web"][0] != "127.0.0.1:5000" || st.Domains["a.test"] != "web" || st.Certs[0].Key != "K" || !st.HTTPS["web"].HTTPSRedirect ||
		!st.Settings["web"].Maintenance || st.Challenges["tok"] != "tok.auth" {
		t.Fatalf("state %+v", st)
	}
	for _, bad := range []string{`{"type":"snapshot","seq":3}`, `{"type":`, `[1]`} {
		if err := client.DecodeRouterFrames(strings.NewReader(bad), func(pier.RouterFrame) error { return nil }); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestRouterFeedReconnects: a feed that breaks off is followed again, and
// one that goes silent is given up after the heartbeat timeout; the token
// is read at each connection; refusals are reported with the server's
// message.
func TestRouterFeedReconnects(t *testing.T) {
	var conns atomic.Int32
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := conns.Add(1)
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path != "/internal/v1/router/watch" {
			http.NotFound(w, r)
			return
		}
		if n == 2 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			io.WriteString(w, `{"error":{"code":"forbidden","message":"user credentials are refused"}}`)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintf(w, `{"type":"snapshot","seq":%d,"state":{"routes":{"app%d":[]}}}`+"\n", n, n)
		w.(http.Flusher).Flush()
		if n == 3 {
			<-r.Context().Done() // silent: no heartbeat
		}
	}))
	defer srv.Close()
	var tokenReads atomic.Int32
	var states []string
	var stMu sync.Mutex
	f := &client.RouterFeed{
		URL:              srv.URL,
		Token:            func() (string, error) { return fmt.Sprintf("piersvc_router_%d", tokenReads.Add(1)), nil },
		Logger:           slog.New(slog.DiscardHandler),
		HeartbeatTimeout: 300 * time.Millisecond,
		MaxBackoff:       50 * time.Millisecond,
		OnState: func(up bool, err error) {
			stMu.Lock()
			defer stMu.Unlock()
			if up {
				states = append(states, "up")
			} else {
				states = append(states, "down: "+err.Error())
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var apps []string
	err := f.Run(ctx, func(st *pier.RouterState) {
		for app := range st.Routes {
			apps = append(apps, app)
		}
		if len(apps) == 3 {
			cancel()
		}
	})
	if err != context.Canceled {
		t.Fatalf("Run: %v (apps %v)", err, apps)
	}
	if strings.Join(apps, ",") != "app1,app3,app4" {
		t.Fatalf("snapshots of apps %v", apps)
	}
	stMu.Lock()
	all := strings.Join(states, "|")
	stMu.Unlock()
	for _, want := range []string{"up|down: the controller ended the stream", "refused the service token (403 Forbidden): user credentials are refused", "no heartbeat from the controller for 300ms"} {
		if !strings.Contains(all, want) {
			t.Errorf("states %q lack %q", all, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if auths[0] != "Bearer piersvc_router_1" || auths[2] != "Bearer piersvc_router_3" {
		t.Fatalf("authorization headers %v", auths)
	}
	if err := (&client.RouterFeed{URL: "10.0.0.1:9091"}).Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "use http://host:port") {
		t.Fatalf("bad URL: %v", err)
	}
}
