package pier

import (
	"slices"
	"testing"
	"time"
)

func TestAutoCertRenewAt(t *testing.T) {
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if got, want := AutoCertRenewAt(nb, nb.Add(90*24*time.Hour)), nb.Add(60*24*time.Hour); !got.Equal(want) {
		t.Errorf("90-day certificate renewed at %v, want %v (30 days before)", got, want)
	}
	if got, want := AutoCertRenewAt(nb, nb.Add(6*24*time.Hour)), nb.Add(4*24*time.Hour); !got.Equal(want) {
		t.Errorf("6-day certificate renewed at %v, want %v (a third of its life before)", got, want)
	}
}

func TestAutoCertBackoff(t *testing.T) {
	for attempts, want := range map[int]time.Duration{0: 30 * time.Second, 1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute, 40: 24 * time.Hour} {
		if got := AutoCertBackoff(attempts); got != want {
			t.Errorf("AutoCertBackoff(%d) = %v, want %v", attempts, got, want)
		}
	}
}

func TestPlanAutoCerts(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cert := func(name string, managed bool, from, until time.Duration, domains ...string) Certificate {
		return Certificate{Name: name, Managed: managed, NotBefore: now.Add(from), ExpiresAt: now.Add(until), Domains: domains}
	}
	a := AutoCertApp{
		App: "shop", Enabled: true,
		Domains: []string{
			"new.example.com",      // nothing yet: due
			"fresh.example.com",    // managed, 80 days left: issued
			"old.example.com",      // managed, 10 days left: due (renewal)
			"mine.example.com",     // an uploaded certificate: left alone
			"x.wild.example.com",   // covered by an uploaded wildcard
			"*.wild.example.com",   // wildcard: unsupported
			"shop.pier.example",    // under the platform domain
			"broken.example.com",   // failed, retry later
			"retried.example.com",  // failed, retry now
			"expiring.example.com", // uploaded, expiring: due
		},
		Certs: []Certificate{
			cert("aaa", true, -10*day, 80*day, "fresh.example.com"),
			cert("bbb", true, -80*day, 10*day, "old.example.com"),
			cert("ccc", false, -day, 300*day, "mine.example.com"),
			cert("ddd", false, -day, 300*day, "*.wild.example.com"),
			cert("eee", false, -300*day, 5*day, "expiring.example.com"),
			cert("zzz", true, -100*day, -day, "new.example.com"), // expired: ignored
		},
		States: map[string]AutoCertState{
			"broken.example.com":  {Hostname: "broken.example.com", Error: "urn:ietf:params:acme:error:connection: refused", Attempts: 2, NextAttempt: now.Add(time.Minute)},
			"retried.example.com": {Hostname: "retried.example.com", Error: "timeout", Attempts: 1, NextAttempt: now.Add(-time.Second)},
		},
	}
	domains, due, next := PlanAutoCerts(a, "pier.example", now)
	want := []string{"expiring.example.com", "new.example.com", "old.example.com", "retried.example.com"}
	if !slices.Equal(due, want) {
		t.Errorf("due = %v, want %v", due, want)
	}
	if !next.Equal(now.Add(time.Minute)) {
		t.Errorf("next = %v, want the failed domain's retry in a minute", next)
	}
	status := map[string]AutoCertDomain{}
	for _, d := range domains {
		status[d.Hostname] = d
	}
	for h, s := range map[string]string{
		"new.example.com": AutoCertPending, "fresh.example.com": AutoCertIssued, "old.example.com": AutoCertPending,
		"mine.example.com": AutoCertUploaded, "x.wild.example.com": AutoCertUploaded, "*.wild.example.com": AutoCertUnsupported,
		"shop.pier.example": AutoCertUnsupported, "broken.example.com": AutoCertFailed, "retried.example.com": AutoCertPending,
		"expiring.example.com": AutoCertPending,
	} {
		if status[h].Status != s {
			t.Errorf("%s: status %q, want %q (%+v)", h, status[h].Status, s, status[h])
		}
	}
	if d := status["broken.example.com"]; d.Detail == "" || d.Attempts != 2 || d.NextAttempt == nil {
		t.Errorf("a failed domain shows its error, attempts and next attempt: %+v", d)
	}
	if d := status["old.example.com"]; d.Cert != "bbb" || d.ExpiresAt == nil {
		t.Errorf("a renewing domain shows the certificate serving meanwhile: %+v", d)
	}

	a.Enabled = false
	domains, due, next = PlanAutoCerts(a, "pier.example", now)
	if len(due) != 0 || !next.IsZero() {
		t.Errorf("disabled: due %v, next %v; want nothing", due, next)
	}
	for _, d := range domains {
		if d.Hostname == "new.example.com" && d.Status != AutoCertOff || d.Hostname == "fresh.example.com" && d.Status != AutoCertIssued {
			t.Errorf("disabled: %+v", d)
		}
	}
}
