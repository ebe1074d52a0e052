package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	dockerclient "github.com/docker/docker/client"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder/pack"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/scheduler/docker"
)

// check validates the flags that choose the scheduler, the build strategy
// and the registry, saying what to give instead.
func (o *options) check() error {
	if err := checkSSHPublic(o.sshPublic); err != nil {
		return err
	}
	switch o.scheduler {
	case "local", "docker", "kubernetes":
	default:
		return fmt.Errorf("--scheduler %q is not known: use local, docker or kubernetes", o.scheduler)
	}
	if o.sshAddr == "off" && o.internalAddr == "off" {
		return errors.New("--ssh-addr=off with --internal-addr=off: nothing would take git pushes; builders running alone (pierd builder) hand them over on the internal listener, so give it an address")
	}
	if o.serviceTokensSecret != "" {
		if _, _, err := parseSecretRef(o.serviceTokensSecret); err != nil {
			return err
		}
	}
	ports, err := parsePortRange(o.processPorts)
	if err != nil {
		return fmt.Errorf("--process-ports %q: %v", o.processPorts, err)
	}
	o.ports = ports
	if o.appUIDs, err = parseUIDRange(o.appUIDsFlag); err != nil {
		return fmt.Errorf("--app-uids %q: %v", o.appUIDsFlag, err)
	}
	if o.buildStrategy == "" {
		o.buildStrategy = pier.StrategyHost
		if o.scheduler != "local" {
			o.buildStrategy = pier.StrategyPack
		}
	}
	switch o.buildStrategy {
	case pier.StrategyHost:
		if o.scheduler != "local" {
			return fmt.Errorf("--build-strategy host makes build directories, which only the local scheduler runs: use --build-strategy pack with --scheduler %s", o.scheduler)
		}
	case pier.StrategyPack:
		if o.scheduler == "local" {
			return errors.New("--build-strategy pack makes images, which the local scheduler cannot run: add --scheduler docker (or kubernetes)")
		}
	case pier.StrategyKubernetes:
		if err := o.kubeBuild.check(o); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--build-strategy %q is not known: use host, pack or kubernetes", o.buildStrategy)
	}
	if o.builder != "" {
		if err := pier.ValidateImage(o.builder); err != nil {
			return fmt.Errorf("--builder: %s", pier.ErrorMessage(err))
		}
	}
	for _, b := range splitList(o.trustedBuilders) {
		if err := pier.ValidateImage(b); err != nil {
			return fmt.Errorf("--trusted-builders: %s", pier.ErrorMessage(err))
		}
	}
	return nil
}

// parsePortRange reads LO-HI; "" is the zero range (the scheduler's default).
func parsePortRange(s string) ([2]int, error) {
	if s == "" {
		return [2]int{}, nil
	}
	lo, hi, ok := strings.Cut(s, "-")
	a, errA := strconv.Atoi(strings.TrimSpace(lo))
	b, errB := strconv.Atoi(strings.TrimSpace(hi))
	switch {
	case !ok || errA != nil || errB != nil:
		return [2]int{}, errors.New("want a range of ports LO-HI, such as 20000-24999")
	case a < 1024 || b > 65535:
		return [2]int{}, errors.New("ports must lie within 1024-65535 (the ports below 1024 need privileges apps do not have)")
	case a > b:
		return [2]int{}, errors.New("the first port is above the last: write LO-HI")
	}
	return [2]int{a, b}, nil
}

// parseUIDRange parses --app-uids, LO-HI. Uids below 1000 are the
// system's (root, daemons): an app must never be one of them.
func parseUIDRange(s string) ([2]int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, errA := strconv.Atoi(strings.TrimSpace(lo))
	b, errB := strconv.Atoi(strings.TrimSpace(hi))
	switch {
	case !ok || errA != nil || errB != nil:
		return [2]int{}, errors.New("want a range of uids LO-HI, such as 100000-165535")
	case a < 1000 || b > 1<<31-2:
		return [2]int{}, errors.New("uids must lie within 1000-2147483646 (those below 1000 belong to root and the system's services)")
	case a > b:
		return [2]int{}, errors.New("the first uid is above the last: write LO-HI")
	}
	return [2]int{a, b}, nil
}

// registryOf is the registry of the flags, its password read from
// PIER_REGISTRY_PASSWORD or the password file (never from argv, where
// every user of the host could read it).
func registryOf(o options) (pack.Registry, error) {
	if o.registry == "" {
		return pack.Registry{}, errors.New("no image registry: give --registry HOST[:PORT] (env PIER_REGISTRY), such as 127.0.0.1:5000")
	}
	r := pack.Registry{Host: o.registry, Prefix: o.registryPrefix, Username: o.registryUsername, Password: os.Getenv("PIER_REGISTRY_PASSWORD")}
	if o.registryPasswordFile != "" {
		b, err := os.ReadFile(o.registryPasswordFile)
		if err != nil {
			return pack.Registry{}, fmt.Errorf("--registry-password-file: %w", err)
		}
		r.Password = strings.TrimRight(string(b), "\r\n")
	}
	if r.Username != "" && r.Password == "" {
		return pack.Registry{}, errors.New("--registry-username is set but no password: put it in PIER_REGISTRY_PASSWORD or a file named by --registry-password-file")
	}
	if err := pier.ValidateImage(r.Repository("app")); err != nil {
		return pack.Registry{}, fmt.Errorf("--registry %q: %s", o.registry, pier.ErrorMessage(err))
	}
	return r, nil
}

// dockerClient connects to the daemon of DOCKER_HOST, or the local socket.
func dockerClient() (*dockerclient.Client, error) {
	cli, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		return nil, fmt.Errorf("no Docker daemon answers (%v): start dockerd, or point DOCKER_HOST at one", err)
	}
	return cli, nil
}

// remoteScheduler is the scheduler of `pierd controller` with --scheduler
// docker or kubernetes, and what stops it.
func remoteScheduler(ctx context.Context, o options, db *postgres.DB, log *slog.Logger) (pier.Scheduler, func(), error) {
	if o.scheduler == "kubernetes" {
		s, err := startKube(o, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	cli, err := dockerClient()
	if err != nil {
		return nil, nil, err
	}
	var auth func(string) string
	if o.registry != "" {
		reg, err := registryOf(o)
		if err != nil {
			return nil, nil, err
		}
		auth = reg.Auth
	}
	instance, err := instanceID(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	s, err := docker.New(docker.Config{Client: cli, Logger: log, RegistryAuth: auth, Instance: instance, PortRange: o.ports})
	if err != nil {
		return nil, nil, fmt.Errorf("docker scheduler: %w", err)
	}
	return s, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}, nil
}

// instanceID names this Pier installation: made once, kept in Postgres, so
// that every pierd on the database agrees and other installations on the
// same Docker host keep to their own containers.
func instanceID(ctx context.Context, db *postgres.DB) (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id, err := db.InitSetting(ctx, "instance_id", "pier-"+hex.EncodeToString(b))
	if err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return id, nil
}

// splitList reads a comma-separated flag.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkSSHPublic accepts "" or host[:port], as it goes into
// ssh://git@HOST/<app>.git.
func checkSSHPublic(h string) error {
	if h == "" {
		return nil
	}
	host, port := h, ""
	if hh, pp, err := net.SplitHostPort(h); err == nil {
		host, port = hh, pp
	}
	bad := host == "" || strings.ContainsAny(host, "/@?# \t")
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("--ssh-public-host %q: give the host (and port) users push to, such as git.pier.example.com or 203.0.113.7:2222", h)
	}
	return nil
}
