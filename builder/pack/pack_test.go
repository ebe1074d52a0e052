package pack

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/pierpaas/pier"
)

func TestUsesDockerfile(t *testing.T) {
	for _, tc := range []struct {
		files []string
		want  bool
	}{
		{nil, false},
		{[]string{"Dockerfile"}, true},
		{[]string{"Dockerfile", "project.toml"}, false}, // opted into buildpacks
		{[]string{"dockerfile"}, false},
		{[]string{"main.go"}, false},
	} {
		dir := t.TempDir()
		for _, f := range tc.files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := usesDockerfile(dir); got != tc.want {
			t.Errorf("files %v: usesDockerfile = %v, want %v", tc.files, got, tc.want)
		}
	}
	// A Dockerfile that is a directory or a symlink is not one to build.
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "Dockerfile"), 0o755)
	if usesDockerfile(dir) {
		t.Error("a Dockerfile directory was taken for a Dockerfile")
	}
}

func TestTagOf(t *testing.T) {
	for in, want := range map[string]string{
		"":       "latest",
		"1a2b3c": "git-1a2b3c",
		"1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b": "git-1a2b3c4d5e6f",
	} {
		got := tagOf(in)
		if got != want {
			t.Errorf("tagOf(%q) = %q, want %q", in, got, want)
		}
		if err := pier.ValidateImage("r.example/pier/app:" + got); err != nil {
			t.Errorf("tag %q: %v", got, err)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := Registry{Host: "127.0.0.1:5000", Username: "pier", Password: "s3cret"}
	if got := r.Repository("myapp"); got != "127.0.0.1:5000/pier/myapp" {
		t.Fatalf("Repository = %q", got)
	}
	if got := (Registry{Host: "r.example", Prefix: "team/apps"}).Repository("x"); got != "r.example/team/apps/x" {
		t.Fatalf("Repository with prefix = %q", got)
	}
	raw, err := base64.URLEncoding.DecodeString(r.Auth("127.0.0.1:5000/pier/myapp@sha256:abc"))
	if err != nil {
		t.Fatal(err)
	}
	var auth struct{ Username, Password, ServerAddress string }
	if err := json.Unmarshal(raw, &auth); err != nil || auth.Username != "pier" || auth.Password != "s3cret" || auth.ServerAddress != "127.0.0.1:5000" {
		t.Fatalf("auth %s: %+v %v", raw, auth, err)
	}
	// Credentials go to their registry only, and only when there are some.
	for _, ref := range []string{"other.example/pier/myapp", "127.0.0.1:50000/x", "127.0.0.1:5000"} {
		if a := r.Auth(ref); a != "" {
			t.Errorf("Auth(%q) = %q: credentials for another registry", ref, a)
		}
	}
	if a := (Registry{Host: "127.0.0.1:5000"}).Auth("127.0.0.1:5000/pier/x"); a != "" {
		t.Errorf("auth without credentials: %q", a)
	}
	for _, bad := range []Registry{{}, {Host: "Bad Host"}, {Host: "r.example", Prefix: "UPPER"}} {
		if err := bad.validate(); err == nil {
			t.Errorf("registry %+v accepted", bad)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("no Docker client accepted")
	}
}
