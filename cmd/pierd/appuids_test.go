package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestAppUIDsFlag: --app-uids (PIER_APP_UIDS) is the range LO-HI new apps'
// uids come from, 100000-165535 by default, and never reaches the system's
// uids (root above all).
func TestAppUIDsFlag(t *testing.T) {
	parse := func(args ...string) (options, error) {
		var o options
		if err := newFlags(&o, &bytes.Buffer{}).Parse(args); err != nil {
			t.Fatal(err)
		}
		return o, o.check()
	}
	if o, err := parse(); err != nil || o.appUIDs != [2]int{100000, 165535} {
		t.Fatalf("default: %v %v", o.appUIDs, err)
	}
	if o, err := parse("--app-uids", "200000-200999"); err != nil || o.appUIDs != [2]int{200000, 200999} {
		t.Fatalf("200000-200999: %v %v", o.appUIDs, err)
	}
	for arg, want := range map[string]string{
		"100000":           "LO-HI",
		"0-100":            "1000-2147483646",
		"999-5000":         "1000-2147483646",
		"5000-4000":        "first uid is above the last",
		"x-y":              "LO-HI",
		"1000-99999999999": "1000-2147483646",
	} {
		if _, err := parse("--app-uids", arg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", arg, err, want)
		}
	}
}
