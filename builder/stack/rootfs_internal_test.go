package stack

import (
	"bytes"
	"strings"
	"testing"
)

func TestPhaseLog(t *testing.T) {
	var out bytes.Buffer
	p := &phaseLog{w: &out}
	for _, l := range []string{
		"I: Retrieving InRelease", "I: Retrieving adduser 3.134", "I: Validating adduser 3.134",
		"I: Retrieving apt 2.6.1", "I: Validating apt 2.6.1", "I: Extracting adduser...", "I: Extracting apt...",
		"W: Failure trying to run: chroot", "E: Couldn't download packages",
	} {
		p.Write([]byte(l + "\n"))
	}
	p.Write([]byte("partial"))
	want := "stack:   I: Retrieving InRelease\nstack:   I: Extracting adduser...\n" +
		"stack:   W: Failure trying to run: chroot\nstack:   E: Couldn't download packages\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if tail := p.tail(); !strings.HasSuffix(tail, "E: Couldn't download packages\npartial") {
		t.Errorf("tail %q", tail)
	}
}
