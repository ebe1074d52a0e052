package client

import (
	"context"
	"net/http"

	"github.com/pierpaas/pier"
)

// AutoCerts returns the app's automatic certificates: on or off, and each
// domain's state.
func (c *Client) AutoCerts(ctx context.Context, app string) (*pier.AutoCerts, error) {
	return get[pier.AutoCerts](ctx, c, appPath(app)+"/certs/auto", nil)
}

// EnableAutoCerts turns the app's automatic certificates on.
func (c *Client) EnableAutoCerts(ctx context.Context, app string) (*pier.AutoCerts, error) {
	return send[pier.AutoCerts](ctx, c, http.MethodPost, appPath(app)+"/certs/auto", nil)
}

// DisableAutoCerts turns the app's automatic certificates off.
func (c *Client) DisableAutoCerts(ctx context.Context, app string) (*pier.AutoCerts, error) {
	return send[pier.AutoCerts](ctx, c, http.MethodDelete, appPath(app)+"/certs/auto", nil)
}
