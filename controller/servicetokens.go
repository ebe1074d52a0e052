package controller

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pierpaas/pier"
)

// Service tokens: the credentials of platform components that run as their
// own processes (`pierd router`), on the controller's internal listener
// (RouterFeed). Admins manage them through the public API; the components
// present them on the internal listener only, where user credentials are
// refused.

type serviceTokenRequest struct {
	Scope       string `json:"scope"`
	Description string `json:"description,omitempty"`
}

// serviceTokens returns the store's service tokens, or an error saying this
// store keeps none.
func (s *Server) serviceTokens() (pier.ServiceTokenStore, error) {
	st, ok := s.store.(pier.ServiceTokenStore)
	if !ok {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "this controller's store keeps no service tokens")
	}
	return st, nil
}

func (s *Server) listServiceTokens(w http.ResponseWriter, r *http.Request) (any, error) {
	st, err := s.serviceTokens()
	if err != nil {
		return nil, err
	}
	l, err := st.ListServiceTokens(r.Context())
	if err != nil {
		return nil, err
	}
	return pier.List[pier.ServiceToken]{Items: l}, nil
}

func (s *Server) createServiceToken(w http.ResponseWriter, r *http.Request) (any, error) {
	st, err := s.serviceTokens()
	if err != nil {
		return nil, err
	}
	var req serviceTokenRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if req.Scope == "" {
		return nil, pier.Errorf(pier.EINVALID, "a service token needs a scope: one of %s, such as router for `pierd router`", strings.Join(pier.ServiceScopes, ", "))
	}
	if err := pier.ValidateScope(req.Scope); err != nil {
		return nil, err
	}
	req.Description = strings.TrimSpace(req.Description)
	if req.Description == "" {
		req.Description = req.Scope
	}
	if len(req.Description) > 200 {
		return nil, pier.Errorf(pier.EINVALID, "service token description must be at most 200 characters")
	}
	token, prefix := NewServiceTokenSecret(req.Scope)
	t := &pier.ServiceToken{Scope: req.Scope, Description: req.Description, Prefix: prefix, CreatedBy: userOf(r).Username}
	if err := st.CreateServiceToken(r.Context(), t, hashToken(token)); err != nil {
		return nil, err
	}
	return pier.NewServiceToken{ServiceToken: *t, Token: token}, nil
}

func (s *Server) revokeServiceToken(w http.ResponseWriter, r *http.Request) (any, error) {
	st, err := s.serviceTokens()
	if err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id < 1 {
		return nil, pier.Errorf(pier.EINVALID, "service token ID must be a number: see `pier service-tokens`")
	}
	if err := st.RevokeServiceToken(r.Context(), id, userOf(r).Username); err != nil {
		return nil, err
	}
	if s.revoked != nil {
		s.revoked()
	}
	return nil, nil
}

// NewServiceTokenSecret makes a service token of scope: 256 random bits
// behind "piersvc_<scope>_", and the prefix kept to tell it apart.
func NewServiceTokenSecret(scope string) (token, prefix string) {
	head := pier.ServiceTokenPrefix + scope + "_"
	token = head + randomString(32)
	return token, token[:len(head)+6]
}

// HashServiceToken is how a service token is stored.
func HashServiceToken(token string) string { return hashToken(token) }

// CheckServiceToken authenticates a component on the internal listener: the
// request's Bearer token must be a live service token of scope. Anything
// else is refused with a message that says what to send instead: EUNAUTHORIZED
// when there is no token or an unknown one, EFORBIDDEN for a user's
// credentials (session or API token) or a token of another scope.
func CheckServiceToken(ctx context.Context, store pier.ServiceTokenStore, authorization, scope string) (*pier.ServiceToken, error) {
	create := "create one with `pier service-tokens:create --scope " + scope + "` (as an admin)"
	if authorization == "" {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "this internal endpoint needs a %s service token as 'Authorization: Bearer %s%s_...': %s", scope, pier.ServiceTokenPrefix, scope, create)
	}
	if len(authorization) > maxAuthHeader {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the Authorization header is over %d bytes: send a service token", maxAuthHeader)
	}
	kind, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(kind, "Bearer") || token == "" {
		return nil, pier.Errorf(pier.EUNAUTHORIZED, "the Authorization header must be 'Bearer <service token>'")
	}
	if !strings.HasPrefix(token, pier.ServiceTokenPrefix) {
		// A user's API token or session: never accepted here, whoever the
		// user is, admins included.
		return nil, pier.Errorf(pier.EFORBIDDEN, "user credentials (login sessions and API tokens) are refused on the internal listener: components authenticate with a service token; %s", create)
	}
	t, err := store.ServiceTokenByHash(ctx, hashToken(token))
	if err != nil {
		return nil, asUnauthorized(err, "the service token is unknown or revoked: "+create)
	}
	if t.Scope != scope {
		return nil, pier.Errorf(pier.EFORBIDDEN, "this service token has scope %q; this endpoint needs scope %q: %s", t.Scope, scope, create)
	}
	return t, nil
}
