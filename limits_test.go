package pier_test

import (
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

func TestValidateMemory(t *testing.T) {
	for _, ok := range []string{"512Mi", "1Gi", "4Mi", "1Ti", "4096Ki", "4194304", "5M", "1G", "1T", "100000k"} {
		if err := pier.ValidateMemory(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, c := range []struct{ q, want string }{
		{"", "invalid"}, {"0", "too small"}, {"0Mi", "too small"}, {"3Mi", "too small"}, {"4194303", "too small"},
		{"2Ti", "too large"}, {"1025Gi", "too large"}, {"9999999999999999Ti", "too large"},
		{"512m", "for megabytes write 512M or 512Mi"}, {"512MB", "without the B"}, {"512K", "512k (1000 bytes) or 512Ki"},
		{"0512Mi", "invalid"}, {"1.5Gi", "invalid"}, {"-1Gi", "invalid"}, {"1 Gi", "invalid"}, {"1Pi", "invalid"}, {"lots", "invalid"},
	} {
		err := pier.ValidateMemory(c.q)
		if pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.q, err, c.want)
		}
	}
}

func TestValidateCPU(t *testing.T) {
	for _, ok := range []string{"500m", "1m", "1", "1.5", "0.25", "0.001", "256", "256000m"} {
		if err := pier.ValidateCPU(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, c := range []struct{ q, want string }{
		{"", "invalid"}, {"0", "zero"}, {"0m", "zero"}, {"0.000", "zero"}, {"257", "too large"}, {"256001m", "too large"},
		{"0.0001", "invalid"}, {"1.", "invalid"}, {".5", "invalid"}, {"500M", "invalid"}, {"05", "invalid"}, {"-1", "invalid"}, {"1 core", "invalid"},
	} {
		err := pier.ValidateCPU(c.q)
		if pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.q, err, c.want)
		}
	}
}

func TestLimitsChange(t *testing.T) {
	s := func(v string) *string { return &v }
	base := map[string]pier.Limits{"web": {Memory: "512Mi"}, "worker": {Memory: "1Gi", CPU: "1"}}
	c := pier.LimitsChange{
		Memory: map[string]*string{"web": s("1Gi"), "worker": nil},
		CPU:    map[string]*string{"web": s("500m"), "clock": s("100m")},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if set := c.Set(); strings.Join(set, ",") != "clock,web" {
		t.Fatalf("Set() = %v", set)
	}
	next, detail, err := c.Apply(base)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pier.Limits{"web": {Memory: "1Gi", CPU: "500m"}, "worker": {CPU: "1"}, "clock": {CPU: "100m"}}
	if len(next) != len(want) || next["web"] != want["web"] || next["worker"] != want["worker"] || next["clock"] != want["clock"] {
		t.Fatalf("next %v", next)
	}
	if detail != "clock cpu=100m; web memory=1Gi cpu=500m; worker memory unset" {
		t.Fatalf("detail %q", detail)
	}
	if base["web"].Memory != "512Mi" {
		t.Fatal("Apply changed its base")
	}
	// A type left with no limit is dropped.
	next, _, err = pier.LimitsChange{CPU: map[string]*string{"worker": nil}, Memory: map[string]*string{"worker": nil}}.Apply(base)
	if _, ok := next["worker"]; err != nil || ok || len(next) != 1 {
		t.Fatalf("unset all of worker: %v %v", next, err)
	}
	if _, _, err := (pier.LimitsChange{CPU: map[string]*string{"web": nil}}).Apply(base); pier.ErrorCode(err) != pier.EINVALID || !strings.Contains(err.Error(), "web has no cpu limit: nothing to unset") {
		t.Fatalf("unsetting what is not set: %v", err)
	}
	for _, bad := range []pier.LimitsChange{
		{},
		{Memory: map[string]*string{}},
		{Memory: map[string]*string{"Web": s("1Gi")}},
		{Memory: map[string]*string{"web": s("1GB")}},
		{CPU: map[string]*string{"web": s("lots")}},
	} {
		if err := bad.Validate(); pier.ErrorCode(err) != pier.EINVALID {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
