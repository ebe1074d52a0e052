package stack

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/buildpacks/lifecycle/api"
)

// Phases are the names the lifecycle binary answers to; a builder's
// lifecycle holds one file per phase, plus the launcher.
var Phases = []string{"detector", "analyzer", "restorer", "builder", "exporter", "creator", "extender", "rebaser"}

const lifecycleModule = "github.com/buildpacks/lifecycle"

// LifecycleVersion is the version of the lifecycle module this program was
// built with ("0.20.11"): the one go.mod pins, hence the one `make
// lifecycle` and testenv.CNBTools build. Empty if the build info is missing.
func LifecycleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == lifecycleModule {
			if d.Replace != nil {
				d = d.Replace
			}
			return strings.TrimPrefix(d.Version, "v")
		}
	}
	return ""
}

// LifecycleDescriptor is the lifecycle.toml of a lifecycle archive, with
// the API versions taken from the lifecycle module itself so that they
// cannot drift from the binaries built from it.
func LifecycleDescriptor(version string) string {
	list := func(l api.List) string {
		var s []string
		for _, v := range l {
			s = append(s, fmt.Sprintf("%q", v.String()))
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	return fmt.Sprintf(`[apis]
[apis.buildpack]
  deprecated = %s
  supported = %s
[apis.platform]
  deprecated = %s
  supported = %s

[api]
  buildpack = %q
  platform = %q

[lifecycle]
  version = %q
`, list(api.Buildpack.Deprecated), list(api.Buildpack.Supported),
		list(api.Platform.Deprecated), list(api.Platform.Supported),
		api.Buildpack.Latest().String(), api.Platform.Latest().String(), version)
}

// WriteLifecycleArchive writes the lifecycle archive pack puts in a
// builder: lifecycle.toml at the root and lifecycle/<phase> for every
// phase and the launcher, each a regular file (pack copies the entries
// one by one, so links between them would not survive). dir holds the
// `lifecycle` and `launcher` binaries (bin/lifecycle, or testenv's cache).
func WriteLifecycleArchive(dst, dir, version string) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed) // read once, right away: speed over size
	tw := tar.NewWriter(zw)
	now := time.Now()
	desc := []byte(LifecycleDescriptor(version))
	if err := tw.WriteHeader(&tar.Header{Name: "lifecycle.toml", Mode: 0o644, Size: int64(len(desc)), ModTime: now}); err != nil {
		return err
	}
	if _, err := tw.Write(desc); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "lifecycle/", Mode: 0o755, ModTime: now}); err != nil {
		return err
	}
	files := map[string]string{"launcher": "launcher"}
	for _, p := range Phases {
		files[p] = "lifecycle"
	}
	for _, name := range append(Phases, "launcher") {
		if err := addFile(tw, "lifecycle/"+name, filepath.Join(dir, files[name]), now); err != nil {
			return fmt.Errorf("lifecycle archive: %w (run `make lifecycle`)", err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func addFile(tw *tar.Writer, name, src string, mtime time.Time) error {
	f, err := os.Open(src) // follows bin/lifecycle's phase symlinks
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: info.Size(), ModTime: mtime}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
