// Package acme is Pier's automatic certificate issuer (`pier
// certs:auto:enable`): for every exact custom domain of an app with
// automatic certificates on, it orders a certificate from an ACME CA,
// proves control of the name with an HTTP-01 challenge that Pier's routers
// answer, stores the certificate as one of the app's (marked managed), and
// renews it before it expires. Failures are recorded with the CA's error
// and retried with backoff. One issuer works at a time, whichever
// controller it runs in: it holds an advisory lock for each pass.
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/pierpaas/pier"
)

// Store is what the issuer needs of Pier's state (postgres.DB).
type Store interface {
	AutoCertApps(ctx context.Context) ([]pier.AutoCertApp, error)
	RecordAutoCertFailure(ctx context.Context, app, host, msg string, now time.Time) (pier.AutoCertState, error)
	PutManagedCert(ctx context.Context, app, host string, c *pier.Certificate, chainPEM, keyPEM string) (replaced []string, err error)
	AddACMEChallenge(ctx context.Context, app, host, token, keyAuth string) error
	RemoveACMEChallenge(ctx context.Context, token string) error
	InitSetting(ctx context.Context, key, value string) (string, error)
	IssuerLock(ctx context.Context) (unlock func(), ok bool, err error)
}

// Config configures an Issuer.
type Config struct {
	Store Store
	// Directory is the ACME directory URL of the CA.
	Directory string
	// Email, if set, is the account's contact: the CA writes there about
	// expiring certificates and incidents.
	Email string
	// HTTPClient talks to the CA (its roots, for a private CA); nil: the
	// default client.
	HTTPClient *http.Client
	// PlatformDomain's names are never ordered.
	PlatformDomain string
	Logger         *slog.Logger
	Now            func() time.Time
	// ChallengeReady, if set, returns once the routers answer token (or
	// fails); without it the issuer gives them PropagationDelay to load a
	// new challenge before asking the CA to validate it.
	ChallengeReady   func(ctx context.Context, token string) error
	PropagationDelay time.Duration
	// OrderTimeout bounds one order, from its creation to the stored
	// certificate; 0 means 5 minutes.
	OrderTimeout time.Duration
}

// Issuer orders and renews the certificates. Make it with New, run it with
// Run.
type Issuer struct {
	cfg   Config
	log   *slog.Logger
	nudge chan struct{}

	mu     sync.Mutex
	client *xacme.Client // once the account is registered
}

// New returns an issuer; it does nothing until Run.
func New(cfg Config) (*Issuer, error) {
	if cfg.Store == nil || cfg.Directory == "" {
		return nil, errors.New("acme: a store and a directory URL are needed")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PropagationDelay <= 0 {
		cfg.PropagationDelay = 2 * time.Second
	}
	if cfg.OrderTimeout <= 0 {
		cfg.OrderTimeout = 5 * time.Minute
	}
	return &Issuer{cfg: cfg, log: cfg.Logger.With("component", "acme"), nudge: make(chan struct{}, 1)}, nil
}

// Nudge makes Run look for work now: an app's flag, domains or
// certificates changed.
func (is *Issuer) Nudge() {
	select {
	case is.nudge <- struct{}{}:
	default:
	}
}

// idle is the longest Run sleeps without a nudge: another controller may
// have held the lock, and clocks move.
const idle = 10 * time.Minute

// Run issues and renews certificates until ctx ends: at start, on every
// nudge, and when a renewal or a retry falls due.
func (is *Issuer) Run(ctx context.Context) {
	for ctx.Err() == nil {
		next, err := is.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			is.log.Warn("automatic certificates: a pass failed; retrying", "err", err)
			next = is.cfg.Now().Add(30 * time.Second)
		}
		wait := idle
		if !next.IsZero() {
			wait = min(idle, max(next.Sub(is.cfg.Now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-is.nudge:
		case <-t.C:
		}
		t.Stop()
	}
}

// Pass orders a certificate for every name that needs one now, one after
// the other, and returns when the next one will (zero: nothing scheduled).
// Without the lock (another controller issues) it does nothing, and says
// to look again in a minute.
func (is *Issuer) Pass(ctx context.Context) (next time.Time, err error) {
	unlock, ok, err := is.cfg.Store.IssuerLock(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return is.cfg.Now().Add(time.Minute), nil
	}
	defer unlock()
	tried := map[string]bool{} // once per pass, whatever happens
	for ctx.Err() == nil {
		apps, err := is.cfg.Store.AutoCertApps(ctx)
		if err != nil {
			return time.Time{}, err
		}
		worked := false
		next = time.Time{}
		for _, a := range apps {
			_, due, n := pier.PlanAutoCerts(a, is.cfg.PlatformDomain, is.cfg.Now())
			if !n.IsZero() && (next.IsZero() || n.Before(next)) {
				next = n
			}
			for _, host := range due {
				if tried[a.App+" "+host] {
					continue
				}
				tried[a.App+" "+host] = true
				worked = true
				is.order(ctx, a.App, host)
			}
		}
		if !worked {
			return next, nil
		}
		// Orders take a while: look again, with what changed meanwhile.
	}
	return next, ctx.Err()
}

// order obtains a certificate for host and stores it, or records why not.
func (is *Issuer) order(ctx context.Context, app, host string) {
	is.log.Info("ordering a certificate", "app", app, "host", host)
	octx, cancel := context.WithTimeout(ctx, is.cfg.OrderTimeout)
	defer cancel()
	c, replaced, err := is.obtain(octx, app, host)
	if err == nil {
		is.log.Info("certificate issued", "app", app, "host", host, "cert", c.Name, "expires", c.ExpiresAt.UTC().Format(time.RFC3339), "replaced", replaced)
		return
	}
	if ctx.Err() != nil {
		return // shutting down: not the name's failure
	}
	var pe *pier.Error
	if errors.As(err, &pe) && (pe.Code == pier.ECONFLICT || pe.Code == pier.ENOTFOUND) {
		is.log.Info("certificate not stored", "app", app, "host", host, "why", pe.Message)
		return
	}
	st, rerr := is.cfg.Store.RecordAutoCertFailure(ctx, app, host, err.Error(), is.cfg.Now())
	if rerr != nil {
		is.log.Warn("certificate order failed; recording the failure failed too", "app", app, "host", host, "err", err, "record_err", rerr)
		return
	}
	is.log.Warn("certificate order failed", "app", app, "host", host, "err", err, "attempts", st.Attempts, "next_attempt", st.NextAttempt.UTC().Format(time.RFC3339))
}

// obtain runs one ACME order for host: HTTP-01 for its authorization,
// then a new key and CSR; the certificate is stored as a managed one of
// app.
func (is *Issuer) obtain(ctx context.Context, app, host string) (*pier.Certificate, []string, error) {
	cl, err := is.account(ctx)
	if err != nil {
		return nil, nil, err
	}
	o, err := cl.AuthorizeOrder(ctx, xacme.DomainIDs(host))
	if err != nil {
		return nil, nil, fmt.Errorf("new order: %w", err)
	}
	for _, u := range o.AuthzURLs {
		if err := is.authorize(ctx, cl, app, host, u); err != nil {
			return nil, nil, err
		}
	}
	orderURL := o.URI
	o, err = cl.WaitOrder(ctx, orderURL)
	if err != nil {
		return nil, nil, fmt.Errorf("order not ready: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{host}}, key)
	if err != nil {
		return nil, nil, err
	}
	if o.URI == "" {
		o.URI = orderURL
	}
	// With the order's URL: a CA's answer to finalize need not name it.
	der, _, err := cl.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		return nil, nil, fmt.Errorf("finalize: %w", err)
	}
	var chain strings.Builder
	for _, b := range der {
		chain.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b}))
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	c, err := pier.ParseCertificate(chain.String(), keyPEM, is.cfg.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	replaced, err := is.cfg.Store.PutManagedCert(ctx, app, host, c, chain.String(), keyPEM)
	return c, replaced, err
}

// authorize completes one authorization with its HTTP-01 challenge.
func (is *Issuer) authorize(ctx context.Context, cl *xacme.Client, app, host, url string) error {
	z, err := cl.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	if z.Status == xacme.StatusValid {
		return nil
	}
	var ch *xacme.Challenge
	for _, c := range z.Challenges {
		if c.Type == "http-01" {
			ch = c
		}
	}
	if ch == nil {
		return fmt.Errorf("the CA offers no http-01 challenge for %s", host)
	}
	keyAuth, err := cl.HTTP01ChallengeResponse(ch.Token)
	if err != nil {
		return err
	}
	if err := is.cfg.Store.AddACMEChallenge(ctx, app, host, ch.Token, keyAuth); err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := is.cfg.Store.RemoveACMEChallenge(rctx, ch.Token); err != nil {
			is.log.Warn("removing a validated challenge", "host", host, "err", err)
		}
	}()
	if is.cfg.ChallengeReady != nil {
		if err := is.cfg.ChallengeReady(ctx, ch.Token); err != nil {
			return fmt.Errorf("the router did not load the challenge: %w", err)
		}
	} else {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(is.cfg.PropagationDelay):
		}
	}
	if _, err := cl.Accept(ctx, ch); err != nil {
		return fmt.Errorf("accept the challenge: %w", err)
	}
	if _, err := cl.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("validation of %s: %w", host, err)
	}
	return nil
}

// account returns a client of the CA with Pier's account, registering it
// on first use. The account key is made once per directory and kept in the
// store's settings; it never reaches a log line.
func (is *Issuer) account(ctx context.Context) (*xacme.Client, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.client != nil {
		return is.client, nil
	}
	key, err := is.accountKey(ctx)
	if err != nil {
		return nil, err
	}
	cl := &xacme.Client{Key: key, DirectoryURL: is.cfg.Directory, HTTPClient: is.cfg.HTTPClient, UserAgent: "pier"}
	acct := &xacme.Account{}
	if is.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + is.cfg.Email}
	}
	if _, err := cl.Register(ctx, acct, xacme.AcceptTOS); err != nil && !errors.Is(err, xacme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("register an account with the CA at %s: %w", is.cfg.Directory, err)
	}
	is.client = cl
	return cl, nil
}

// AccountKeySetting is the settings key of the account key for directory.
func AccountKeySetting(directory string) string {
	sum := sha256.Sum256([]byte(directory))
	return "acme_account_key_" + hex.EncodeToString(sum[:8])
}

func (is *Issuer) accountKey(ctx context.Context) (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	// Concurrent first starts agree: the first stored key wins.
	stored, err := is.cfg.Store.InitSetting(ctx, AccountKeySetting(is.cfg.Directory), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode([]byte(stored))
	if b == nil {
		return nil, errors.New("the stored ACME account key is not PEM")
	}
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("the stored ACME account key does not parse")
	}
	return key, nil
}
