package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/builder"
	"github.com/pierpaas/pier/builder/remote"
)

const builderUsage = `pierd builder runs Pier's git push server alone: it takes git pushes over
SSH, keeps the apps' repositories in its data dir, and hands each pushed
commit's tree to the controller, which builds and releases it (its build
strategy: in-cluster build Pods, pack, or the host) while the build's output
streams back to the pusher.

It takes no database credentials and no cluster rights. It asks the
controller's internal listener (pierd all --internal-addr) who a key belongs
to and what its user may do, with a builder service token. Run the
controller as pierd all --ssh-addr=off, so that pushes go to builders only.

Create the token once, as an admin, and keep it in a file only pierd can read:
  pier service-tokens:create --scope builder --description git-1 > /etc/pier/builder.token
  chmod 600 /etc/pier/builder.token

Usage:
  pierd builder --controller-internal URL --token-file FILE [flags]

Example:
  pierd builder --controller-internal http://10.0.0.5:9091 --token-file /etc/pier/builder.token \
      --ssh-addr :2222 --data-dir /var/lib/pier

Flags:
`

// builderOptions are the flags of `pierd builder`; each can also be set by
// environment.
type builderOptions struct {
	controllerInternal string
	tokenFile          string
	sshAddr            string
	dataDir            string
	logLevel           string
}

func builderFlags(o *builderOptions, out io.Writer) *flag.FlagSet {
	fs := componentFlagSet("pierd builder", builderUsage, out)
	fs.StringVar(&o.controllerInternal, "controller-internal", env("PIER_CONTROLLER_INTERNAL", ""), "URL of the controller's internal listener (pierd all --internal-addr), such as http://10.0.0.5:9091; required (env PIER_CONTROLLER_INTERNAL)")
	fs.StringVar(&o.tokenFile, "token-file", env("PIER_TOKEN_FILE", ""), "file holding the builder service token (`pier service-tokens:create --scope builder`); read again for every request, so it can be rotated in place; required (env PIER_TOKEN_FILE)")
	fs.StringVar(&o.sshAddr, "ssh-addr", env("PIER_SSH_ADDR", "127.0.0.1:2222"), "address of the SSH server for git push, such as :2222 (env PIER_SSH_ADDR)")
	fs.StringVar(&o.dataDir, "data-dir", env("PIER_DATA_DIR", ".pier"), "where the builder keeps the apps' git repositories and its SSH host key (ssh_host_ed25519_key, made on first start if missing) (env PIER_DATA_DIR)")
	fs.StringVar(&o.logLevel, "log-level", env("PIER_LOG_LEVEL", "info"), "debug, info, warn or error (env PIER_LOG_LEVEL)")
	return fs
}

// builderMain is `pierd builder`.
func builderMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o builderOptions
	return componentMain("pierd builder", builderFlags(&o, stderr), args, stderr, func(err error) string {
		if strings.Contains(err.Error(), "database") {
			return "it never takes database credentials: it asks the controller, with --controller-internal and --token-file"
		}
		return ""
	}, func() error { return runBuilder(ctx, o, stdout, newLogger(stderr, o.logLevel)) })
}

func runBuilder(ctx context.Context, o builderOptions, out io.Writer, log *slog.Logger) error {
	if o.controllerInternal == "" {
		return usageErr{errors.New("--controller-internal is required: the URL of the controller's internal listener, such as http://10.0.0.5:9091 (pierd all --internal-addr)")}
	}
	if o.tokenFile == "" {
		return usageErr{errors.New("--token-file is required: a file holding the builder service token from `pier service-tokens:create --scope builder`")}
	}
	if _, err := readServiceToken(o.tokenFile, pier.ScopeBuilder); err != nil {
		return usageErr{err}
	}
	ctl, err := remote.New(o.controllerInternal, func() (string, error) { return readServiceToken(o.tokenFile, pier.ScopeBuilder) })
	if err != nil {
		return usageErr{fmt.Errorf("--controller-internal: %v", err)}
	}
	// Say at once what is wrong with the token or the URL, rather than at
	// the first push; a controller that is not up yet is waited for.
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := ctl.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		if c := pier.ErrorCode(err); c == pier.EUNAUTHORIZED || c == pier.EFORBIDDEN {
			return fmt.Errorf("the controller refuses the token: %s", pier.ErrorMessage(err))
		}
		if attempt%10 == 0 {
			log.Warn("waiting for the controller's internal listener", "url", o.controllerInternal, "err", pier.ErrorMessage(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	// Pushed trees are checked out here while they are sent to the
	// controller; what a killed builder left goes now.
	trees := filepath.Join(o.dataDir, "src")
	if err := builder.ResetTreeDir(trees); err != nil {
		return err
	}
	srv, err := builder.New(builder.Config{
		Addr:     o.sshAddr,
		DataDir:  o.dataDir,
		Store:    ctl,
		Deployer: ctl,
		Logger:   log,
		TreeDir:  trees,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.sshAddr)
	if err != nil {
		return fmt.Errorf("listen on %s for git pushes: %w (change it with --ssh-addr)", o.sshAddr, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(out, "Builder (git push over SSH) listening on %s, deploying through %s\n", ln.Addr(), o.controllerInternal)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	// Pushes under way finish (their deploys run in the controller);
	// new ones are refused meanwhile.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-done
	return nil
}
