package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"time"

	"github.com/pierpaas/pier/registryauth"
)

// registryTokenOptions is the registry's token service (registryauth):
// with --registry-token-service, Pier issues the registry's bearer tokens,
// and each build Pod and each app's pods get credentials that reach the
// app's own repository only.
type registryTokenOptions struct {
	service   string
	authority *registryauth.Authority // made by start
}

func (r *registryTokenOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&r.service, "registry-token-service", env("PIER_REGISTRY_TOKEN_SERVICE", ""), "serve the --registry's token authentication, with per-app credentials: the registry's auth.token.service, such as registry.example; its realm is <public URL>"+registryauth.TokenPath+", its rootcertbundle the certificate at <public URL>"+registryauth.CertificatePath+", its issuer \""+registryauth.DefaultIssuer+"\" (env PIER_REGISTRY_TOKEN_SERVICE)")
}

// start makes the token service, its key loaded from (or, the first time,
// stored in) the database. Without --registry-token-service it does nothing.
func (r *registryTokenOptions) start(ctx context.Context, o options, settings registryauth.Settings, log *slog.Logger) error {
	if r.service == "" {
		return nil
	}
	reg, err := registryOf(o)
	if err != nil {
		return err
	}
	if reg.Username == "" {
		return errors.New("--registry-token-service needs pierd's own registry account, which the token service grants every repository: give --registry-username and the password (PIER_REGISTRY_PASSWORD or --registry-password-file)")
	}
	r.authority, err = registryauth.New(ctx, registryauth.Config{
		Settings: settings, Service: r.service, Prefix: reg.Prefix,
		PlatformUsername: reg.Username, PlatformPassword: reg.Password,
		Logger: log.With("component", "registry-token"),
	})
	return err
}

// handler is what the controller serves at the token service's paths, nil
// without one.
func (r *registryTokenOptions) handler() http.Handler {
	if r.authority == nil {
		return nil
	}
	return r.authority
}

// buildCredentials is the kubernetes build strategy's Credentials hook:
// credentials of one build, push and pull on its app's repository, ended
// with the build (or after ttl, should pierd not end them).
func (r *registryTokenOptions) buildCredentials(ttl time.Duration) func(ctx context.Context, app string) (string, string, func(), error) {
	if r.authority == nil {
		return nil
	}
	a := r.authority
	return func(_ context.Context, app string) (string, string, func(), error) {
		return a.BuildCredentials(app, ttl)
	}
}

// pullCredentials is the kubernetes scheduler's PullCredentials hook: the
// app's pull credentials, for registry.
func (r *registryTokenOptions) pullCredentials(registry string) func(app string) (string, string, string, error) {
	if r.authority == nil {
		return nil
	}
	a := r.authority
	return func(app string) (string, string, string, error) {
		user, pass, err := a.PullCredentials(app)
		return registry, user, pass, err
	}
}
