package docker

import (
	"context"
	"io"
	"strconv"
	"sync/atomic"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pierpaas/pier"
)

var runSeq atomic.Int64

// Run runs a one-off process (pier run) in a container of the release's
// image and config, its stdin, stdout and stderr attached to opts, and
// returns its exit status. The command runs as given, never through a
// shell (CNB images: through the launcher, for the buildpacks' env). The
// container is removed afterwards, also when ctx ends first (then the
// process is killed and ctx's error returned).
func (s *Scheduler) Run(ctx context.Context, d pier.Deployment, opts pier.RunOptions) (int, error) {
	if err := pier.ValidateAppName(d.App); err != nil {
		return -1, err
	}
	if err := pier.ValidateCommand(opts.Command); err != nil {
		return -1, err
	}
	if err := checkRunnable(d); err != nil {
		return -1, err
	}
	b := d.Release.Build
	if b == nil {
		return -1, pier.Errorf(pier.EINVALID, "%s has no build to run a command in: deploy first (git push, or pier builds:create IMAGE)", d.App)
	}
	if _, err := s.appFor(d.App); err != nil {
		return -1, err
	}
	res, err := resources(runType, d.Limits[runType])
	if err != nil {
		return -1, err
	}
	imgUser, err := s.imageUser(ctx, b.Image, d.Release.Version)
	if err != nil {
		return -1, err
	}
	user, err := runAs(d, imgUser)
	if err != nil {
		return -1, err
	}
	n := runSeq.Add(1)
	proc := "run." + strconv.FormatInt(n, 10)
	port, err := s.ports.get()
	if err != nil {
		return -1, pier.Errorf(pier.EUNAVAILABLE, "cannot run a command for %s: %s", d.App, err)
	}
	defer s.ports.put(port)
	cfg := &container.Config{
		Image:        b.Image,
		Entrypoint:   runEntrypoint(b, opts.Command),
		User:         user,
		Env:          append([]string{"PORT=" + strconv.Itoa(port), "DYNO=" + proc}, configEnv(d.Release.Config)...),
		AttachStdout: true,
		AttachStderr: true,
		AttachStdin:  opts.Stdin != nil,
		OpenStdin:    opts.Stdin != nil,
		StdinOnce:    opts.Stdin != nil,
		Labels: map[string]string{
			LabelManagedBy: managedBy,
			LabelInstance:  s.cfg.Instance,
			LabelApp:       d.App,
			LabelType:      runType,
			LabelIndex:     strconv.FormatInt(n, 10),
			LabelRelease:   strconv.Itoa(d.Release.Version),
			LabelOneOff:    "true",
		},
	}
	name := containerName(d.App, runType, int(n), d.Release.Version)
	resp, err := s.cli.ContainerCreate(ctx, cfg, hostConfig(res, container.RestartPolicy{Name: container.RestartPolicyDisabled}), nil, nil, name)
	if err != nil {
		return -1, daemonError(err, "creating container %s", name)
	}
	// The command is not logged: people paste secrets into commands.
	s.log.InfoContext(ctx, "running one-off process", "app", d.App, "process", proc, "release", d.Release.Version)
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := s.cli.ContainerRemove(rctx, resp.ID, container.RemoveOptions{Force: true}); err != nil {
			s.log.Error("cannot remove one-off container", "container", name, "err", err)
		}
	}()

	// Attach and wait before the start: output and exit are not missed.
	hj, err := s.cli.ContainerAttach(ctx, resp.ID, container.AttachOptions{Stream: true, Stdin: opts.Stdin != nil, Stdout: true, Stderr: true})
	if err != nil {
		return -1, daemonError(err, "attaching to %s", name)
	}
	defer hj.Close()
	waitc, werrc := s.cli.ContainerWait(ctx, resp.ID, container.WaitConditionNextExit)
	if err := s.cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, pier.Errorf(pier.EINVALID, "cannot run %s: %s", clip(opts.Command[0]), clipN(err.Error(), 500))
	}
	if opts.Stdin != nil {
		// Ends at the caller's EOF (closing the process's stdin), or when
		// the connection closes.
		go func() {
			io.Copy(hj.Conn, opts.Stdin)
			hj.CloseWrite()
		}()
	}
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		stdcopy.StdCopy(orDiscard(opts.Stdout), orDiscard(opts.Stderr), hj.Reader)
	}()
	select {
	case r := <-waitc:
		<-outDone // the output ends with the process
		if r.Error != nil {
			return -1, daemonError(errorString(r.Error.Message), "waiting for %s", name)
		}
		return int(r.StatusCode), nil
	case err := <-werrc:
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, daemonError(err, "waiting for %s", name)
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
