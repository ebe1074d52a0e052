package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 {
		t.Errorf("--help exited %d", code)
	}
	for _, want := range []string{"usage: pier-stack", "-buildpacks", "PIER_DEBIAN_MIRROR", "--pull-policy never"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("--help does not mention %q:\n%s", want, errOut.String())
		}
	}
	errOut.Reset()
	if code := run([]string{"extra"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unexpected argument "extra"`) {
		t.Errorf("an extra argument: exit %d, %q", code, errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("stdout is for the builder's name only, got %q", out.String())
	}
}
