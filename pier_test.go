package pier_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/pierpaas/pier"
)

func TestValidateAppName(t *testing.T) {
	for _, ok := range []string{"abc", "my-app", "a1b", "app-2", strings.Repeat("a", 30)} {
		if err := pier.ValidateAppName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "a", "ab", "UPPER", "a..b", strings.Repeat("a", 31), strings.Repeat("a", 64), "$(id)", "my_app", "app-", "1app", "a--b", "pier", "www", "kube-system", "pier-x", "a b", "ünï"} {
		err := pier.ValidateAppName(bad)
		if pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), "app name") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestConfigChange(t *testing.T) {
	base := pier.Config{"A": "1", "B": "2"}
	next, note, err := pier.ConfigChange{Set: pier.Config{"C": "x y\nz=1"}, Unset: []string{"A"}}.Apply(base)
	if err != nil || note != "Set C; unset A" || len(next) != 2 || next["C"] != "x y\nz=1" || base["A"] != "1" {
		t.Fatalf("%v %q %v (base %v)", next, note, err, base)
	}
	if _, note, _ := (pier.ConfigChange{Unset: []string{"B", "A"}}).Apply(base); note != "Unset A, B" {
		t.Fatalf("note %q", note)
	}
	if _, _, err := (pier.ConfigChange{Unset: []string{"NOPE"}}).Apply(base); pier.ErrorCode(err) != pier.EINVALID {
		t.Fatalf("unsetting a missing key: %v", err)
	}
	for _, c := range []pier.ConfigChange{
		{},
		{Set: pier.Config{"1A": "x"}},
		{Set: pier.Config{"PORT": "80"}},
		{Set: pier.Config{"A": "x\x00y"}},
		{Set: pier.Config{"A": "x"}, Unset: []string{"A"}},
		{Set: pier.Config{"A": strings.Repeat("x", pier.ConfigValueMax+1)}},
	} {
		err := c.Validate()
		if err == nil {
			t.Errorf("%v validated", c.Unset)
		}
		if c.Set != nil && strings.Contains(err.Error(), "x\x00y") {
			t.Errorf("error echoes a value: %v", err)
		}
	}
	big := pier.Config{}
	for i := 0; i < 10; i++ {
		big[fmt.Sprintf("K%d", i)] = strings.Repeat("v", pier.ConfigValueMax)
	}
	if _, _, err := (pier.ConfigChange{Set: big}).Apply(nil); pier.ErrorCode(err) != pier.ETOOLARGE {
		t.Fatalf("oversized config: %v", err)
	}
}

func TestFormation(t *testing.T) {
	if err := (pier.Formation{"web": 2, "worker-1": 0}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []pier.Formation{{}, {"web": -1}, {"web": pier.ScaleMax + 1}, {"Web": 1}, {"1web": 1}, {"we b": 1}} {
		if pier.ErrorCode(f.Validate()) != pier.EINVALID {
			t.Errorf("%v validated", f)
		}
	}
	if s := (pier.Formation{"worker": 1, "web": 2}).String(); s != "web=2 worker=1" {
		t.Fatalf("String() = %q", s)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]int{"v3": 3, "3": 3, "V12": 12} {
		if got, err := pier.ParseVersion(in); got != want || err != nil {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "v", "v0", "-1", "v1.2", "x"} {
		if _, err := pier.ParseVersion(bad); pier.ErrorCode(err) != pier.EINVALID {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestNormalizeHostname(t *testing.T) {
	for in, want := range map[string]string{"WWW.Example.com.": "www.example.com", "*.example.com": "*.example.com", " a-b.c ": "a-b.c"} {
		if got, err := pier.NormalizeHostname(in); got != want || err != nil {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "localhost", "127.0.0.1", "a..b", "-a.com", "a-.com", "a_b.com", "*.*.com", "a.*.com", strings.Repeat("a", 64) + ".com", "exa mple.com"} {
		if _, err := pier.NormalizeHostname(bad); pier.ErrorCode(err) != pier.EINVALID {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestErrorCode(t *testing.T) {
	e := pier.Errorf(pier.ENOTFOUND, "app %q not found", "x")
	wrapped := fmt.Errorf("context: %w", e)
	if pier.ErrorCode(wrapped) != pier.ENOTFOUND || pier.ErrorMessage(wrapped) != `app "x" not found` {
		t.Fatalf("%v", wrapped)
	}
	if pier.ErrorCode(errors.New("boom")) != pier.EINTERNAL || strings.Contains(pier.ErrorMessage(errors.New("boom")), "boom") {
		t.Fatal("internal errors must not leak their text")
	}
	if pier.ErrorCode(nil) != "" {
		t.Fatal("nil")
	}
}

func TestValidateUser(t *testing.T) {
	for _, ok := range []string{"ab", "ada", "ada.lovelace", "a_1-2"} {
		if err := pier.ValidateUsername(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a", "Ada", "-ada", "a b", "$(id)", strings.Repeat("a", 41)} {
		if pier.ErrorCode(pier.ValidateUsername(bad)) != pier.EINVALID {
			t.Errorf("%q validated", bad)
		}
	}
	if pier.ValidatePassword("short") == nil || pier.ValidatePassword(strings.Repeat("x", 300)) == nil || pier.ValidatePassword("long enough") != nil {
		t.Fatal("password length rules")
	}
}

func TestNoSpace(t *testing.T) {
	err := pier.NoSpace("/srv/pier")
	if pier.ErrorCode(err) != pier.ENOSPACE || !strings.Contains(err.Message, "no space left on device") ||
		!strings.Contains(err.Message, "nothing was changed") || !strings.Contains(err.Message, "/srv/pier") {
		t.Fatalf("%v", err)
	}
	for _, full := range []error{err, fmt.Errorf("saving: %w", err), &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC},
		fmt.Errorf("copying: %w", &os.LinkError{Op: "link", Old: "a", New: "b", Err: syscall.EDQUOT})} {
		if !pier.IsNoSpace(full) {
			t.Errorf("IsNoSpace(%v) = false", full)
		}
	}
	for _, other := range []error{nil, errors.New("no space left on device"), &os.PathError{Op: "write", Path: "/x", Err: syscall.EIO},
		pier.Errorf(pier.EINVALID, "bad")} {
		if pier.IsNoSpace(other) {
			t.Errorf("IsNoSpace(%v) = true", other)
		}
	}
}

func TestNoSpaceAt(t *testing.T) {
	full := &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}
	err := pier.NoSpaceAt("/srv/builds", full)
	if pier.ErrorCode(err) != pier.ENOSPACE || !strings.Contains(pier.ErrorMessage(err), "/srv/builds") || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("NoSpaceAt of ENOSPC: %v (code %s)", err, pier.ErrorCode(err))
	}
	// A NoSpace already names its place: kept.
	if again := pier.NoSpaceAt("/elsewhere", err); again != err {
		t.Fatalf("NoSpaceAt of a NoSpace: %v", again)
	}
	for _, other := range []error{nil, errors.New("boom"), pier.Errorf(pier.EINVALID, "bad")} {
		if got := pier.NoSpaceAt("/srv", other); got != other {
			t.Errorf("NoSpaceAt(%v) = %v, want it unchanged", other, got)
		}
	}
}
