package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

type memSettings map[string]string

func (m memSettings) InitSetting(_ context.Context, k, v string) (string, error) {
	if old, ok := m[k]; ok {
		return old, nil
	}
	m[k] = v
	return v, nil
}

// --registry-token-service: off by default (no hooks, no handler); on, it
// needs pierd's own registry account, and wires the build and pull hooks.
func TestRegistryTokenOptions(t *testing.T) {
	ctx, log := context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil))
	var off registryTokenOptions
	if err := off.start(ctx, options{}, memSettings{}, log); err != nil || off.handler() != nil || off.buildCredentials(time.Minute) != nil || off.pullCredentials("r") != nil {
		t.Fatalf("off: %v", err)
	}
	on := registryTokenOptions{service: "registry.example"}
	if err := on.start(ctx, options{registry: "registry.example:5000", registryPrefix: "pier"}, memSettings{}, log); err == nil {
		t.Fatal("no platform account accepted")
	}
	t.Setenv("PIER_REGISTRY_PASSWORD", "pw")
	o := options{registry: "registry.example:5000", registryPrefix: "pier", registryUsername: "pier"}
	if err := on.start(ctx, o, memSettings{}, log); err != nil {
		t.Fatal(err)
	}
	if on.handler() == nil {
		t.Fatal("no handler")
	}
	reg, user, pass, err := on.pullCredentials("registry.example:5000")("shop")
	if err != nil || reg != "registry.example:5000" || user != "pull.shop" || pass == "" {
		t.Errorf("pull credentials: %q %q %v", reg, user, err)
	}
	u, p, release, err := on.buildCredentials(time.Minute)(ctx, "shop")
	if err != nil || u == "" || p == "" || release == nil {
		t.Errorf("build credentials: %q %v", u, err)
	}
}
