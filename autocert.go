package pier

import (
	"slices"
	"strings"
	"time"
)

// Automatic certificates (`pier certs:auto:enable`): Pier orders a
// certificate from an ACME CA for each exact custom domain of the app,
// validated over HTTP-01 through the router, and renews it. These are the
// statuses of one domain.
const (
	AutoCertPending     = "pending"     // an order is due or under way
	AutoCertIssued      = "issued"      // a managed certificate serves it
	AutoCertFailed      = "failed"      // the last order failed; retried at NextAttempt
	AutoCertUploaded    = "uploaded"    // an uploaded certificate covers it: none is ordered
	AutoCertUnsupported = "unsupported" // a wildcard or platform name: HTTP-01 cannot issue it
	AutoCertOff         = "off"         // automatic certificates are off for the app
)

// AutoCertRenewBefore is how long before its expiry a certificate is
// renewed, at most: a third of its lifetime for shorter-lived ones.
const AutoCertRenewBefore = 30 * 24 * time.Hour

// AutoCerts is an app's automatic certificate management, as the API
// shows it.
type AutoCerts struct {
	App     string `json:"app"`
	Enabled bool   `json:"enabled"`
	// Issuing says whether this controller's platform has an ACME CA
	// configured (pierd --acme-directory): without one, nothing is ordered.
	Issuing bool             `json:"issuing"`
	Domains []AutoCertDomain `json:"domains"`
}

// AutoCertDomain is the state of one domain of an app.
type AutoCertDomain struct {
	Hostname string `json:"hostname"`
	Status   string `json:"status"`
	// Detail says why (a failure's ACME error, why a name is unsupported).
	Detail      string     `json:"detail,omitempty"`
	Cert        string     `json:"cert,omitempty"` // the name of the certificate serving it
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RenewAt     *time.Time `json:"renew_at,omitempty"`
	Attempts    int        `json:"attempts,omitempty"` // failed orders since the last success
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
}

// AutoCertState is what the issuer records of one domain between orders:
// the last failure and when to try again.
type AutoCertState struct {
	Hostname    string
	Error       string // "" once an order succeeded
	Attempts    int
	NextAttempt time.Time
}

// AutoCertApp is what PlanAutoCerts needs of one app.
type AutoCertApp struct {
	App     string
	Enabled bool
	Domains []string      // its custom domains
	Certs   []Certificate // its certificates (Managed marks Pier's own)
	States  map[string]AutoCertState
}

// AutoCertRenewAt is when a certificate valid from notBefore to notAfter is
// renewed: AutoCertRenewBefore before it expires, or a third of its
// lifetime before if that is shorter.
func AutoCertRenewAt(notBefore, notAfter time.Time) time.Time {
	before := min(AutoCertRenewBefore, notAfter.Sub(notBefore)/3)
	return notAfter.Add(-before)
}

// AutoCertBackoff is how long after its attempts-th failure in a row an
// order is tried again: 30 s, doubling, at most a day.
func AutoCertBackoff(attempts int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < attempts && d < 24*time.Hour; i++ {
		d *= 2
	}
	return min(d, 24*time.Hour)
}

// PlanAutoCerts says, for one app at now, each domain's status, which
// domains need an order now (due), and the earliest later time at which
// one will (next; zero if none). Wildcards (HTTP-01 cannot issue them) and
// names under the platform domain are never ordered; neither is a name an
// uploaded certificate covers until it is due for renewal: a user's
// certificate takes precedence.
func PlanAutoCerts(a AutoCertApp, platformDomain string, now time.Time) (domains []AutoCertDomain, due []string, next time.Time) {
	later := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	hosts := slices.Clone(a.Domains)
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	domains = make([]AutoCertDomain, 0, len(hosts))
	for _, h := range hosts {
		d := AutoCertDomain{Hostname: h}
		managed, uploaded := bestCerts(a.Certs, h, now)
		switch {
		case strings.HasPrefix(h, "*."):
			d.Status, d.Detail = AutoCertUnsupported, "a wildcard name cannot be validated over HTTP-01: upload a certificate for it (pier certs:add)"
		case platformDomain != "" && (h == platformDomain || strings.HasSuffix(h, "."+platformDomain)):
			d.Status, d.Detail = AutoCertUnsupported, "a name under the platform domain is served with the platform's certificate"
		case uploaded != nil && now.Before(AutoCertRenewAt(uploaded.NotBefore, uploaded.ExpiresAt)):
			d.Status, d.Detail = AutoCertUploaded, "an uploaded certificate covers it: Pier orders none until that one is within its renewal window"
			d.setCert(uploaded)
			if a.Enabled {
				later(*d.RenewAt)
			}
		case managed != nil && now.Before(AutoCertRenewAt(managed.NotBefore, managed.ExpiresAt)):
			d.Status = AutoCertIssued
			d.setCert(managed)
			if a.Enabled {
				later(*d.RenewAt)
			}
		case !a.Enabled:
			d.Status = AutoCertOff
			if managed != nil {
				d.Status = AutoCertIssued
				d.setCert(managed)
			}
		default:
			if managed != nil {
				d.setCert(managed) // renewing: this one serves meanwhile
			}
			st, failed := a.States[h]
			failed = failed && st.Error != ""
			if failed {
				d.Detail, d.Attempts = st.Error, st.Attempts
			}
			if failed && now.Before(st.NextAttempt) {
				d.Status = AutoCertFailed
				na := st.NextAttempt
				d.NextAttempt = &na
				later(na)
				break
			}
			d.Status = AutoCertPending
			due = append(due, h)
		}
		domains = append(domains, d)
	}
	return domains, due, next
}

func (d *AutoCertDomain) setCert(c *Certificate) {
	exp, renew := c.ExpiresAt, AutoCertRenewAt(c.NotBefore, c.ExpiresAt)
	d.Cert, d.ExpiresAt, d.RenewAt = c.Name, &exp, &renew
}

// bestCerts returns the longest-lived certificates valid at now for host:
// Pier's own (which name host exactly) and an uploaded one (exactly or by
// wildcard).
func bestCerts(certs []Certificate, host string, now time.Time) (managed, uploaded *Certificate) {
	for i := range certs {
		c := &certs[i]
		if now.Before(c.NotBefore) || !now.Before(c.ExpiresAt) {
			continue
		}
		if c.Managed {
			if slices.Contains(c.Domains, host) && (managed == nil || c.ExpiresAt.After(managed.ExpiresAt)) {
				managed = c
			}
			continue
		}
		if slices.ContainsFunc(c.Domains, func(n string) bool { return CertCovers(n, host) }) &&
			(uploaded == nil || c.ExpiresAt.After(uploaded.ExpiresAt)) {
			uploaded = c
		}
	}
	return managed, uploaded
}
