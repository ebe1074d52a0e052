package postgres_test

import (
	"testing"

	"github.com/pierpaas/pier"
)

func TestServiceTokens(t *testing.T) {
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustUser(t, db, "root", true)
	tok := &pier.ServiceToken{Scope: pier.ScopeRouter, Description: "edge-1", Prefix: "piersvc_router_abcdef", CreatedBy: "root"}
	if err := db.CreateServiceToken(ctx, tok, "hash-1"); err != nil {
		t.Fatal(err)
	}
	if tok.ID == 0 || tok.CreatedAt.IsZero() {
		t.Fatalf("created %+v", tok)
	}
	wantCode(t, db.CreateServiceToken(ctx, &pier.ServiceToken{Scope: "admin", Description: "x", Prefix: "p", CreatedBy: "root"}, "hash-2"), pier.EINVALID)
	wantCode(t, db.CreateServiceToken(ctx, &pier.ServiceToken{Scope: pier.ScopeRouter, Description: "x", Prefix: "p", CreatedBy: "root"}, "hash-1"), pier.ECONFLICT)

	got, err := db.ServiceTokenByHash(ctx, "hash-1")
	if err != nil || got.ID != tok.ID || got.Scope != pier.ScopeRouter || got.LastUsedAt != nil {
		t.Fatalf("by hash: %+v %v", got, err)
	}
	if again, err := db.ServiceTokenByHash(ctx, "hash-1"); err != nil || again.LastUsedAt == nil {
		t.Fatalf("use not recorded: %+v %v", again, err)
	}
	_, err = db.ServiceTokenByHash(ctx, "nope")
	wantCode(t, err, pier.EUNAUTHORIZED)

	l, err := db.ListServiceTokens(ctx)
	if err != nil || len(l) != 1 || l[0].Description != "edge-1" || l[0].CreatedBy != "root" {
		t.Fatalf("list: %+v %v", l, err)
	}
	if err := db.RevokeServiceToken(ctx, tok.ID, "root"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.RevokeServiceToken(ctx, tok.ID, "root"), pier.ENOTFOUND)
	_, err = db.ServiceTokenByHash(ctx, "hash-1")
	wantCode(t, err, pier.EUNAUTHORIZED)
}
