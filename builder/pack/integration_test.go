package pack_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/pack"
	"github.com/pierpaas/pier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// copySample copies a sample app of the host strategy's tests.
func copySample(t *testing.T, name string) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "host", "testdata", name)
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, fi.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestBuild builds with the real pack library, Docker daemon, Pier's
// builder image and a registry with a password: the image is pushed and
// named by digest, and its process types come from the buildpacks.
func TestBuild(t *testing.T) {
	cli := testenv.Docker(t)
	builder := testenv.BuilderImage(t)
	reg := testenv.StartRegistry(t)
	s, err := pack.New(pack.Config{
		Docker:         cli,
		Registry:       pack.Registry{Host: reg.Host, Username: reg.Username, Password: reg.Password},
		DefaultBuilder: builder,
	})
	if err != nil {
		t.Fatal(err)
	}
	app := "pack-go"
	t.Cleanup(func() { removeCache(t, app) })
	t.Cleanup(func() { removeImages(t, cli, reg.Host+"/pier/"+app) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := &testenv.Buffer{}
	res, err := s.Build(ctx, pier.BuildRequest{App: app, Commit: "0123456789abcdef", SourceDir: copySample(t, "go-hello"), Log: log})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	if !strings.HasPrefix(res.Image, reg.Host+"/pier/"+app+"@sha256:") || res.Strategy != "" {
		t.Fatalf("image %q, strategy %q", res.Image, res.Strategy)
	}
	if res.ProcessTypes["web"] == "" {
		t.Fatalf("process types %v", res.ProcessTypes)
	}
	for _, want := range []string{"Go app detected", "Pushing", "Built " + res.Image} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("the build log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log.String(), reg.Password) {
		t.Fatal("the build log holds the registry's password")
	}

	// The next build's image replaces this one's in the daemon (it stays
	// in the registry): one image per app, not one per push.
	first := reg.Host + "/pier/" + app + ":git-0123456789ab"
	if _, err := s.Build(ctx, pier.BuildRequest{App: app, Commit: "fedcba9876543210", SourceDir: copySample(t, "go-hello"), Log: &testenv.Buffer{}}); err != nil {
		t.Fatalf("second build: %v", err)
	}
	imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", reg.Host+"/pier/"+app))})
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, img := range imgs {
		tags = append(tags, img.RepoTags...)
	}
	if slices.Contains(tags, first) || !slices.Contains(tags, reg.Host+"/pier/"+app+":git-fedcba987654") {
		t.Fatalf("the daemon's images of %s after a second build: %v, want the second's only", app, tags)
	}

	// A wrong password: the push fails with the registry's reason.
	bad, err := pack.New(pack.Config{
		Docker:         cli,
		Registry:       pack.Registry{Host: reg.Host, Username: reg.Username, Password: "wrong"},
		DefaultBuilder: builder,
	})
	if err != nil {
		t.Fatal(err)
	}
	log = &testenv.Buffer{}
	_, err = bad.Build(ctx, pier.BuildRequest{App: app, Commit: "0123456789abcdef", SourceDir: copySample(t, "go-hello"), Log: log})
	if err == nil || !strings.Contains(pier.ErrorMessage(err), "pushing the image") || !strings.Contains(strings.ToLower(pier.ErrorMessage(err)), "auth") {
		t.Fatalf("push with a wrong password: %v", err)
	}

	// A source no buildpack detects fails with the build's reason.
	log = &testenv.Buffer{}
	_, err = s.Build(ctx, pier.BuildRequest{App: app, Commit: "1", SourceDir: copySample(t, "nothing"), Log: log})
	if err == nil || !strings.Contains(pier.ErrorMessage(err), "buildpacks build failed") {
		t.Fatalf("undetectable source: %v\n%s", err, log)
	}
}

// TestDockerfileBuildError: the daemon's own words reach the pusher.
func TestDockerfileBuildError(t *testing.T) {
	cli := testenv.Docker(t)
	s, err := pack.New(pack.Config{Docker: cli, Registry: pack.Registry{Host: "127.0.0.1:1"}, DefaultBuilder: "pier/builder:latest"})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "Dockerfile"), []byte("FROM scratch\nCOPY missing-file /x\n"), 0o644)
	log := &testenv.Buffer{}
	_, err = s.Build(context.Background(), pier.BuildRequest{App: "df-app", Commit: "abc", SourceDir: src, Log: log})
	if err == nil || !strings.Contains(pier.ErrorMessage(err), "Dockerfile build failed") || !strings.Contains(pier.ErrorMessage(err), "missing-file") {
		t.Fatalf("broken Dockerfile: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "Dockerfile app detected") {
		t.Fatalf("log:\n%s", log)
	}
	// A bad Procfile beside the Dockerfile is refused before any build.
	os.WriteFile(filepath.Join(src, "Procfile"), []byte("not a procfile\n"), 0o644)
	if _, err = s.Build(context.Background(), pier.BuildRequest{App: "df-app", SourceDir: src, Log: log}); err == nil || !strings.Contains(pier.ErrorMessage(err), "Procfile line 1") {
		t.Fatalf("bad Procfile: %v", err)
	}
}

func removeCache(t *testing.T, app string) {
	cli := testenv.Docker(t)
	b, l := pack.CacheVolumes(app)
	for _, v := range []string{b, l} {
		cli.VolumeRemove(context.Background(), v, true)
	}
}

// removeImages removes the images of repo from the daemon, as a test that
// built them ends.
func removeImages(t *testing.T, cli *client.Client, repo string) {
	ctx := context.Background()
	imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
	if err != nil {
		t.Logf("listing the images of %s: %v", repo, err)
		return
	}
	for _, img := range imgs {
		if _, err := cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("removing %v: %v", img.RepoTags, err)
		}
	}
}
