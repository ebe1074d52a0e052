package kube

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pierpaas/pier/builder/tarball"
)

// SourcePathPrefix is where build Pods fetch their source, on pierd's
// internal listener: GET SourcePathPrefix + <build id> + "/source", with
// the build's own token as a Bearer token.
const SourcePathPrefix = "/internal/v1/builds/"

// Sources serves the pushed source of the builds under way, each as a
// gzipped tarball, to the build's Pod only: each build has its own random
// token, known to Pier and to the Pod (through the build's Secret), never
// a user's or a component's token. A build's source and token are gone
// once the build ends (Remove), or at the latest when it expires.
type Sources struct {
	mu     sync.Mutex
	builds map[string]*source
	now    func() time.Time
}

type source struct {
	tokenHash [sha256.Size]byte
	file      string
	expires   time.Time
}

// NewSources makes an empty set of sources.
func NewSources() *Sources {
	return &Sources{builds: map[string]*source{}, now: time.Now}
}

// Add makes the tarball at file fetchable as build id's source until
// remove is called or ttl has passed, and returns the token that
// authorizes the fetch.
func (s *Sources) Add(id, file string, ttl time.Duration) (token string, remove func()) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	token = hex.EncodeToString(b)
	s.mu.Lock()
	s.builds[id] = &source{tokenHash: sha256.Sum256([]byte(token)), file: file, expires: s.now().Add(ttl)}
	s.mu.Unlock()
	return token, func() {
		s.mu.Lock()
		delete(s.builds, id)
		s.mu.Unlock()
	}
}

// ServeHTTP serves GET SourcePathPrefix<id>/source. Every refusal is the
// same 404, whether the build is unknown, over, or the token wrong: a
// caller learns nothing of which builds exist.
func (s *Sources) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, SourcePathPrefix)
	id, ok2 := strings.CutSuffix(id, "/source")
	if !ok || !ok2 || id == "" || strings.Contains(id, "/") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(token))
	s.mu.Lock()
	src := s.builds[id]
	if src != nil && !s.now().Before(src.expires) {
		delete(s.builds, id)
		src = nil
	}
	s.mu.Unlock()
	if src == nil || token == "" || subtle.ConstantTimeCompare(sum[:], src.tokenHash[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pier-build-source"`)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	f, err := os.Open(src.file)
	if err != nil {
		http.Error(w, "the source is gone", http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "the source is gone", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "source.tar.gz", fi.ModTime(), f)
}

// Fetch environment of the build Pod's source container (`pierd
// fetch-source`).
const (
	EnvSourceURL       = "PIER_SOURCE_URL"
	EnvSourceTokenFile = "PIER_SOURCE_TOKEN_FILE"
	EnvSourceDir       = "PIER_SOURCE_DIR"
)

// FetchMain is `pierd fetch-source`, the build Pod's init container: it
// fetches the build's source from $PIER_SOURCE_URL with the token in
// $PIER_SOURCE_TOKEN_FILE and unpacks it into $PIER_SOURCE_DIR. It runs
// in the Pier image, so a builder image needs no curl or wget.
func FetchMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "pierd fetch-source takes no arguments; it reads %s, %s and %s (it runs in build Pods)\n", EnvSourceURL, EnvSourceTokenFile, EnvSourceDir)
		return 2
	}
	url, tokenFile, dir := os.Getenv(EnvSourceURL), os.Getenv(EnvSourceTokenFile), os.Getenv(EnvSourceDir)
	if url == "" || tokenFile == "" || dir == "" {
		fmt.Fprintf(stderr, "pierd fetch-source: %s, %s and %s must be set\n", EnvSourceURL, EnvSourceTokenFile, EnvSourceDir)
		return 2
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "pierd fetch-source: the source token: %v\n", err)
		return 1
	}
	start := time.Now()
	if err := Fetch(ctx, http.DefaultClient, url, strings.TrimSpace(string(tok)), dir); err != nil {
		fmt.Fprintf(stderr, "pierd fetch-source: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "-----> Fetched the source in %.1fs\n", time.Since(start).Seconds())
	return 0
}

// Fetch gets the source tarball at url with token and unpacks it into
// dir, trying again a few times while pierd cannot be reached.
func Fetch(ctx context.Context, c *http.Client, url, token, dir string) error {
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			last = err
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			last = fmt.Errorf("GET %s: %s", url, resp.Status)
			if resp.StatusCode < 500 {
				return fmt.Errorf("%w (the build is over, or its token is wrong)", last)
			}
			continue
		}
		err = tarball.Extract(resp.Body, dir)
		resp.Body.Close()
		if err != nil {
			return err
		}
		return nil
	}
	return errors.Join(errors.New("could not fetch the source"), last)
}
