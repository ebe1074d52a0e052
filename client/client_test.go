package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pierpaas/pier"
)

func TestAPIErrorBecomesPierError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"code":"not_found","message":"app \"nope\" not found"}}`)
	}))
	defer srv.Close()

	_, err := New(srv.URL, "t").App(context.Background(), "nope")
	var pe *pier.Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %T %v, want *pier.Error", err, err)
	}
	if pier.ErrorCode(err) != pier.ENOTFOUND || pe.Message != `app "nope" not found` {
		t.Fatalf("code %q message %q", pier.ErrorCode(err), pe.Message)
	}
}

func TestNonJSONErrorNamesStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
	}))
	defer srv.Close()

	err := New(srv.URL, "").Health(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 502 {
		t.Fatalf("err = %T %v, want *StatusError 502", err, err)
	}
	if !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Fatalf("message %q does not name the status", err)
	}
}

func TestNonJSONSuccessIsAClearError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>a web site, not Pier</html>")
	}))
	defer srv.Close()
	_, err := New(srv.URL, "").Whoami(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not the expected JSON") {
		t.Fatalf("err = %v", err)
	}
}

// Fingerprints hold '/' and '+': the '/' must not split the path.
func TestPathSegmentsAreEscaped(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.EscapedPath())
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := New(srv.URL, "t")
	ctx := context.Background()
	if err := c.RemoveKey(ctx, "SHA256:ab/c+d=="); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDomain(ctx, "my app", "a b.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePerm(ctx, "myapp", "bob?x"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"DELETE /v1/keys/SHA256:ab%2Fc+d==",
		"DELETE /v1/apps/my%20app/domains/a%20b.example.com",
		"DELETE /v1/apps/myapp/perms/bob%3Fx",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("paths:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestHeadersAndBodies(t *testing.T) {
	type rec struct{ method, path, query, auth, ua, ctype, body string }
	var got []rec
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, rec{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("User-Agent"), r.Header.Get("Content-Type"), strings.TrimSpace(string(b))})
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/apps/myapp/config":
			io.WriteString(w, `{"app":"myapp","version":3,"note":"Set A; unset B"}`)
		case "/v1/apps":
			io.WriteString(w, `{"items":[{"name":"a"}],"next":"c2"}`)
		default:
			io.WriteString(w, `{}`)
		}
	}))
	defer srv.Close()
	c := New(srv.URL+"/", "sekrit")
	ctx := context.Background()

	rel, err := c.SetConfig(ctx, "myapp", map[string]string{"A": "x y=z\nw"}, []string{"B"})
	if err != nil || rel.Version != 3 {
		t.Fatalf("SetConfig: %v %+v", err, rel)
	}
	apps, err := c.ListApps(ctx, pier.Page{Limit: 2, After: "c1"})
	if err != nil || len(apps.Items) != 1 || apps.Next != "c2" {
		t.Fatalf("ListApps: %v %+v", err, apps)
	}
	if _, err := c.Rollback(ctx, "myapp", 0); err != nil {
		t.Fatal(err)
	}

	if got[0].method != "PATCH" || got[0].auth != "Bearer sekrit" || got[0].ua != "pier-cli/"+Version || got[0].ctype != "application/json" {
		t.Fatalf("request: %+v", got[0])
	}
	var body map[string]*string
	if err := json.Unmarshal([]byte(got[0].body), &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 2 || body["A"] == nil || *body["A"] != "x y=z\nw" || body["B"] != nil {
		t.Fatalf("config body %s", got[0].body)
	}
	if got[1].query != "after=c1&limit=2" {
		t.Fatalf("query %q", got[1].query)
	}
	if got[2].path != "/v1/apps/myapp/releases/rollback" || got[2].body != "{}" {
		t.Fatalf("rollback: %+v", got[2])
	}

	// No token, no Authorization header.
	got = nil
	if err := New(srv.URL, "").Health(ctx); err != nil {
		t.Fatal(err)
	}
	if got[0].auth != "" {
		t.Fatalf("sent Authorization %q without a token", got[0].auth)
	}
}

// Go's resolver does not know *.localhost; the client dials it on loopback
// and still sends the name as the Host, which the router routes on.
func TestLocalhostNamesDialLoopback(t *testing.T) {
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host = r.Host
		io.WriteString(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))

	for _, name := range []string{"pier.localhost", "myapp.pier.LOCALHOST", "localhost"} {
		c := New("http://"+name+":"+port, "")
		if err := c.Health(context.Background()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if host != name+":"+port {
			t.Fatalf("Host %q, want %q", host, name+":"+port)
		}
	}
	if IsLocalhost("localhost.example.com") || IsLocalhost("notlocalhost") {
		t.Fatal("IsLocalhost matched a non-loopback name")
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	start := time.Now()
	err := New(srv.URL, "", WithTimeout(100*time.Millisecond)).Health(context.Background())
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %T %v, want *TimeoutError", err, err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("timeout did not cut the request short")
	}
}

func TestBadBaseURL(t *testing.T) {
	for _, u := range []string{"pier.localhost:8080", "ftp://x", "http://"} {
		if err := New(u, "").Health(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Fatalf("%q: err = %v", u, err)
		}
	}
}
