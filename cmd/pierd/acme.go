package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"time"

	"github.com/pierpaas/pier/acme"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/router"
)

// acmeOptions are the flags of automatic certificates (certs:auto).
type acmeOptions struct {
	directory string // "": off
	email     string
	caFile    string // extra roots for the CA's HTTPS
}

func (o acmeOptions) check() error {
	if o.directory == "" {
		if o.email != "" || o.caFile != "" {
			return errors.New("--acme-email and --acme-ca-file need --acme-directory: give the ACME directory URL of the CA, such as Let's Encrypt's")
		}
		return nil
	}
	u, err := url.Parse(o.directory)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--acme-directory %q is not an https:// URL: give the ACME directory URL of the CA, such as https://ca.example/directory", o.directory)
	}
	if o.email != "" {
		if a, err := mail.ParseAddress(o.email); err != nil || a.Address != o.email {
			return fmt.Errorf("--acme-email %q is not an email address: give one such as ops@example.com, or none", o.email)
		}
	}
	return nil
}

// acmeHTTPClient talks to the CA: the system's roots, plus those of
// --acme-ca-file for a private CA.
func (o acmeOptions) httpClient() (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca-file: %w", err)
		}
		if !roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--acme-ca-file %s holds no PEM certificate: give the CA's root certificate (-----BEGIN CERTIFICATE-----)", o.caFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

// startIssuer runs the certificate issuer when --acme-directory is set,
// until ctx ends or stop is called. With a router in this process (rt),
// a challenge is validated as soon as the router answers it.
func startIssuer(ctx context.Context, o acmeOptions, db *postgres.DB, platformDomain string, rt *router.Router, log *slog.Logger, out io.Writer) (stop func(), err error) {
	if o.directory == "" {
		return func() {}, nil
	}
	client, err := o.httpClient()
	if err != nil {
		return nil, err
	}
	cfg := acme.Config{
		Store: db, Directory: o.directory, Email: o.email, HTTPClient: client,
		PlatformDomain: platformDomain, Logger: log,
	}
	if rt != nil {
		cfg.ChallengeReady = func(ctx context.Context, token string) error {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for !rt.HasChallenge(token) {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			return nil
		}
	}
	is, err := acme.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); is.Run(ctx) }()
	// A new domain, or an app turning them on, starts an order at once.
	go func() { defer func() { done <- struct{}{} }(); db.WatchAutoCerts(ctx, log, is.Nudge) }()
	fmt.Fprintf(out, "Automatic certificates from %s\n", o.directory)
	return func() { cancel(); <-done; <-done }, nil
}

// watchChallenges feeds the router the ACME challenges under way, from
// Postgres, until ctx ends; done is closed then.
func watchChallenges(ctx context.Context, db *postgres.DB, rt *router.Router, log *slog.Logger) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		db.WatchACMEChallenges(ctx, log, rt.SetChallenges)
	}()
	return done
}

// hostOf is the host of the public URL: the platform domain.
func hostOf(public string) string {
	u, err := url.Parse(public)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
