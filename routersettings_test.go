package pier_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

func TestRouterChangeJSON(t *testing.T) {
	var c pier.RouterChange
	if err := json.Unmarshal([]byte(`{"maintenance":true,"allow":null,"timeout_seconds":30}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Maintenance == nil || !*c.Maintenance || c.Allow != nil || *c.TimeoutSeconds != 30 || !reflect.DeepEqual(c.Unset, []string{"allow"}) {
		t.Fatalf("%+v", c)
	}
	b, err := json.Marshal(c)
	if err != nil || string(b) != `{"allow":null,"maintenance":true,"timeout_seconds":30}` {
		t.Fatalf("%s %v", b, err)
	}
	for _, bad := range []struct{ in, want string }{
		{`{"nope":1}`, `unknown router setting "nope"`},
		{`{"nope":null}`, `unknown router setting "nope"`},
		{`{"maintenance":1}`, "true or false"},
		{`{"allow":[1]}`, "list of networks"},
		{`[]`, "JSON object"},
		{`null`, "JSON object"},
	} {
		err := json.Unmarshal([]byte(bad.in), &c)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestRouterChangeApply(t *testing.T) {
	on, limit, allow := true, int64(1<<20), []string{"10.9.8.7/8", "::ffff:203.0.113.7", "203.0.113.7", "fd00::1/8"}
	next, detail, err := pier.RouterChange{Maintenance: &on, Allow: &allow, BodyLimitBytes: &limit}.Apply(pier.RouterSettings{TimeoutSeconds: 5})
	want := pier.RouterSettings{Maintenance: true, Allow: []string{"10.0.0.0/8", "203.0.113.7", "fd00::/8"}, BodyLimitBytes: 1 << 20, TimeoutSeconds: 5}
	if err != nil || !reflect.DeepEqual(next, want) || detail != "maintenance on; allow 10.0.0.0/8,203.0.113.7,fd00::/8; body limit 1048576 bytes" {
		t.Fatalf("%+v %q %v", next, detail, err)
	}
	zero, bigT, big := 0, 3601, int64(pier.BodyLimitMax+1)
	for _, c := range []struct {
		c    pier.RouterChange
		want string
	}{
		{pier.RouterChange{}, "no router settings given"},
		{pier.RouterChange{TimeoutSeconds: &zero, Unset: []string{pier.RouterTimeout}}, "both set and unset"},
		{pier.RouterChange{TimeoutSeconds: &bigT}, "1s to 1h"},
		{pier.RouterChange{BodyLimitBytes: &big}, "too large"},
		{pier.RouterChange{Unset: []string{"colour"}}, "unknown router setting"},
		{pier.RouterChange{Allow: &[]string{"10.0.0.1%eth0"}}, "neither a network"},
	} {
		if _, _, err := c.c.Apply(pier.RouterSettings{}); pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.c, err, c.want)
		}
	}
	many := make([]string, pier.AllowMax+1)
	for i := range many {
		many[i] = "10.0.0.1"
	}
	if _, err := pier.ParseAllow(many); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Fatalf("too many: %v", err)
	}
}
