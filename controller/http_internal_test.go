package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/pierpaas/pier"
)

// A full disk is answered 507 with its message, and logged with its cause;
// it is never the generic 500.
func TestWriteErrorNoSpace(t *testing.T) {
	cause := fmt.Errorf("postgres: set config: %w", syscall.ENOSPC)
	err := fmt.Errorf("%w (%w)", pier.NoSpace("/var/lib/pier/pg-x/data"), cause)
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	w := httptest.NewRecorder()
	writeError(w, httptest.NewRequest("PATCH", "/v1/apps/a/config", nil), log, err)

	if w.Code != http.StatusInsufficientStorage {
		t.Fatalf("status %d, want 507", w.Code)
	}
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Code != pier.ENOSPACE || !strings.Contains(body.Error.Message, "no space left on device") ||
		!strings.Contains(body.Error.Message, "/var/lib/pier/pg-x/data") || strings.Contains(body.Error.Message, "postgres:") {
		t.Fatalf("body %+v", body)
	}
	if !strings.Contains(logged.String(), "disk full") || !strings.Contains(logged.String(), "no space left on device") {
		t.Fatalf("log %q", logged.String())
	}
}

func TestStatusOfEveryCode(t *testing.T) {
	for code, want := range map[string]int{
		pier.EINVALID: 400, pier.EUNAUTHORIZED: 401, pier.EFORBIDDEN: 403, pier.ENOTFOUND: 404,
		pier.ECONFLICT: 409, pier.ETOOLARGE: 413, pier.ETOOMANY: 429, pier.EUNAVAILABLE: 503,
		pier.EROLLOUT: 422, pier.ENOSPACE: 507, pier.EINTERNAL: 500,
	} {
		if got := statusOf(code); got != want {
			t.Errorf("statusOf(%q) = %d, want %d", code, got, want)
		}
	}
}
