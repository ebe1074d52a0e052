package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The registry refuses anonymous callers, takes a blob and a manifest from
// the holder of its password, and serves the manifest back by digest.
func TestRegistry(t *testing.T) {
	if testing.Short() && !isCI() {
		t.Skip("-short: the registry is built from the module proxy (about a minute, once)")
	}
	r := StartRegistry(t)
	do := func(method, path, contentType string, body []byte, auth bool) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+r.Host+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if strings.HasPrefix(contentType, "application/vnd.oci.image.manifest") {
			req.Header.Set("Accept", contentType)
		}
		if auth {
			req.SetBasicAuth(r.Username, r.Password)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	digest := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

	if res, _ := do("GET", "/v2/", "", nil, false); res.StatusCode != 401 || !strings.Contains(res.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("anonymous /v2/: %d %v", res.StatusCode, res.Header)
	}
	req, _ := http.NewRequest("GET", "http://"+r.Host+"/v2/", nil)
	req.SetBasicAuth(r.Username, "wrong")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 401 {
		t.Fatalf("a wrong password: %v %v", res, err)
	}

	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)
	res, _ := do("POST", "/v2/team/app/blobs/uploads/", "", nil, true)
	loc := res.Header.Get("Location")
	if res.StatusCode != 202 || loc == "" {
		t.Fatalf("blob upload start: %d %q", res.StatusCode, loc)
	}
	loc = strings.TrimPrefix(loc, "http://"+r.Host)
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if res, _ = do("PUT", loc+sep+"digest="+digest(config), "application/octet-stream", config, true); res.StatusCode != 201 {
		t.Fatalf("blob upload: %d", res.StatusCode)
	}
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, digest(config), len(config))
	const mt = "application/vnd.oci.image.manifest.v1+json"
	res, _ = do("PUT", "/v2/team/app/manifests/v1", mt, manifest, true)
	if res.StatusCode != 201 || res.Header.Get("Docker-Content-Digest") != digest(manifest) {
		t.Fatalf("manifest put: %d, digest %q, want %s", res.StatusCode, res.Header.Get("Docker-Content-Digest"), digest(manifest))
	}
	res, got := do("GET", "/v2/team/app/manifests/"+digest(manifest), mt, nil, true)
	if res.StatusCode != 200 || !bytes.Equal(got, manifest) {
		t.Fatalf("manifest by digest: %d %s", res.StatusCode, got)
	}
	if res, _ := do("GET", "/v2/team/app/manifests/v1", mt, nil, false); res.StatusCode != 401 {
		t.Fatalf("anonymous pull: %d", res.StatusCode)
	}
}
