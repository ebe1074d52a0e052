package pier_test

import (
	"strings"
	"testing"

	"github.com/pierpaas/pier"
)

func TestValidateCommand(t *testing.T) {
	for _, ok := range [][]string{{"ls"}, {"sh", "-c", "echo $HOME | wc -c"}, {"x", ""}, append([]string{"echo"}, make([]string, pier.CommandArgsMax-1)...)} {
		if err := pier.ValidateCommand(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, c := range []struct {
		argv []string
		code string
	}{
		{nil, pier.EINVALID},
		{[]string{}, pier.EINVALID},
		{[]string{" "}, pier.EINVALID},
		{[]string{"echo", "se\x00cret"}, pier.EINVALID},
		{append([]string{"echo"}, make([]string, pier.CommandArgsMax)...), pier.ETOOLARGE},
		{[]string{"echo", strings.Repeat("s", pier.CommandBytesMax)}, pier.ETOOLARGE},
	} {
		err := pier.ValidateCommand(c.argv)
		if pier.ErrorCode(err) != c.code || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "sss") {
			t.Errorf("%.40q: %v, want %s", c.argv, err, c.code)
		}
	}
}

func TestLogOptionsValidate(t *testing.T) {
	for _, ok := range []pier.LogOptions{{}, {Lines: 1}, {Lines: pier.LogLinesMax, Type: "web", Follow: true}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, bad := range []pier.LogOptions{{Lines: -1}, {Lines: pier.LogLinesMax + 1}, {Type: "Web"}, {Type: "web.1"}} {
		if err := bad.Validate(); pier.ErrorCode(err) != pier.EINVALID {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
