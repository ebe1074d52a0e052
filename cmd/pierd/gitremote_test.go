package main

import (
	"bytes"
	"strings"
	"testing"
)

// The git remotes Pier hands out name --ssh-public-host when it is set (a
// builder behind a load balancer), else localhost and the listening port.
func TestGitURL(t *testing.T) {
	p := &platform{}
	p.sshPort.Store("2222")
	if got := p.gitURL("shop"); got != "ssh://git@localhost:2222/shop.git" {
		t.Errorf("default: %s", got)
	}
	p.sshPublic = "git.pier.example.com"
	if got := p.gitURL("shop"); got != "ssh://git@git.pier.example.com/shop.git" {
		t.Errorf("public host: %s", got)
	}
	for h, ok := range map[string]bool{
		"": true, "git.pier.example.com": true, "203.0.113.7:2222": true, "[2001:db8::1]:22": true,
		"ssh://git.example.com": false, "git@host": false, "host:0": false, "host:99999": false, "host/x": false, "a b": false,
	} {
		var o options
		if err := newFlags(&o, &bytes.Buffer{}).Parse([]string{"--ssh-public-host", h}); err != nil {
			t.Fatal(err)
		}
		err := o.check()
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "--ssh-public-host") {
			t.Errorf("%q: %v", h, err)
		}
	}
}
