package testenv

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/pierpaas/pier/builder/stack"
)

// ComposeImages are local stand-ins for the images docker-compose.yml names
// by default, made in the tests' Docker daemon with nothing pulled, so that
// the compose file runs here as it does online.
type ComposeImages struct {
	// Postgres behaves like postgres:16-bookworm for what the compose file
	// uses: POSTGRES_USER, POSTGRES_PASSWORD(_FILE), POSTGRES_DB and
	// POSTGRES_INITDB_ARGS, initdb into PGDATA on the first start, then
	// `postgres ARGS...` as the postgres user; pg_isready on PATH. It is
	// Debian's postgresql (15) with a small entrypoint.
	Postgres string
	// Registry is laid out like registry:3: the registry binary of
	// distribution/v3 (BuildRegistry), /etc/distribution/config.yml with
	// storage in /var/lib/registry, overridden by REGISTRY_* variables.
	Registry string
	// Run is the Dockerfile's RUN_IMAGE: Debian minbase with git and
	// ca-certificates, so the Dockerfile installs nothing.
	Run string
	// Build is the Dockerfile's BUILD_IMAGE: the CNB stack's build image,
	// which has this machine's Go.
	Build string
}

var (
	composeOnce sync.Once
	composeImgs ComposeImages
	composeSkip string
	composeErr  error
)

// MakeComposeImages makes (or finds: the tags are content hashes) the
// images. The first run on a machine runs debootstrap twice (root, a
// minute or two, cached in the stack's cache dir); later runs take a
// second. It skips like BuilderImage.
func MakeComposeImages(t testing.TB) ComposeImages {
	t.Helper()
	cli := Docker(t)
	build := BuilderImages(t).Build
	composeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		composeImgs, composeErr = makeComposeImages(ctx, cli)
		composeImgs.Build = build
		if errors.Is(composeErr, stack.ErrNoDebootstrap) || errors.Is(composeErr, stack.ErrNeedsRoot) {
			composeSkip, composeErr = composeErr.Error(), nil
		}
	})
	if composeSkip != "" {
		if isCI() {
			t.Fatalf("no base images for the compose test: %s (CI=true: not skipping)", composeSkip)
		}
		t.Skipf("\n\n*** SKIPPING the compose tier: %s ***\n\n", composeSkip)
	}
	if composeErr != nil {
		t.Fatalf("making the compose test's images: %v", composeErr)
	}
	return composeImgs
}

// Bump when the way these images are made changes, so old tags are not reused.
const composeImagesFormat = "1"

func makeComposeImages(ctx context.Context, cli *client.Client) (ComposeImages, error) {
	var imgs ComposeImages
	home, err := os.UserHomeDir()
	if err != nil {
		return imgs, err
	}
	// The stack's cache: the .debs debootstrap fetched for the builder's
	// stack are reused, and its lock keeps two debootstraps apart.
	cacheDir := filepath.Join(home, ".cache", "pier", "stack")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return imgs, err
	}
	tarball := func(r stack.Rootfs) (string, error) {
		unlock, err := lockFile(ctx, filepath.Join(cacheDir, "stack.lock"), func() {
			fmt.Fprintf(os.Stderr, "testenv: waiting for another process making a rootfs (%s)\n", filepath.Join(cacheDir, "stack.lock"))
		})
		if err != nil {
			return "", err
		}
		defer unlock()
		return r.Tarball(ctx, cacheDir, os.Stderr)
	}

	run := stack.Rootfs{Suite: stack.Suite, Variant: "minbase", Packages: []string{"ca-certificates", "git"}}
	imgs.Run = "pier-test/compose-run:" + hashOf(composeImagesFormat, run.Key())
	if err := ensureImage(ctx, cli, imgs.Run, func() error {
		rootfs, err := tarball(run)
		if err != nil {
			return err
		}
		return importTar(ctx, cli, imgs.Run, rootfsWith(rootfs, nil), []string{
			`ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, `ENV LANG=C.UTF-8`,
			`CMD ["bash"]`,
		})
	}); err != nil {
		return imgs, err
	}

	pg := stack.Rootfs{Suite: stack.Suite, Variant: "minbase", Packages: []string{"postgresql"}}
	imgs.Postgres = "pier-test/compose-postgres:" + hashOf(composeImagesFormat, pg.Key(), postgresEntrypoint)
	if err := ensureImage(ctx, cli, imgs.Postgres, func() error {
		rootfs, err := tarball(pg)
		if err != nil {
			return err
		}
		bin, err := postgresBinDir(rootfs)
		if err != nil {
			return err
		}
		extra := []tarFile{
			{name: "usr/local/bin/docker-entrypoint.sh", mode: 0o755, data: []byte(postgresEntrypoint)},
			{name: "var/lib/postgresql/data/", mode: 0o700, dir: true, owner: "postgres"},
		}
		return importTar(ctx, cli, imgs.Postgres, rootfsWith(rootfs, extra), []string{
			`ENV PATH=/` + bin + `:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
			`ENV PGDATA=/var/lib/postgresql/data`, `ENV LANG=C.UTF-8`,
			`ENTRYPOINT ["docker-entrypoint.sh"]`, `CMD ["postgres"]`, `EXPOSE 5432`,
		})
	}); err != nil {
		return imgs, err
	}

	regBin, err := BuildRegistry(ctx)
	if err != nil {
		return imgs, fmt.Errorf("building the registry: %w", err)
	}
	binData, err := os.ReadFile(regBin)
	if err != nil {
		return imgs, err
	}
	sum := sha256.Sum256(binData)
	imgs.Registry = "pier-test/compose-registry:" + hashOf(composeImagesFormat, hex.EncodeToString(sum[:]), registryConfig)
	if err := ensureImage(ctx, cli, imgs.Registry, func() error {
		files := []tarFile{
			{name: "bin/registry", mode: 0o755, data: binData},
			{name: "etc/distribution/config.yml", mode: 0o644, data: []byte(registryConfig)},
			{name: "tmp/", mode: 0o1777, dir: true},
			{name: "var/lib/registry/", mode: 0o755, dir: true},
		}
		return importTar(ctx, cli, imgs.Registry, func(w io.Writer) error { return writeFiles(tar.NewWriter(w), files, nil, true) }, []string{
			`ENTRYPOINT ["/bin/registry", "serve"]`, `CMD ["/etc/distribution/config.yml"]`, `EXPOSE 5000`,
		})
	}); err != nil {
		return imgs, err
	}
	return imgs, nil
}

// registryConfig is registry:3's configuration file; the compose file sets
// the address and authentication with REGISTRY_* variables.
const registryConfig = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`

// postgresEntrypoint is the part of the official image's
// docker-entrypoint.sh that docker-compose.yml relies on.
const postgresEntrypoint = `#!/bin/sh
# A stand-in for the official postgres image's entrypoint (Pier's compose
# test): POSTGRES_USER, POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE,
# POSTGRES_DB and POSTGRES_INITDB_ARGS; initdb into an empty PGDATA; then
# the command as the postgres user.
set -eu
if [ "${1:-}" != postgres ]; then
	exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 0700 "$PGDATA"
	# The secret file may be readable by root only.
	if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
		POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
		export POSTGRES_PASSWORD
		unset POSTGRES_PASSWORD_FILE
	fi
	exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "docker-entrypoint.sh: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
		exit 1
	fi
	user=${POSTGRES_USER:-postgres}
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
	# POSTGRES_INITDB_ARGS is split into words, as the official image does.
	initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
	rm -f "$pwfile"
	printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
	db=${POSTGRES_DB:-$user}
	if [ "$db" != postgres ]; then
		echo "CREATE DATABASE \"$db\"" | postgres --single -D "$PGDATA" postgres >/dev/null
	fi
	echo "docker-entrypoint.sh: database $db initialised for $user"
fi
unset POSTGRES_PASSWORD
exec "$@"
`

// postgresBinDir finds usr/lib/postgresql/<major>/bin in a rootfs tarball.
func postgresBinDir(rootfs string) (string, error) {
	f, err := os.Open(rootfs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	re := regexp.MustCompile(`^(usr/lib/postgresql/[0-9]+/bin)/postgres$`)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", fmt.Errorf("%s has no usr/lib/postgresql/*/bin/postgres", rootfs)
		}
		if err != nil {
			return "", err
		}
		if m := re.FindStringSubmatch(strings.TrimPrefix(h.Name, "./")); m != nil {
			return m[1], nil
		}
	}
}

// tarFile is a file or directory added to an imported image.
type tarFile struct {
	name  string // without a leading slash; directories end in /
	mode  int64
	data  []byte
	dir   bool
	owner string // a user of the rootfs's /etc/passwd; "" is root
}

// rootfsWith streams a rootfs tarball and then extra files.
func rootfsWith(rootfs string, extra []tarFile) func(io.Writer) error {
	return func(w io.Writer) error {
		f, err := os.Open(rootfs)
		if err != nil {
			return err
		}
		defer f.Close()
		tr := tar.NewReader(f)
		tw := tar.NewWriter(w)
		var passwd []byte
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", rootfs, err)
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if strings.TrimPrefix(h.Name, "./") == "etc/passwd" {
				if passwd, err = io.ReadAll(tr); err != nil {
					return err
				}
				if _, err := tw.Write(passwd); err != nil {
					return err
				}
				continue
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
		return writeFiles(tw, extra, passwd, false)
	}
}

// writeFiles adds files to a tar stream, owners looked up in passwd, and
// closes it. parents adds their directories first (an image from nothing).
func writeFiles(tw *tar.Writer, files []tarFile, passwd []byte, parents bool) error {
	seen := map[string]bool{}
	for _, f := range files {
		if parents {
			parts := strings.Split(strings.TrimSuffix(f.name, "/"), "/")
			for i := 1; i < len(parts); i++ {
				d := strings.Join(parts[:i], "/") + "/"
				if !seen[d] {
					seen[d] = true
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
						return err
					}
				}
			}
		}
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
			seen[f.name] = true
		}
		if f.owner != "" {
			uid, gid, ok := lookupUser(passwd, f.owner)
			if !ok {
				return fmt.Errorf("the rootfs has no user %s for /%s", f.owner, f.name)
			}
			h.Uid, h.Gid = uid, gid
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func lookupUser(passwd []byte, name string) (uid, gid int, ok bool) {
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			_, err1 := fmt.Sscan(f[2], &uid)
			_, err2 := fmt.Sscan(f[3], &gid)
			return uid, gid, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

// ensureImage runs build unless the image is in the daemon.
func ensureImage(ctx context.Context, cli *client.Client, name string, build func() error) error {
	if _, err := cli.ImageInspect(ctx, name); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspecting %s: %w", name, err)
	}
	start := time.Now()
	if err := build(); err != nil {
		return fmt.Errorf("making %s: %w", name, err)
	}
	fmt.Fprintf(os.Stderr, "testenv: made %s in %s\n", name, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// importTar imports the tar stream write makes as an image (`docker
// import`), with Dockerfile instructions as changes.
func importTar(ctx context.Context, cli *client.Client, name string, write func(io.Writer) error, changes []string) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, name,
		image.ImportOptions{Changes: changes, Message: "Pier compose test image (internal/testenv)"})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("docker import %s: %w", name, err)
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("docker import %s: %w", name, err)
	}
	return nil
}

func hashOf(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:])[:12]
}
