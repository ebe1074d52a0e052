package builder

import (
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	ok := []struct {
		raw, service, app string
	}{
		{"git-receive-pack '/myapp.git'", receivePack, "myapp"},
		{"git-receive-pack 'myapp.git'", receivePack, "myapp"},
		{"git-receive-pack /myapp.git", receivePack, "myapp"},
		{"git-receive-pack myapp.git", receivePack, "myapp"},
		{"git-upload-pack '/my-app-2.git'", uploadPack, "my-app-2"},
		{"git-upload-pack 'abc.git'", uploadPack, "abc"},
	}
	for _, tc := range ok {
		got, err := parseCommand(tc.raw)
		if err != nil {
			t.Errorf("parseCommand(%q): %v", tc.raw, err)
			continue
		}
		if got.Service != tc.service || got.App != tc.app {
			t.Errorf("parseCommand(%q) = %+v, want %s %s", tc.raw, got, tc.service, tc.app)
		}
	}

	bad := []struct {
		raw, want string // want: part of the reason
	}{
		{"", "no shell"},
		{"id", "only git push and git clone"},
		{"sh -c id", "only git push and git clone"},
		{"git-upload-archive 'myapp.git'", "only git push and git clone"},
		{"git receive-pack 'myapp.git'", "only git push and git clone"},
		{"git-receive-pack", "needs a repository"},
		{"git-receive-pack ", "needs a repository"},
		{"git-receive-pack '../x.git'", "invalid"},
		{"git-receive-pack '/../x.git'", "invalid"},
		{"git-receive-pack '-x.git'", "refused"},
		{"git-receive-pack '-xyz.git'", "invalid"},
		{"git-receive-pack '--upload-pack=id.git'", "invalid"},
		{"git-receive-pack 'a;id.git'", "invalid"},
		{"git-receive-pack 'a b.git'", "invalid"},
		{"git-receive-pack 'myapp.git' extra", "unbalanced quote"},
		{"git-receive-pack  'myapp.git'", "expected '<app>.git'"},
		{"git-receive-pack 'myapp.git", "unbalanced quote"},
		{"git-receive-pack '", "unbalanced quote"},
		{"git-receive-pack 'my'app.git'", "invalid"},
		{"git-receive-pack \"myapp.git\"", "expected '<app>.git'"},
		{"git-receive-pack 'myapp'", "expected '<app>.git'"},
		{"git-receive-pack '/srv/myapp.git'", "invalid"},
		{"git-receive-pack '//myapp.git'", "invalid"},
		{"git-receive-pack 'MyApp.git'", "invalid"},
		{"git-receive-pack 'my--app.git'", "two dashes"},
		{"git-receive-pack 'ab.git'", "characters"},
		{"git-receive-pack 'pier.git'", "reserved"},
		{"git-receive-pack '.git'", "empty"},
		{"git-receive-pack 'myapp.git.git'", "invalid"},
		{"git-receive-pack 'myapp.git'\nid", "control characters"},
		{"git-receive-pack 'myapp.git'\x00", "control characters"},
		{"git-receive-pack '$(id).git'", "invalid"},
		{"git-receive-pack '`id`.git'", "invalid"},
		{"git-receive-pack '" + strings.Repeat("a", 300) + ".git'", "bytes long"},
	}
	for _, tc := range bad {
		got, err := parseCommand(tc.raw)
		if err == nil {
			t.Errorf("parseCommand(%q) = %+v, want an error", tc.raw, got)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("parseCommand(%q): %q, want it to mention %q", tc.raw, msg, tc.want)
		}
		if strings.ContainsAny(msg, "\n\r\x00") {
			t.Errorf("parseCommand(%q): reason %q is not one clean line", tc.raw, msg)
		}
	}
}

func TestGitProtocolEnv(t *testing.T) {
	cases := []struct {
		env  []string
		want string
	}{
		{nil, ""},
		{[]string{"LANG=C", "GIT_PROTOCOL=version=2"}, "GIT_PROTOCOL=version=2"},
		{[]string{"GIT_PROTOCOL=version=2:evil"}, ""},
		{[]string{"GIT_PROTOCOL=version=2\nX=1"}, ""},
		{[]string{"GIT_EXEC_PATH=/tmp", "LD_PRELOAD=/tmp/x.so"}, ""},
	}
	for _, tc := range cases {
		got := strings.Join(gitProtocolEnv(tc.env), ",")
		if got != tc.want {
			t.Errorf("gitProtocolEnv(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestDiffRefsAndTarget(t *testing.T) {
	before := map[string]string{"refs/heads/main": "a", "refs/heads/old": "b", "refs/heads/same": "c"}
	after := map[string]string{"refs/heads/main": "d", "refs/heads/same": "c", "refs/heads/new": "e"}
	ch := diffRefs(before, after)
	want := map[string]refChange{
		"refs/heads/main": {"a", "d"},
		"refs/heads/old":  {"b", ""},
		"refs/heads/new":  {"", "e"},
	}
	if len(ch) != len(want) {
		t.Fatalf("diffRefs = %v, want %v", ch, want)
	}
	for k, v := range want {
		if ch[k] != v {
			t.Errorf("diffRefs[%s] = %v, want %v", k, ch[k], v)
		}
	}
	if ref, sha := deployTarget(ch); ref != "refs/heads/main" || sha != "d" {
		t.Errorf("deployTarget = %s %s", ref, sha)
	}
	if ref, _ := deployTarget(map[string]refChange{"refs/heads/main": {"a", ""}}); ref != "" {
		t.Errorf("deleted main deploys %s", ref)
	}
	if ref, _ := deployTarget(map[string]refChange{"refs/heads/master": {"", "f"}, "refs/heads/x": {"", "g"}}); ref != "refs/heads/master" {
		t.Errorf("master push deploys %q", ref)
	}
}
