package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryVersion is the version of github.com/distribution/distribution/v3
// whose registry Registry runs.
const RegistryVersion = "v3.1.2"

// RegistryDir is where the registry binary is cached:
// $HOME/.cache/pier/registry-<version>.
func RegistryDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "pier", "registry-"+RegistryVersion), nil
}

// BuildRegistry builds the OCI registry of distribution/v3 from the module
// proxy into RegistryDir()/bin/registry, unless it is there, and returns the
// binary's path. Cold, it takes about a minute; concurrent callers are
// serialised by a lock file.
func BuildRegistry(ctx context.Context) (string, error) {
	dir, err := RegistryDir()
	if err != nil {
		return "", err
	}
	return buildTool(ctx, dir, "registry", "github.com/distribution/distribution/v3", RegistryVersion, "github.com/distribution/distribution/v3/cmd/registry")
}

// buildTool builds pkg of module at version, in a throwaway module under
// dir/src, into dir/bin/name, unless it is there, and returns its path.
// Concurrent callers (test binaries of several packages) are serialised by
// a lock file; the binary is renamed into place once complete.
func buildTool(ctx context.Context, dir, name, module, version, pkg string) (string, error) {
	bin := filepath.Join(dir, "bin", name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "build.lock"), func() {})
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := writeGoMod(src, module+" "+version, nil); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "testenv: building %s %s from the module proxy (once; cached in %s)\n", pkg, version, dir)
	b := &kubeBuilder{dir: dir, progress: os.Stderr}
	if _, err := b.run(ctx, src, "mod", "download", module); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	defer os.Remove(tmp)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	if _, err := b.run(ctx, src, "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, pkg); err != nil {
		return "", err
	}
	return bin, os.Rename(tmp, bin)
}

// PackVersion is the version of the pack CLI that BuildPackCLI builds: the
// one whose library Pier's pack strategy uses.
const PackVersion = "v0.38.2"

// BuildPackCLI builds the pack CLI from the module proxy into
// $HOME/.cache/pier/pack-<version>/bin/pack, unless it is there, and
// returns its path: the benchmarks' floor for the pack strategy.
func BuildPackCLI(ctx context.Context) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return buildTool(ctx, filepath.Join(home, ".cache", "pier", "pack-"+PackVersion), "pack", "github.com/buildpacks/pack", PackVersion, "github.com/buildpacks/pack")
}

// Registry is an OCI registry on loopback with password authentication,
// its storage in a temp dir. Host is "127.0.0.1:PORT", which Docker and
// pack treat as insecure (plain HTTP) without configuration.
type Registry struct {
	Host               string
	Username, Password string
	Dir                string // its storage
}

// StartRegistry runs a registry for the test, stopped at its end. It builds
// the registry first if need be (BuildRegistry).
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	return startRegistry(t, nil)
}

// TokenAuth is a registry's token authentication (its auth.token block):
// bearer tokens from the token service at Realm, for Service, signed by
// Issuer with the key of RootCert (PEM).
type TokenAuth struct {
	Realm, Service, Issuer string
	RootCert               []byte
}

// StartTokenRegistry runs a registry with token authentication for the
// test, like StartRegistry; its Username and Password are empty.
func StartTokenRegistry(t testing.TB, auth TokenAuth) *Registry {
	t.Helper()
	return startRegistry(t, &auth)
}

func startRegistry(t testing.TB, token *TokenAuth) *Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := BuildRegistry(ctx)
	if err != nil {
		t.Fatalf("building the registry: %v", err)
	}
	dir := t.TempDir()
	password, err := randomHex(16)
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{Dir: filepath.Join(dir, "storage")}
	var authBlock string
	if token == nil {
		r.Username, r.Password = "pier", password
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		authBlock = fmt.Sprintf("  htpasswd:\n    realm: pier-test-registry\n    path: %s\n", htpasswd)
	} else {
		bundle := filepath.Join(dir, "token-root.pem")
		if err := os.WriteFile(bundle, token.RootCert, 0o600); err != nil {
			t.Fatal(err)
		}
		authBlock = fmt.Sprintf("  token:\n    realm: %q\n    service: %q\n    issuer: %q\n    rootcertbundle: %s\n", token.Realm, token.Service, token.Issuer, bundle)
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	r.Host = "127.0.0.1:" + strconv.Itoa(ports[0])
	secret, err := randomHex(16)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.yml")
	err = os.WriteFile(config, fmt.Appendf(nil, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
auth:
%s`, r.Dir, r.Host, secret, authBlock), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out := &Buffer{}
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childSysProcAttr()
	// Its environment would override the config (REGISTRY_*).
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("registry output:\n%s", out)
		}
	})
	// Up once /v2/ asks for credentials.
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + r.Host + "/v2/")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the registry exited (%v):\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry did not answer on %s within 30s:\n%s", r.Host, out)
		}
	}
}
