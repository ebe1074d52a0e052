package stack

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// ensureStackImages imports whichever of the run and build images is
// missing, making their rootfs first if need be. The caller holds the lock.
func ensureStackImages(ctx context.Context, cfg Config, names Images, gotc goToolchain, node nodeToolchain) error {
	nodeTrees, nodeLinks := node.files()
	labels := map[string]string{
		"io.buildpacks.stack.id":            StackID,
		"io.buildpacks.base.distro.name":    "debian",
		"io.buildpacks.base.distro.version": "12",
		"io.buildpacks.base.maintainer":     "Pier",
	}
	images := []struct {
		rootfs Rootfs
		img    stackImage
	}{
		{Rootfs{Suite, Variant, RunPackages}, stackImage{
			name: names.Run, trees: nodeTrees, links: nodeLinks, needLibs: []string{node.node},
			env: []string{"PATH=" + runPath},
		}},
		{Rootfs{Suite, Variant, BuildPackages}, stackImage{
			name: names.Build, trees: append(nodeTrees, tree{gotc.root, "usr/local/go"}), links: nodeLinks,
			needLibs: []string{node.node}, env: []string{"PATH=" + buildPath},
		}},
	}
	for _, s := range images {
		if ok, err := exists(ctx, cfg.Docker, s.img.name); err != nil {
			return err
		} else if ok {
			continue
		}
		var err error
		if s.img.rootfs, err = s.rootfs.Tarball(ctx, cfg.CacheDir, cfg.Log); err != nil {
			return err
		}
		s.img.env = append(s.img.env, "LANG=C.UTF-8",
			fmt.Sprintf("CNB_USER_ID=%d", UID), fmt.Sprintf("CNB_GROUP_ID=%d", GID))
		s.img.labels = map[string]string{}
		for k, v := range labels {
			s.img.labels[k] = v
		}
		s.img.labels["org.opencontainers.image.description"] = fmt.Sprintf(
			"Pier CNB stack image (%s %s + %s; node %s, %s)", Suite, Variant, strings.Join(s.rootfs.Packages, " "), node.version, gotc.version)
		fmt.Fprintf(cfg.Log, "stack: importing %s\n", s.img.name)
		start := time.Now()
		if err := importImage(ctx, cfg.Docker, s.img); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Log, "stack: %s imported in %s\n", s.img.name, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// tree is a file or directory of this machine copied into an image.
type tree struct {
	host  string // absolute path here
	image string // path in the image, without a leading slash
}

// symlink is a symbolic link written into an image.
type symlink struct{ image, target string }

// stackImage is one stack image to import.
type stackImage struct {
	name     string
	rootfs   string // the rootfs tarball
	trees    []tree
	links    []symlink
	env      []string // KEY=value
	labels   map[string]string
	needLibs []string // ELF files among the trees whose libraries the rootfs must have
}

// importImage streams the rootfs tarball into the Engine API's ImageImport
// (`docker import`), adding the CNB user to /etc/passwd and /etc/group, its
// home directory, and the trees and links on the way; nothing is unpacked
// on disk. Docker's own changes (USER, ENV, LABEL) finish the image config.
func importImage(ctx context.Context, docker *client.Client, img stackImage) error {
	if err := checkLibraries(img); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeRootfs(pw, img)) }()
	changes := []string{fmt.Sprintf("USER %d:%d", UID, GID)}
	for _, e := range img.env {
		k, v, _ := strings.Cut(e, "=")
		changes = append(changes, fmt.Sprintf("ENV %s=%q", k, v))
	}
	for k, v := range img.labels {
		changes = append(changes, fmt.Sprintf("LABEL %s=%q", k, v))
	}
	rc, err := docker.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, img.name,
		image.ImportOptions{Changes: changes, Message: "Pier stack image (package builder/stack)"})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("docker import %s: %w", img.name, err)
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("docker import %s: %w", img.name, err)
	}
	return nil
}

// writeRootfs writes the image's filesystem as one tar stream.
func writeRootfs(w io.Writer, img stackImage) error {
	f, err := os.Open(img.rootfs)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	tw := tar.NewWriter(w)
	users := map[string]string{
		"etc/passwd": fmt.Sprintf("%s:x:%d:%d:CNB user:/home/%s:/bin/sh\n", UserName, UID, GID, UserName),
		"etc/group":  fmt.Sprintf("%s:x:%d:\n", UserName, GID),
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", img.rootfs, err)
		}
		line, isUsers := users[strings.TrimPrefix(h.Name, "./")]
		if !isUsers {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
			data = append(data, '\n')
		}
		data = append(data, line...)
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
		delete(users, strings.TrimPrefix(h.Name, "./"))
	}
	if len(users) > 0 {
		return fmt.Errorf("%s lacks /etc/passwd or /etc/group: not a Debian rootfs? (delete it to have it made again)", img.rootfs)
	}
	home := &tar.Header{Typeflag: tar.TypeDir, Name: "./home/" + UserName + "/", Mode: 0o755, Uid: UID, Gid: GID}
	if err := tw.WriteHeader(home); err != nil {
		return err
	}
	for _, t := range img.trees {
		if err := copyTree(tw, t); err != nil {
			return err
		}
	}
	for _, l := range img.links {
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: "./" + l.image, Linkname: l.target, Mode: 0o777}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyTree writes a tree of this machine into the tar stream, owned by
// root, keeping modes and symlinks.
func copyTree(tw *tar.Writer, t tree) error {
	return filepath.WalkDir(t.host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, pipes: nothing a toolchain needs
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(t.host, p)
		h.Name = "./" + path.Join(t.image, filepath.ToSlash(rel))
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		h.Format = tar.FormatPAX // long names, exact times
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
}

// checkLibraries makes sure that the binaries copied from this machine
// (node) find every shared library they link in the image's rootfs, so that
// a missing package shows here, not as a failing app build.
func checkLibraries(img stackImage) error {
	if len(img.needLibs) == 0 {
		return nil
	}
	have, err := libraryNames(img.rootfs)
	if err != nil {
		return err
	}
	for _, bin := range img.needLibs {
		f, err := elf.Open(bin)
		if err != nil {
			return fmt.Errorf("reading %s: %w", bin, err)
		}
		libs, err := f.ImportedLibraries()
		f.Close()
		if err != nil {
			return fmt.Errorf("reading the libraries of %s: %w", bin, err)
		}
		for _, lib := range libs {
			if !have[lib] {
				return fmt.Errorf("%s needs %s, which the rootfs %s lacks: add the Debian package that holds it to the stack's packages",
					bin, lib, img.rootfs)
			}
		}
	}
	return nil
}

// libraryNames lists the file names in the rootfs's library directories.
func libraryNames(rootfs string) (map[string]bool, error) {
	f, err := os.Open(rootfs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f) // skips file contents by seeking
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", rootfs, err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		if strings.HasPrefix(n, "usr/lib/") || strings.HasPrefix(n, "lib/") || strings.HasPrefix(n, "lib64/") {
			names[path.Base(n)] = true
		}
	}
}
