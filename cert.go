package pier

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Certificate is a TLS certificate of an app, as the API shows it: never
// its private key, which no API answer, event or log line carries once
// uploaded.
type Certificate struct {
	// Name is the first 12 hex digits of the fingerprint: what
	// `pier certs:remove` takes.
	Name        string    `json:"name"`
	App         string    `json:"app"`
	Domains     []string  `json:"domains"` // the leaf's DNS names, lowercased
	NotBefore   time.Time `json:"not_before"`
	ExpiresAt   time.Time `json:"expires_at"`
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the leaf (DER), hex
	Issuer      string    `json:"issuer"`
	CreatedAt   time.Time `json:"created_at"`
	// Managed marks a certificate Pier ordered itself (certs:auto): it is
	// replaced when renewed. An uploaded one is never touched by Pier.
	Managed bool `json:"managed"`
}

// CertName is the length of a certificate's name, in hex digits of its
// fingerprint.
const CertName = 12

// TLSCert is a certificate with its chain and private key, PEM-encoded: what
// routers serve. It never goes into an API answer (the fields are not
// encoded) or a log line (LogValue shows the metadata only).
type TLSCert struct {
	Certificate
	Chain string `json:"-"`
	Key   string `json:"-"`
}

// LogValue keeps the key out of logs.
func (c TLSCert) LogValue() slog.Value {
	return slog.GroupValue(slog.String("app", c.App), slog.String("name", c.Name), slog.Any("domains", c.Domains))
}

// HTTPSSettings are an app's HTTPS behaviour at the router: HTTPSRedirect
// sends plain-HTTP requests to https:// (308); HSTS adds
// Strict-Transport-Security to answers over TLS.
type HTTPSSettings struct {
	HTTPSRedirect bool `json:"https_redirect"`
	HSTS          bool `json:"hsts"`
}

// HTTPSChange changes some of an app's HTTPS settings; nil leaves one as is.
type HTTPSChange struct {
	HTTPSRedirect *bool `json:"https_redirect,omitempty"`
	HSTS          *bool `json:"hsts,omitempty"`
}

// MaxPEM bounds an uploaded chain or key.
const MaxPEM = 64 << 10

// ParseCertificate checks an uploaded chain (leaf first) and private key,
// both PEM, at time now: both parse, the key is the leaf's, the leaf is
// valid now and names at least one DNS name. It returns the certificate's
// metadata (without App and CreatedAt). Its errors never quote the key.
func ParseCertificate(chainPEM, keyPEM string, now time.Time) (*Certificate, error) {
	if strings.TrimSpace(chainPEM) == "" {
		return nil, Errorf(EINVALID, "the certificate is empty: give the PEM file of the certificate chain, leaf first")
	}
	if strings.TrimSpace(keyPEM) == "" {
		return nil, Errorf(EINVALID, "the private key is empty: give the PEM file of the certificate's private key")
	}
	if len(chainPEM) > MaxPEM || len(keyPEM) > MaxPEM {
		return nil, Errorf(ETOOLARGE, "the certificate chain and the private key may have at most %d KB each", MaxPEM>>10)
	}
	var chain [][]byte
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if strings.Contains(b.Type, "PRIVATE KEY") {
			return nil, Errorf(EINVALID, "the certificate file holds a private key: give the certificate chain and the key as two files (pier certs:add CERT_FILE KEY_FILE)")
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, Errorf(EINVALID, "the certificate is not PEM: give a file with -----BEGIN CERTIFICATE----- blocks, leaf first")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, Errorf(EINVALID, "the first certificate does not parse (%v): give a PEM certificate chain, leaf first", err)
	}
	for i, der := range chain[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, Errorf(EINVALID, "certificate %d of the chain does not parse (%v)", i+2, err)
		}
	}
	kb, _ := pem.Decode([]byte(keyPEM))
	if kb == nil || !strings.Contains(kb.Type, "PRIVATE KEY") {
		return nil, Errorf(EINVALID, "the private key is not PEM: give a file with a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block")
	}
	if strings.Contains(kb.Type, "ENCRYPTED") || kb.Headers["Proc-Type"] != "" {
		return nil, Errorf(EINVALID, "the private key is encrypted: decrypt it first (openssl pkey -in KEY -out KEY.plain)")
	}
	// X509KeyPair parses the key and checks it against the leaf; its
	// errors name what is wrong, never the key's bytes, but we say it in
	// our own words anyway.
	if _, err := tls.X509KeyPair([]byte(chainPEM), pem.EncodeToMemory(kb)); err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, Errorf(EINVALID, "the private key does not match the certificate: give the key the certificate was issued for")
		}
		return nil, Errorf(EINVALID, "the private key does not parse: give an unencrypted RSA, ECDSA or Ed25519 key in PEM (PKCS#1, PKCS#8 or SEC 1)")
	}
	if now.After(leaf.NotAfter) {
		return nil, Errorf(EINVALID, "the certificate expired on %s: renew it and upload the new one", leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if now.Before(leaf.NotBefore) {
		return nil, Errorf(EINVALID, "the certificate is not valid before %s: upload it from then, or check the clock of whoever issued it", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	var names []string
	for _, n := range leaf.DNSNames {
		h, err := NormalizeHostname(n)
		if err != nil {
			return nil, Errorf(EINVALID, "the certificate names %q, which is not a hostname Pier can route", clip(n))
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	if len(names) == 0 {
		return nil, Errorf(EINVALID, "the certificate names no DNS names (subject alternative names): browsers would refuse it; issue one for your domains")
	}
	slices.Sort(names)
	sum := sha256.Sum256(leaf.Raw)
	fp := hex.EncodeToString(sum[:])
	return &Certificate{
		Name: fp[:CertName], Domains: names, NotBefore: leaf.NotBefore, ExpiresAt: leaf.NotAfter,
		Fingerprint: fp, Issuer: leaf.Issuer.String(),
	}, nil
}

// NormalizeCertName checks what certs:remove was given: a certificate's
// name or a prefix of its fingerprint, at least 8 hex digits.
func NormalizeCertName(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(strings.ReplaceAll(s, ":", "")))
	if len(s) < 8 || len(s) > 64 {
		return "", Errorf(EINVALID, "certificate %q is not a name: give its name (12 hex digits) or at least 8 hex digits of its fingerprint, as `pier certs` shows", clip(s))
	}
	if _, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2)); err != nil {
		return "", Errorf(EINVALID, "certificate %q is not a name: names and fingerprints are hex digits, as `pier certs` shows", clip(s))
	}
	return s, nil
}

// CertCovers reports whether a certificate name (possibly "*.example.com")
// covers host, as TLS clients match them: a wildcard covers one label.
func CertCovers(name, host string) bool {
	if name == host {
		return true
	}
	rest, ok := strings.CutPrefix(name, "*.")
	if !ok {
		return false
	}
	_, hrest, ok := strings.Cut(host, ".")
	return ok && hrest == rest
}

// TLSState is what routers need for TLS: every certificate with its key,
// and the HTTPS settings of the apps that turned any on.
type TLSState struct {
	Certs []TLSCert
	HTTPS map[string]HTTPSSettings // app → settings; apps with both off are absent
}
