package pier_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

func TestValidateImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	for _, ok := range []string{
		"nginx", "nginx:1.27", "library/nginx:latest", "docker.io/library/nginx:1.27-alpine",
		"registry.example.com:5000/team/app:v2", "localhost/app", "localhost:5000/a/b/c",
		"ghcr.io/acme/my_app__x.y-z:V1.0_rc", "app@" + digest, "reg.io/app:1@" + digest,
		"Registry.Example.com/app", "a---b/c",
	} {
		if err := pier.ValidateImage(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, c := range []struct{ ref, want string }{
		{"", "no image reference"},
		{"Nginx", "must be lowercase"},
		{"team/App:1", "must be lowercase"},
		{"nginx:", "the tag"},
		{"nginx:-x", "the tag"},
		{"nginx:" + strings.Repeat("x", 129), "the tag"},
		{"app@sha256:abc", "the digest"},
		{"app@md5:" + strings.Repeat("a", 32), "the digest"},
		{"app@" + strings.ToUpper(digest), "the digest"},
		{"nginx 1.27", "a space"},
		{"nginx\n", "control"},
		{"ngïnx", "non-ASCII"},
		{"reg.io:99999/app", "port"},
		{"reg.io:0x50/app", "port"},
		{"-reg.io/app", "registry"},
		{"reg.io/", "empty component"},
		{"a//b", "empty component"},
		{"/app", "empty component"},
		{"app_", "path component"},
		{"a..b", "path component"},
		{":1.0", "no path"},
		{strings.Repeat("a", 256), "at most 255"},
		{strings.Repeat("a", pier.ImageRefMax+1), "characters: at most"},
	} {
		err := pier.ValidateImage(c.ref)
		if pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.50q: %v, want EINVALID saying %q", c.ref, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), "[registry[:port]/]path[:tag][@sha256:digest]") {
			t.Errorf("%.50q: the message does not show the expected form: %v", c.ref, err)
		}
		if strings.ContainsAny(err.Error(), "\n\x00") && c.ref != "" {
			t.Errorf("%.50q: the message echoes a control character: %q", c.ref, err)
		}
	}
}

func TestParseProcfile(t *testing.T) {
	got, err := pier.ParseProcfile("# comment\r\nweb: bundle exec puma -p $PORT\r\n\n  worker:python w.py  \nclock:\tx: y\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["web"] != "bundle exec puma -p $PORT" || got["worker"] != "python w.py" || got["clock"] != "x: y" {
		t.Fatalf("got %q", got)
	}
	for _, c := range []struct{ text, want string }{
		{"", "defines no process types"},
		{"# only a comment\n\n", "defines no process types"},
		{"web ./server", "line 1 is not \"type: command\""},
		{"\n\nWeb: ./server", "line 3: process type \"Web\" is invalid"},
		{"web_1: x", "process type \"web_1\" is invalid"},
		{"web: a\nweb: b", "line 2: process type web is defined twice (first on line 1)"},
		{"web:   ", "line 1: process type web has no command"},
		{"web: echo secret\x1b[2J", "control character"},
		{"web: \xff", "not UTF-8"},
	} {
		_, err := pier.ParseProcfile(c.text)
		if pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the message echoes a command: %v", c.text, err)
		}
	}
	if _, err := pier.ParseProcfile(strings.Repeat("#", pier.ProcfileMax+1)); pier.ErrorCode(err) != pier.ETOOLARGE {
		t.Errorf("huge Procfile: %v", err)
	}
	var many strings.Builder
	for i := 0; i <= pier.ProcfileTypesMax; i++ {
		fmt.Fprintf(&many, "p%d: x\n", i)
	}
	if _, err := pier.ParseProcfile(many.String()); pier.ErrorCode(err) != pier.ETOOLARGE {
		t.Errorf("too many types: %v", err)
	}
}

func TestErrRolloutFailed(t *testing.T) {
	for _, err := range []error{
		pier.ErrRolloutFailed,
		pier.Errorf(pier.EROLLOUT, "v5 did not come up: web: 0/1 new processes ready within 5m"),
		fmt.Errorf("kubernetes: %w", pier.ErrRolloutFailed),
		fmt.Errorf("apply: %w", pier.Errorf(pier.EROLLOUT, "v5 did not come up")),
	} {
		if !errors.Is(err, pier.ErrRolloutFailed) || pier.ErrorCode(err) != pier.EROLLOUT {
			t.Errorf("%v: not a rollout failure", err)
		}
	}
	for _, err := range []error{
		nil,
		errors.New("dial tcp 10.0.0.1:6443: connection refused"),
		pier.Errorf(pier.EUNAVAILABLE, "the API server is unreachable"),
		pier.Errorf(pier.EINVALID, "the new processes did not become available"),
	} {
		if errors.Is(err, pier.ErrRolloutFailed) {
			t.Errorf("%v: taken as a rollout failure", err)
		}
	}
}

func TestImageProcessTypes(t *testing.T) {
	md := `{"processes":[{"type":"web","command":["./server"],"args":["--port","5000"]},{"type":"worker","command":["./jobs"]}]}`
	got, err := pier.ImageProcessTypes(map[string]string{pier.BuildMetadataLabel: md})
	if err != nil || got["web"] != "./server --port 5000" || got["worker"] != "./jobs" || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	for _, labels := range []map[string]string{
		nil,
		{pier.BuildMetadataLabel: `{"processes":[]}`},
		{pier.BuildMetadataLabel: `not json`},
		{pier.BuildMetadataLabel: `{"processes":[{"type":"Bad Type","command":["x"]}]}`},
	} {
		if _, err := pier.ImageProcessTypes(labels); err == nil {
			t.Errorf("%v: no error", labels)
		}
	}
}
