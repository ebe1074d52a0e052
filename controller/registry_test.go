package controller_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/internal/testenv"
	"github.com/pierpaas/pier/postgres"
	"github.com/pierpaas/pier/registryauth"
)

// TestRegistryTokenAuth runs the real registry (distribution v3.1.2) with
// token authentication whose realm is the controller's, and pushes and
// pulls with each kind of credentials (issue 8): a build's reach its app's
// repository only, and stop when the build ends or expires; an app's pull
// credentials pull and never push; the platform's reach everything.
func TestRegistryTokenAuth(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("-short: runs the registry (built from the module proxy once)")
	}
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	auth, err := registryauth.New(ctx, registryauth.Config{
		Settings: db, Service: "registry.example", Prefix: "pier",
		PlatformUsername: "pier-platform", PlatformPassword: "platform-secret",
	})
	if err != nil {
		t.Fatal(err)
	}
	api, err := controller.New(ctx, controller.Config{Store: db, PublicURL: "http://pier.localhost:8080", RegistryAuth: auth})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api) // on 127.0.0.1
	t.Cleanup(srv.Close)

	// The certificate the operator gives the registry comes from the API.
	res, err := http.Get(srv.URL + controller.RegistryCertificatePath)
	if err != nil {
		t.Fatal(err)
	}
	cert := make([]byte, 4096)
	n, _ := res.Body.Read(cert)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(cert[:n]), "BEGIN CERTIFICATE") {
		t.Fatalf("certificate: %d %s", res.StatusCode, cert[:n])
	}
	// The realm by name, as in production (the public URL): clients of
	// go-containerregistry refuse a realm at a loopback or private IP
	// literal unless it is the registry's own host:port. This test's
	// transport takes pier.localhost to the controller on 127.0.0.1.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if host == "pier.localhost" {
			host = "127.0.0.1"
		}
		if host != "127.0.0.1" {
			return nil, fmt.Errorf("test traffic stays on 127.0.0.1, not %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(host, p))
	}
	reg := testenv.StartTokenRegistry(t, testenv.TokenAuth{
		Realm: "http://pier.localhost:" + port + controller.RegistryTokenPath, Service: "registry.example",
		Issuer: registryauth.DefaultIssuer, RootCert: cert[:n],
	})

	ref := func(repo string) name.Reference {
		r, err := name.NewTag(reg.Host+"/"+repo+":v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	basic := func(user, pass string) remote.Option {
		return remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}))
	}
	push := func(repo string, img v1.Image, creds remote.Option) error {
		return remote.Write(ref(repo), img, creds, remote.WithContext(ctx), remote.WithTransport(tr))
	}
	pull := func(repo string, creds remote.Option) (v1.Hash, error) {
		img, err := remote.Image(ref(repo), creds, remote.WithContext(ctx), remote.WithTransport(tr))
		if err != nil {
			return v1.Hash{}, err
		}
		return img.Digest()
	}
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: allowed", what)
			return
		}
		var te *transport.Error
		if !errors.As(err, &te) || (te.StatusCode != 401 && te.StatusCode != 403) {
			t.Errorf("%s: refused, but not as unauthorized or denied: %v", what, err)
			return
		}
		t.Logf("%s: refused: %d %s", what, te.StatusCode, firstLine(err.Error()))
	}
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	start := time.Now()
	bu, bp, release, err := auth.BuildCredentials("app-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A build of app-a pushes its image (and reads it back)...
	if err := push("pier/app-a", img, basic(bu, bp)); err != nil {
		t.Fatalf("push to app-a with app-a's build credentials: %v", err)
	}
	if got, err := pull("pier/app-a", basic(bu, bp)); err != nil || got != want {
		t.Fatalf("pull of app-a with its build credentials: %v %v", got, err)
	}
	t.Logf("first push and pull: %s", time.Since(start))
	// ...but cannot push to another app, nor read it.
	refused("push to app-b with app-a's build credentials", push("pier/app-b", img, basic(bu, bp)))
	refused("push outside the prefix with app-a's build credentials", push("other/app-a", img, basic(bu, bp)))

	// The platform's account reaches everything.
	if err := push("pier/app-b", img, basic("pier-platform", "platform-secret")); err != nil {
		t.Fatalf("push to app-b with the platform's account: %v", err)
	}
	refused("pull of app-b with app-a's build credentials", func() error { _, err := pull("pier/app-b", basic(bu, bp)); return err }())
	refused("no credentials", push("pier/app-a", img, remote.WithAuth(authn.Anonymous)))
	refused("wrong platform password", push("pier/app-a", img, basic("pier-platform", "nope")))

	// app-a's pods pull with its pull credentials, and cannot push.
	pu, pp, err := auth.PullCredentials("app-a")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pull("pier/app-a", basic(pu, pp)); err != nil || got != want {
		t.Fatalf("pull of app-a with its pull credentials: %v %v", got, err)
	}
	other, _ := random.Image(1024, 1)
	refused("push with pull credentials", push("pier/app-a", other, basic(pu, pp)))
	refused("pull of app-b with app-a's pull credentials", func() error { _, err := pull("pier/app-b", basic(pu, pp)); return err }())
	bpu, bpp, _ := auth.PullCredentials("app-b")
	if _, err := pull("pier/app-b", basic(bpu, bpp)); err != nil {
		t.Errorf("pull of app-b with its pull credentials: %v", err)
	}

	// Once the build has ended, its credentials are refused.
	release()
	refused("push with an ended build's credentials", push("pier/app-a", other, basic(bu, bp)))
	refused("pull with an ended build's credentials", func() error { _, err := pull("pier/app-a", basic(bu, bp)); return err }())
	// So are a build's that outlived their deadline.
	eu, ep, _, err := auth.BuildCredentials("app-a", 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := push("pier/app-a", other, basic(eu, ep)); err != nil {
		t.Fatalf("push within the deadline: %v", err)
	}
	time.Sleep(1600 * time.Millisecond)
	refused("push with an expired build's credentials", push("pier/app-a", other, basic(eu, ep)))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
