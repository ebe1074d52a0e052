package pier

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Scopes of service tokens: what a component may do on the controller's
// internal listener. A token has exactly one.
const (
	// ScopeRouter: follow the router feed (routes, domains, certificates
	// with their keys, HTTPS flags, router settings) of `pierd router`.
	ScopeRouter = "router"
	// ScopeBuilder is reserved for a builder running alone (`pierd
	// builder`); no endpoint accepts it yet.
	ScopeBuilder = "builder"
)

// ServiceScopes are the scopes a service token may have.
var ServiceScopes = []string{ScopeRouter, ScopeBuilder}

// ServiceTokenPrefix starts every service token. It differs from user API
// tokens' "pier_", so that neither is ever taken for the other, and secret
// scanners can tell them apart.
const ServiceTokenPrefix = "piersvc_"

// ValidateScope checks a service token's scope.
func ValidateScope(scope string) error {
	if slices.Contains(ServiceScopes, scope) {
		return nil
	}
	return Errorf(EINVALID, "scope %q is unknown: use one of %s", scope, strings.Join(ServiceScopes, ", "))
}

// ServiceToken is the credential of a platform component (a router or a
// builder running as its own process) on the controller's internal
// listener. Only its hash is stored; the token is shown once.
type ServiceToken struct {
	ID          int64      `json:"id"`
	Scope       string     `json:"scope"`
	Description string     `json:"description"`
	Prefix      string     `json:"prefix"` // the first characters, to tell tokens apart
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
}

// NewServiceToken is a just-created service token with its secret, shown
// once.
type NewServiceToken struct {
	ServiceToken
	Token string `json:"token"`
}

// ServiceTokenStore keeps service tokens by hash. The postgres package
// implements it beside Store.
type ServiceTokenStore interface {
	// CreateServiceToken stores t (its Scope, Description, Prefix and
	// CreatedBy) under hash, sets its ID and creation time, and records
	// the event "service-token.create" by t.CreatedBy.
	CreateServiceToken(ctx context.Context, t *ServiceToken, hash string) error
	ListServiceTokens(ctx context.Context) ([]ServiceToken, error)
	// RevokeServiceToken deletes a token (ENOTFOUND if there is none) and
	// records "service-token.revoke" by actor.
	RevokeServiceToken(ctx context.Context, id int64, actor string) error
	// ServiceTokenByHash returns the live token with that hash, recording
	// its use, or EUNAUTHORIZED.
	ServiceTokenByHash(ctx context.Context, hash string) (*ServiceToken, error)
}
