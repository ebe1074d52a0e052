package client

import (
	"context"
	"net/http"
	"strconv"

	"github.com/pierpaas/pier"
)

// ServiceTokens lists the platform components' service tokens (admins
// only; never the tokens themselves).
func (c *Client) ServiceTokens(ctx context.Context) (*pier.List[pier.ServiceToken], error) {
	return get[pier.List[pier.ServiceToken]](ctx, c, "/v1/service-tokens", nil)
}

// CreateServiceToken creates a service token of scope (pier.ScopeRouter
// for `pierd router`); its Token is shown only here.
func (c *Client) CreateServiceToken(ctx context.Context, scope, description string) (*pier.NewServiceToken, error) {
	req := struct {
		Scope       string `json:"scope"`
		Description string `json:"description,omitempty"`
	}{scope, description}
	return send[pier.NewServiceToken](ctx, c, http.MethodPost, "/v1/service-tokens", req)
}

// RevokeServiceToken revokes a service token by ID.
func (c *Client) RevokeServiceToken(ctx context.Context, id int64) error {
	return c.Do(ctx, http.MethodDelete, "/v1/service-tokens/"+strconv.FormatInt(id, 10), nil, nil, nil)
}
