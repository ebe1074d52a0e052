package docker

import (
	"slices"
	"testing"

	"github.com/pierpaas/pier"
)

func TestProcessEntrypoint(t *testing.T) {
	cnb := &pier.Build{Strategy: pier.StrategyPack, ProcessTypes: map[string]string{"web": "bundle exec puma"}}
	img := &pier.Build{Strategy: pier.StrategyImage, ProcessTypes: map[string]string{"web": "", "worker": "./work --fast"}}
	for _, tc := range []struct {
		b    *pier.Build
		typ  string
		want []string
	}{
		{cnb, "web", []string{"/cnb/process/web"}},
		{img, "web", nil},
		{img, "worker", []string{"/bin/sh", "-c", "./work --fast"}},
	} {
		if got := processEntrypoint(tc.b, tc.typ); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %v, want %v", tc.b.Strategy, tc.typ, got, tc.want)
		}
	}
	if got := runEntrypoint(cnb, []string{"ls", "-l"}); !slices.Equal(got, []string{"/cnb/lifecycle/launcher", "--", "ls", "-l"}) {
		t.Errorf("CNB run: %v", got)
	}
	if got := runEntrypoint(img, []string{"ls", "-l"}); !slices.Equal(got, []string{"ls", "-l"}) {
		t.Errorf("image run: %v", got)
	}
}

func TestRunAs(t *testing.T) {
	d := func(strategy string) pier.Deployment {
		return pier.Deployment{App: "app", Release: pier.Release{Version: 2, Build: &pier.Build{Strategy: strategy}}}
	}
	for _, tc := range []struct {
		strategy, imageUser, want string
		refused                   bool
	}{
		{pier.StrategyImage, "", nobody, false},
		{pier.StrategyImage, "root", nobody, false},
		{pier.StrategyImage, "0:0", nobody, false},
		{pier.StrategyImage, "app", "", false},
		{pier.StrategyDockerfile, "1000:1000", "", false},
		{pier.StrategyPack, "1000:1000", "", false},
		{pier.StrategyPack, "cnb", "", false},
		{pier.StrategyPack, "", "", true},
		{pier.StrategyPack, "root:cnb", "", true},
	} {
		got, err := runAs(d(tc.strategy), tc.imageUser)
		if (err != nil) != tc.refused || got != tc.want {
			t.Errorf("%s image with USER %q: %q, %v", tc.strategy, tc.imageUser, got, err)
		}
		if err != nil && pier.ErrorCode(err) != pier.EINVALID {
			t.Errorf("refusal of code %s", pier.ErrorCode(err))
		}
	}
}

func TestResources(t *testing.T) {
	r, err := resources("web", pier.Limits{Memory: "512Mi", CPU: "1.5"})
	if err != nil || r.Memory != 512<<20 || r.MemorySwap != 512<<20 || r.NanoCPUs != 15e8 {
		t.Errorf("512Mi, 1.5: %+v %v", r, err)
	}
	r, err = resources("web", pier.Limits{Memory: "1G", CPU: "250m"})
	if err != nil || r.Memory != 1e9 || r.NanoCPUs != 25e7 {
		t.Errorf("1G, 250m: %+v %v", r, err)
	}
	for _, l := range []pier.Limits{{Memory: "1m"}, {Memory: "2MB"}, {Memory: "1Ki"}, {CPU: "1.2345"}, {CPU: "abc"}} {
		if _, err := resources("web", l); pier.ErrorCode(err) != pier.EINVALID {
			t.Errorf("%+v: %v", l, err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	d := pier.Deployment{App: "app", Release: pier.Release{Version: 3, Config: pier.Config{"A": "1", "B": "2"},
		Build: &pier.Build{Strategy: pier.StrategyImage, Image: "nginx:1.27", ProcessTypes: map[string]string{"web": ""}}}}
	hash := func(d pier.Deployment) string {
		sp, err := newSpec(d, "web", "app")
		if err != nil {
			t.Fatal(err)
		}
		return sp.hash
	}
	base := hash(d)
	if hash(d) != base {
		t.Fatal("the hash of one deployment changes")
	}
	changes := map[string]func(*pier.Deployment){
		"config":  func(d *pier.Deployment) { d.Release.Config = pier.Config{"A": "1", "B": "3"} },
		"release": func(d *pier.Deployment) { d.Release.Version = 4 },
		"image": func(d *pier.Deployment) {
			d.Release.Build = &pier.Build{Strategy: pier.StrategyImage, Image: "nginx:1.28"}
		},
		"command": func(d *pier.Deployment) {
			d.Release.Build = &pier.Build{Strategy: pier.StrategyImage, Image: "nginx:1.27", ProcessTypes: map[string]string{"web": "nginx -g daemon off;"}}
		},
		"limits": func(d *pier.Deployment) { d.Limits = map[string]pier.Limits{"web": {Memory: "64Mi"}} },
	}
	for what, change := range changes {
		c := d
		change(&c)
		if hash(c) == base {
			t.Errorf("a change of %s keeps the hash", what)
		}
	}
	// Scaling is no change of what a container runs.
	c := d
	c.Formation = pier.Formation{"web": 5}
	if hash(c) != base {
		t.Errorf("the formation changes the hash")
	}
}

func TestCheckRunnable(t *testing.T) {
	d := pier.Deployment{App: "app", Release: pier.Release{Version: 1, Build: &pier.Build{Strategy: pier.StrategyHost, Image: "/var/lib/pier/builds/7"}}}
	if err := checkRunnable(d); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("host build: %v", err)
	}
	d.Release.Build = &pier.Build{Strategy: pier.StrategyImage, Image: "Bad Image"}
	if err := checkRunnable(d); pier.ErrorCode(err) != pier.EINVALID {
		t.Errorf("bad image: %v", err)
	}
	d.Release.Build = &pier.Build{Strategy: pier.StrategyImage, Image: "registry.example.com:5000/team/app:v2"}
	if err := checkRunnable(d); err != nil {
		t.Errorf("good image: %v", err)
	}
}
