package pier

import (
	"net"
	"strings"
	"time"
)

// Domain is a hostname routed to an app. A hostname belongs to one app.
type Domain struct {
	Hostname  string    `json:"hostname"`
	App       string    `json:"app"`
	CreatedAt time.Time `json:"created_at"`
}

// Event is one line of the audit log: who did what to which app, and when.
// Detail never holds a secret: config events name keys, not values.
type Event struct {
	ID        int64     `json:"id"`
	App       string    `json:"app,omitempty"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Detail    string    `json:"detail,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// NormalizeHostname lowercases a hostname and checks that it is a valid DNS
// name, optionally with one leading "*." wildcard label.
func NormalizeHostname(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
	bad := func(why string) error {
		return Errorf(EINVALID, "domain %q is invalid: %s", clip(h), why)
	}
	if h == "" {
		return "", Errorf(EINVALID, "domain is empty: give a hostname such as www.example.com")
	}
	if len(h) > 253 {
		return "", bad("a hostname has at most 253 characters")
	}
	if net.ParseIP(h) != nil {
		return "", bad("use a hostname, not an IP address")
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return "", bad("use a fully qualified name such as www.example.com")
	}
	for i, l := range labels {
		if i == 0 && l == "*" {
			continue
		}
		if len(l) == 0 || len(l) > 63 {
			return "", bad("each dot-separated label must have 1 to 63 characters")
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && j > 0 && j < len(l)-1
			if !ok {
				return "", bad("labels hold letters, digits and inner dashes only")
			}
		}
	}
	return h, nil
}

// Page asks for one page of a list: at most Limit items after the cursor.
type Page struct {
	Limit int
	After string // opaque cursor from a previous page's Next; "" for the first
}

// Page size limits.
const (
	PageDefault = 50
	PageMax     = 500
)

// Normalized returns p with its limit defaulted and bounded.
func (p Page) Normalized() Page {
	if p.Limit <= 0 {
		p.Limit = PageDefault
	}
	if p.Limit > PageMax {
		p.Limit = PageMax
	}
	return p
}
