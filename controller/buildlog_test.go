package controller

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestBuildLogKeepsAll(t *testing.T) {
	l := newBuildLog(markerRoom + 40)
	for _, s := range []string{"hello ", "", "world\n", strings.Repeat("z", 28)} {
		l.Write([]byte(s))
	}
	if got, want := l.String(), "hello world\n"+strings.Repeat("z", 28); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestBuildLogCuts(t *testing.T) {
	// 20 bytes of head, 20 of tail.
	for _, tc := range []struct {
		writes []string
		want   string
	}{
		{[]string{"0123456789abcdefghijKLMNOPQRSTUVWXYZ+-"}, "0123456789abcdefghijKLMNOPQRSTUVWXYZ+-"}, // fits
		{[]string{"0123456789abcdefghij", "0123456789", "ABCDEFGHIJKLMNOPQRST"},
			"0123456789abcdefghij\n[... 10 bytes cut ...]\nABCDEFGHIJKLMNOPQRST"},
		// One big write keeps its own end.
		{[]string{strings.Repeat("a", 20) + strings.Repeat("b", 100) + strings.Repeat("c", 20)},
			strings.Repeat("a", 20) + "\n[... 100 bytes cut ...]\n" + strings.Repeat("c", 20)},
		// Cuts snap to line ends.
		{[]string{"line one\nline two\nxx", strings.Repeat("-", 50), "yy\nlast line\n"},
			"line one\nline two\n[... 55 bytes cut ...]\nlast line\n"},
		// Never inside a UTF-8 sequence: "é" is 2 bytes, "€" 3.
		{[]string{strings.Repeat("é", 10) + "€€€€€€€€€€€€€" + strings.Repeat("€", 7)},
			strings.Repeat("é", 10) + "\n[... 42 bytes cut ...]\n" + strings.Repeat("€", 6)},
	} {
		l := newBuildLog(markerRoom + 40)
		for _, w := range tc.writes {
			if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write %d, %v", n, err)
			}
		}
		got := l.String()
		if got != tc.want {
			t.Errorf("writes %q:\ngot  %q\nwant %q", tc.writes, got, tc.want)
		}
		if !utf8.ValidString(got) || len(got) > markerRoom+40 {
			t.Errorf("%q: %d bytes, valid UTF-8 %v", got, len(got), utf8.ValidString(got))
		}
	}
}

func TestBuildLogConcurrentWrites(t *testing.T) {
	l := newBuildLog(1 << 12)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				fmt.Fprintf(l, "goroutine %d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	s := l.String()
	if len(s) > 1<<12 || !strings.HasPrefix(s, "goroutine ") || !strings.HasSuffix(s, "\n") || !strings.Contains(s, "bytes cut") {
		t.Fatalf("%d bytes: %.80q", len(s), s)
	}
}
