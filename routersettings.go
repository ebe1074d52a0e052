package pier

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Bounds of an app's router settings.
const (
	BodyLimitMax      = 10 << 30 // 10 GiB: past this, store the upload elsewhere
	TimeoutMinSeconds = 1
	TimeoutMaxSeconds = 3600
	AllowMax          = 100 // entries of an allowlist
)

// RouterSettings are how the router treats one app's requests. The zero
// value is the platform's behaviour: open to everyone, no maintenance, the
// platform's body limit and timeout.
type RouterSettings struct {
	// Maintenance answers every request with 503 and a maintenance page;
	// the app's processes keep running.
	Maintenance bool `json:"maintenance"`
	// Allow, when not empty, lets only clients from these networks or
	// addresses ("10.0.0.0/8", "203.0.113.7") reach the app; others get
	// 403. Entries are kept in canonical form.
	Allow []string `json:"allow,omitempty"`
	// BodyLimitBytes is the largest request body the app is sent, in
	// bytes; 0 is the platform's default. Larger ones get 413.
	BodyLimitBytes int64 `json:"body_limit_bytes,omitempty"`
	// TimeoutSeconds is how long the router waits for the app's answer
	// headers (not for a streamed body); 0 is the platform's default.
	// Past it, the client gets 504.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// Timeout is TimeoutSeconds as a duration (0: the platform's default).
func (s RouterSettings) Timeout() time.Duration {
	return time.Duration(s.TimeoutSeconds) * time.Second
}

// IsZero reports whether s is the platform's behaviour.
func (s RouterSettings) IsZero() bool {
	return !s.Maintenance && len(s.Allow) == 0 && s.BodyLimitBytes == 0 && s.TimeoutSeconds == 0
}

// Validate checks every setting.
func (s RouterSettings) Validate() error {
	if _, err := ParseAllow(s.Allow); err != nil {
		return err
	}
	if err := ValidateBodyLimit(s.BodyLimitBytes); err != nil {
		return err
	}
	return ValidateTimeout(s.TimeoutSeconds)
}

// ValidateBodyLimit checks a body limit in bytes (0: the default).
func ValidateBodyLimit(n int64) error {
	switch {
	case n < 0:
		return Errorf(EINVALID, "body limit %d is negative: give a number of bytes, or unset it for the platform's default", n)
	case n > BodyLimitMax:
		return Errorf(EINVALID, "body limit %d bytes is too large: at most %d (10 GiB); store larger uploads elsewhere (object storage)", n, int64(BodyLimitMax))
	}
	return nil
}

// ValidateTimeout checks a timeout in seconds (0: the default).
func ValidateTimeout(seconds int) error {
	if seconds != 0 && (seconds < TimeoutMinSeconds || seconds > TimeoutMaxSeconds) {
		return Errorf(EINVALID, "timeout %ds is out of bounds: give 1s to 1h (3600 seconds), or unset it for the platform's default", seconds)
	}
	return nil
}

// ParseAllow reads an allowlist: networks ("10.0.0.0/8", "fd00::/8") and
// addresses ("203.0.113.7"). It returns them as prefixes, in order,
// without duplicates.
func ParseAllow(entries []string) ([]netip.Prefix, error) {
	if len(entries) > AllowMax {
		return nil, Errorf(EINVALID, "allowlist has %d entries: at most %d; use wider networks (10.0.0.0/8)", len(entries), AllowMax)
	}
	out := make([]netip.Prefix, 0, len(entries))
	seen := make(map[netip.Prefix]bool, len(entries))
	for _, e := range entries {
		p, err := parseAllowEntry(e)
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func parseAllowEntry(e string) (netip.Prefix, error) {
	s := strings.TrimSpace(e)
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, Errorf(EINVALID, "allowlist entry %q is neither a network such as 10.0.0.0/8 nor an address such as 203.0.113.7", clip(e))
}

// CanonicalAllow returns an allowlist in canonical form: masked networks,
// addresses without /32 or /128, no duplicates.
func CanonicalAllow(entries []string) ([]string, error) {
	ps, err := ParseAllow(entries)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return out, nil
}

// Router setting names, as in JSON.
const (
	RouterMaintenance = "maintenance"
	RouterAllow       = "allow"
	RouterBodyLimit   = "body_limit_bytes"
	RouterTimeout     = "timeout_seconds"
)

var routerFields = []string{RouterMaintenance, RouterAllow, RouterBodyLimit, RouterTimeout}

// RouterChange changes some of an app's router settings, as the body of
// PATCH /v1/apps/{app}/router: a field absent is kept, a field set to null
// goes back to its default (Unset), others are set.
type RouterChange struct {
	Maintenance    *bool     `json:"maintenance,omitempty"`
	Allow          *[]string `json:"allow,omitempty"`
	BodyLimitBytes *int64    `json:"body_limit_bytes,omitempty"`
	TimeoutSeconds *int      `json:"timeout_seconds,omitempty"`
	// Unset names the settings to put back to their defaults (JSON
	// null): RouterMaintenance, RouterAllow, RouterBodyLimit, RouterTimeout.
	Unset []string `json:"-"`
}

// MarshalJSON writes the change with null for each unset setting.
func (c RouterChange) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	for _, f := range c.Unset {
		m[f] = nil
	}
	if c.Maintenance != nil {
		m[RouterMaintenance] = *c.Maintenance
	}
	if c.Allow != nil {
		m[RouterAllow] = *c.Allow
	}
	if c.BodyLimitBytes != nil {
		m[RouterBodyLimit] = *c.BodyLimitBytes
	}
	if c.TimeoutSeconds != nil {
		m[RouterTimeout] = *c.TimeoutSeconds
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads a change, telling null (unset) from absent (kept).
func (c *RouterChange) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return Errorf(EINVALID, "router settings must be a JSON object such as {\"maintenance\": true}")
	}
	*c = RouterChange{}
	for _, k := range sortedKeys(m) {
		raw := m[k]
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			if !contains(routerFields, k) {
				return unknownRouterField(k)
			}
			c.Unset = append(c.Unset, k)
			continue
		}
		var err error
		switch k {
		case RouterMaintenance:
			c.Maintenance = new(bool)
			if err = json.Unmarshal(raw, c.Maintenance); err != nil {
				return Errorf(EINVALID, "maintenance must be true or false (or null for off)")
			}
		case RouterAllow:
			c.Allow = new([]string)
			if err = json.Unmarshal(raw, c.Allow); err != nil {
				return Errorf(EINVALID, "allow must be a list of networks and addresses such as [\"10.0.0.0/8\", \"203.0.113.7\"] (or null for everyone)")
			}
		case RouterBodyLimit:
			c.BodyLimitBytes = new(int64)
			if err = json.Unmarshal(raw, c.BodyLimitBytes); err != nil {
				return Errorf(EINVALID, "body_limit_bytes must be a whole number of bytes such as 10485760 (or null for the platform's default)")
			}
		case RouterTimeout:
			c.TimeoutSeconds = new(int)
			if err = json.Unmarshal(raw, c.TimeoutSeconds); err != nil {
				return Errorf(EINVALID, "timeout_seconds must be a whole number of seconds from 1 to 3600 (or null for the platform's default)")
			}
		default:
			return unknownRouterField(k)
		}
	}
	return nil
}

func unknownRouterField(k string) error {
	return Errorf(EINVALID, "unknown router setting %q: the settings are %s", clip(k), strings.Join(routerFields, ", "))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Validate checks the change on its own: something to change, nothing
// both set and unset, every value in bounds.
func (c RouterChange) Validate() error {
	set := map[string]bool{
		RouterMaintenance: c.Maintenance != nil, RouterAllow: c.Allow != nil,
		RouterBodyLimit: c.BodyLimitBytes != nil, RouterTimeout: c.TimeoutSeconds != nil,
	}
	for _, f := range c.Unset {
		if !contains(routerFields, f) {
			return unknownRouterField(f)
		}
		if set[f] {
			return Errorf(EINVALID, "router setting %s is both set and unset: give one", f)
		}
	}
	if len(c.Unset) == 0 && !set[RouterMaintenance] && !set[RouterAllow] && !set[RouterBodyLimit] && !set[RouterTimeout] {
		return Errorf(EINVALID, "no router settings given: set maintenance, allow, body_limit_bytes or timeout_seconds")
	}
	if c.Allow != nil {
		if _, err := ParseAllow(*c.Allow); err != nil {
			return err
		}
	}
	if c.BodyLimitBytes != nil {
		if err := ValidateBodyLimit(*c.BodyLimitBytes); err != nil {
			return err
		}
	}
	if c.TimeoutSeconds != nil {
		if err := ValidateTimeout(*c.TimeoutSeconds); err != nil {
			return err
		}
	}
	return nil
}

// Apply returns base with the change applied, and the audit detail, such
// as "maintenance on; timeout 30s; allow unset".
func (c RouterChange) Apply(base RouterSettings) (RouterSettings, string, error) {
	if err := c.Validate(); err != nil {
		return RouterSettings{}, "", err
	}
	next := base
	next.Allow = append([]string(nil), base.Allow...)
	var parts []string
	for _, f := range c.Unset {
		switch f {
		case RouterMaintenance:
			next.Maintenance = false
			parts = append(parts, "maintenance off")
		case RouterAllow:
			next.Allow = nil
			parts = append(parts, "allow unset (everyone)")
		case RouterBodyLimit:
			next.BodyLimitBytes = 0
			parts = append(parts, "body limit unset")
		case RouterTimeout:
			next.TimeoutSeconds = 0
			parts = append(parts, "timeout unset")
		}
	}
	if c.Maintenance != nil {
		next.Maintenance = *c.Maintenance
		if next.Maintenance {
			parts = append(parts, "maintenance on")
		} else {
			parts = append(parts, "maintenance off")
		}
	}
	if c.Allow != nil {
		allow, err := CanonicalAllow(*c.Allow)
		if err != nil {
			return RouterSettings{}, "", err
		}
		next.Allow = allow
		if len(allow) == 0 {
			next.Allow = nil
			parts = append(parts, "allow unset (everyone)")
		} else {
			parts = append(parts, "allow "+strings.Join(allow, ","))
		}
	}
	if c.BodyLimitBytes != nil {
		next.BodyLimitBytes = *c.BodyLimitBytes
		parts = append(parts, "body limit "+strconv.FormatInt(next.BodyLimitBytes, 10)+" bytes")
	}
	if c.TimeoutSeconds != nil {
		next.TimeoutSeconds = *c.TimeoutSeconds
		parts = append(parts, "timeout "+next.Timeout().String())
	}
	if len(next.Allow) == 0 {
		next.Allow = nil
	}
	return next, strings.Join(parts, "; "), next.Validate()
}
