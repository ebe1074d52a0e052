package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/pack"
	"github.com/pierpaas/pier/internal/testenv"
)

// BenchmarkPackBuild measures the pack strategy building the Go sample
// (cmd/pierd/testdata/hello) into an image in a registry, cold (empty
// caches) and warm (a one-line change), against its floor: the pack CLI of
// the same version building the same source with the same builder, trusted,
// on host networking, with its own cache volumes, and the same push of its
// image to the same registry through the Engine API. Rounds alternate
// floor and Pier, so that a change in the machine's load favours neither.
//
// Run it with `make bench-pack` (-benchtime 5x); see README.md.
func BenchmarkPackBuild(b *testing.B) {
	ctx := context.Background()
	cli := testenv.Docker(b)
	builder := testenv.BuilderImage(b)
	reg := testenv.StartRegistry(b)
	packCLI, err := testenv.BuildPackCLI(ctx)
	if err != nil {
		b.Fatal(err)
	}
	registry := pack.Registry{Host: reg.Host, Username: reg.Username, Password: reg.Password}
	s, err := pack.New(pack.Config{Docker: cli, Registry: registry, DefaultBuilder: builder})
	if err != nil {
		b.Fatal(err)
	}
	const app = "bench-pack"
	f := &packFloor{cli: cli, pack: packCLI, builder: builder, registry: registry, dir: b.TempDir()}
	pierSrc, floorSrc := b.TempDir(), b.TempDir()
	copyDir(b, sampleDir, pierSrc)
	copyDir(b, sampleDir, floorSrc)
	clear := func() {
		for _, v := range append(f.volumes(), cacheVolumes(app)...) {
			cli.VolumeRemove(ctx, v, true)
		}
	}
	clear()
	b.Cleanup(clear)

	build := func(v string) (pierT, floorT time.Duration) {
		setVersion(b, floorSrc, v)
		setVersion(b, pierSrc, v)
		var err error
		if floorT, err = f.build(ctx, floorSrc, v); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		log := &testenv.Buffer{}
		if _, err := s.Build(ctx, pier.BuildRequest{App: app, Commit: v, SourceDir: pierSrc, Log: log}); err != nil {
			b.Fatalf("pier build: %v\n%s", err, log)
		}
		return time.Since(start), floorT
	}
	coldPier, coldFloor := build("cold")
	var pierWarm, floorWarm []time.Duration
	n := 0
	b.Run("Warm", func(b *testing.B) {
		pierWarm, floorWarm = pierWarm[:0], floorWarm[:0]
		for range b.N {
			n++
			p, fl := build(fmt.Sprintf("warm-%d", n))
			pierWarm, floorWarm = append(pierWarm, p), append(floorWarm, fl)
		}
		slices.Sort(pierWarm)
		slices.Sort(floorWarm)
		b.ReportMetric(ms(percentile(pierWarm, 50)), "p50-ms")
		b.ReportMetric(ms(percentile(floorWarm, 50)), "floor-p50-ms")
	})
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	fmt.Printf("pack strategy: Go sample built and pushed to a registry (cmd/pierd/testdata/hello)\n")
	fmt.Printf("  %-18s %10s %16s %7s\n", "", "Pier", "pack CLI + push", "ratio")
	fmt.Printf("  %-18s %10s %16s %6.2f×\n", "cold", sec(coldPier), sec(coldFloor), coldPier.Seconds()/coldFloor.Seconds())
	if len(pierWarm) > 0 {
		p, fl := percentile(pierWarm, 50), percentile(floorWarm, 50)
		fmt.Printf("  %-18s %10s %16s %6.2f×\n", fmt.Sprintf("warm median (%d)", len(pierWarm)), sec(p), sec(fl), p.Seconds()/fl.Seconds())
	}
}

func cacheVolumes(app string) []string {
	b, l := pack.CacheVolumes(app)
	return []string{b, l}
}

// packFloor is the pack CLI, run as a user would run it.
type packFloor struct {
	cli      *client.Client
	pack     string
	builder  string
	registry pack.Registry
	dir      string // PACK_HOME and DOCKER_CONFIG
}

func (f *packFloor) volumes() []string {
	return []string{"bench-floor-cache-build", "bench-floor-cache-launch"}
}

// build runs `pack build` on src and pushes the image, timed together.
func (f *packFloor) build(ctx context.Context, src, version string) (time.Duration, error) {
	ref := f.registry.Repository("bench-floor") + ":" + version
	start := time.Now()
	cmd := exec.CommandContext(ctx, f.pack, "build", ref,
		"--builder", f.builder, "--path", src, "--trust-builder", "--pull-policy", "if-not-present",
		"--network", "host", "--timestamps=false", "--docker-host", "inherit",
		"--cache", "type=build;format=volume;name="+f.volumes()[0],
		"--cache", "type=launch;format=volume;name="+f.volumes()[1])
	cmd.Env = append(os.Environ(), "PACK_HOME="+filepath.Join(f.dir, "pack"), "DOCKER_CONFIG="+filepath.Join(f.dir, "docker"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pack build: %v\n%s", err, out)
	}
	rc, err := f.cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: f.registry.Auth(ref)})
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return 0, err
		}
		if m.Error != nil {
			return 0, fmt.Errorf("push: %s", m.Error.Message)
		}
	}
	return time.Since(start), nil
}
