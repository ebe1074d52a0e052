package client

import (
	"context"
	"net/http"

	"github.com/pierpaas/pier"
)

// Certs lists an app's TLS certificates (never their keys).
func (c *Client) Certs(ctx context.Context, app string) (*pier.List[pier.Certificate], error) {
	return get[pier.List[pier.Certificate]](ctx, c, appPath(app)+"/certs", nil)
}

// AddCert uploads a certificate chain (PEM, leaf first) and its private key
// (PEM) for the app's names.
func (c *Client) AddCert(ctx context.Context, app, chainPEM, keyPEM string) (*pier.Certificate, error) {
	req := struct {
		Certificate string `json:"certificate"`
		PrivateKey  string `json:"private_key"`
	}{chainPEM, keyPEM}
	return send[pier.Certificate](ctx, c, http.MethodPost, appPath(app)+"/certs", req)
}

// RemoveCert removes an app's certificate by name or fingerprint prefix.
func (c *Client) RemoveCert(ctx context.Context, app, name string) error {
	return c.Do(ctx, http.MethodDelete, appPath(app)+"/certs"+seg(name), nil, nil, nil)
}

// HTTPS returns the app's HTTPS redirect and HSTS settings.
func (c *Client) HTTPS(ctx context.Context, app string) (*pier.HTTPSSettings, error) {
	return get[pier.HTTPSSettings](ctx, c, appPath(app)+"/https", nil)
}

// SetHTTPS changes the app's HTTPS settings (nil fields stay as they are).
func (c *Client) SetHTTPS(ctx context.Context, app string, change pier.HTTPSChange) (*pier.HTTPSSettings, error) {
	return send[pier.HTTPSSettings](ctx, c, http.MethodPatch, appPath(app)+"/https", change)
}
