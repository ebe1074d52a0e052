package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestKubeBuildFlags: --build-strategy kubernetes goes with the kubernetes
// scheduler and a source URL that build Pods reach, and runs builds as no root.
func TestKubeBuildFlags(t *testing.T) {
	parse := func(args ...string) (options, error) {
		var o options
		var out bytes.Buffer
		if err := newFlags(&o, &out).Parse(args); err != nil {
			t.Fatal(err)
		}
		return o, o.check()
	}
	ok := []string{"--scheduler", "kubernetes", "--build-strategy", "kubernetes", "--build-source-url", "http://pier-internal.pier.svc:9091"}
	o, err := parse(ok...)
	if err != nil {
		t.Fatal(err)
	}
	if o.kubeBuild.namespace != "pier-builds" || o.kubeBuild.uid != 1000 || o.kubeBuild.gid != 1000 || o.kubeBuild.timeout.Minutes() != 15 {
		t.Fatalf("defaults: %+v", o.kubeBuild)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--scheduler", "docker", "--build-strategy", "kubernetes", "--build-source-url", "http://x:9091"}, "--scheduler kubernetes"},
		{[]string{"--scheduler", "kubernetes", "--build-strategy", "kubernetes"}, "--build-source-url"},
		{append(ok, "--build-uid", "0"), "never run as root"},
		{append(ok, "--internal-addr", "off"), "--internal-addr"},
		{append(ok[:4:4], "--build-source-url", "pier-internal:9091"), "http or https URL"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}

// TestProcessPortsFlag: --process-ports is a range LO-HI of unprivileged
// ports, and a bad one says how to write it.
func TestProcessPortsFlag(t *testing.T) {
	parse := func(args ...string) (options, error) {
		var o options
		if err := newFlags(&o, &bytes.Buffer{}).Parse(args); err != nil {
			t.Fatal(err)
		}
		return o, o.check()
	}
	if o, err := parse("--scheduler", "docker", "--process-ports", "26000-26999"); err != nil || o.ports != [2]int{26000, 26999} {
		t.Fatalf("26000-26999: %v %v", o.ports, err)
	}
	if o, err := parse(); err != nil || o.ports != [2]int{} {
		t.Fatalf("default: %v %v (want the scheduler's own)", o.ports, err)
	}
	for arg, want := range map[string]string{
		"20000":       "LO-HI",
		"a-b":         "LO-HI",
		"80-90":       "1024-65535",
		"60000-70000": "1024-65535",
		"3000-2000":   "first port is above the last",
	} {
		if _, err := parse("--process-ports", arg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", arg, err, want)
		}
	}
}

// TestServiceTokensSecretFlag: --service-tokens-secret is NAMESPACE/NAME.
func TestServiceTokensSecretFlag(t *testing.T) {
	for _, bad := range []string{"pier-service-tokens", "/x", "ns/", "a/b/c"} {
		var o options
		if err := newFlags(&o, &bytes.Buffer{}).Parse([]string{"--service-tokens-secret", bad}); err != nil {
			t.Fatal(err)
		}
		if err := o.check(); err == nil || !strings.Contains(err.Error(), "NAMESPACE/NAME") {
			t.Errorf("%q: %v, want an error saying NAMESPACE/NAME", bad, err)
		}
	}
}
