package main_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/internal/testenv"
)

// TestServiceTokensSecret: with --service-tokens-secret, the controller
// fills the (empty) Secret the chart makes with a router and a builder
// token that its internal listener takes; a restart keeps them; a token
// revoked with the CLI is replaced at the next start, never registered
// again.
func TestServiceTokensSecret(t *testing.T) {
	kube := testenv.KubeCluster(t)
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "pier-tokens-test"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	// As the chart makes it: no data.
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pier-service-tokens"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	data := newDataDir(t)
	internal := "127.0.0.1:" + freePort(t)
	env := []string{"PIER_DATA_DIR=" + data, "DATABASE_URL=", "PIER_HTTP_ADDR=127.0.0.1:0", "PIER_INTERNAL_ADDR=" + internal}
	args := []string{"controller", "--scheduler=kubernetes", "--kubeconfig", kube.Kubeconfig, "--service-tokens-secret", ns + "/pier-service-tokens"}
	d := startPierd(t, env, args...)
	secret := func() map[string]string {
		t.Helper()
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "pier-service-tokens", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for k, v := range s.Data {
			out[k] = string(v)
		}
		return out
	}
	// status opens the router feed: 200 for a router token, 403 for a
	// live token of another scope, 401 for an unknown one.
	status := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+internal+"/internal/v1/router/watch", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	first := secret()
	if !strings.HasPrefix(first["router"], "piersvc_router_") || !strings.HasPrefix(first["builder"], "piersvc_builder_") || len(first) != 2 {
		t.Fatalf("the Secret after the first start: %d keys, router %.20q..., builder %.20q...", len(first), first["router"], first["builder"])
	}
	if r, b := status(first["router"]), status(first["builder"]); r != http.StatusOK || b != http.StatusForbidden {
		t.Fatalf("the router feed answers the router token %d (want 200) and the builder token %d (want 403: live, another scope)", r, b)
	}
	for _, tok := range first {
		if strings.Contains(d.out.String(), tok) {
			t.Fatal("a service token is in pierd's log")
		}
	}

	// A restart keeps them.
	d.stop(t)
	d = startPierd(t, env, args...)
	if again := secret(); again["router"] != first["router"] || again["builder"] != first["builder"] {
		t.Fatal("a restart replaced live tokens")
	}

	// Revoked through the API: replaced in the Secret at once, and the old
	// one stays dead.
	c := newCLI(t)
	c.must("tokens test password\n", "register", d.url, "--username", "ops", "--bootstrap-token-file", filepath.Join(data, "bootstrap-token"), "--password-stdin")
	var toks []pier.ServiceToken
	jsonOut(t, c.must("", "service-tokens", "--json"), &toks)
	if len(toks) != 2 || toks[0].CreatedBy != "pierd" || !strings.Contains(toks[0].Description, ns+"/pier-service-tokens") {
		t.Fatalf("service tokens %+v", toks)
	}
	for _, tok := range toks {
		if tok.Scope == pier.ScopeRouter {
			c.must("", "service-tokens:revoke", strconv.FormatInt(tok.ID, 10))
		}
	}
	if code := status(first["router"]); code != http.StatusUnauthorized {
		t.Fatalf("a revoked router token: %d, want 401", code)
	}
	var second map[string]string
	eventually(t, 30*time.Second, "a new router token in the Secret after the revocation", func() (bool, string) {
		second = secret()
		return second["router"] != first["router"], ""
	})
	if !strings.HasPrefix(second["router"], "piersvc_router_") || second["builder"] != first["builder"] {
		t.Fatal("after a revocation the Secret does not hold a new router token and the same builder token")
	}
	if r, old := status(second["router"]), status(first["router"]); r != http.StatusOK || old != http.StatusUnauthorized {
		t.Fatalf("new router token %d (want 200), revoked one %d (want 401)", r, old)
	}

	// A token revoked while no controller ran (or whose renewal failed)
	// is replaced at the next start.
	d.stop(t)
	for _, tok := range toks {
		if tok.Scope == pier.ScopeBuilder {
			d := startPierd(t, env, "controller", "--scheduler=kubernetes", "--kubeconfig", kube.Kubeconfig) // no Secret to renew
			c.must("tokens test password\n", "login", d.url, "--username", "ops", "--password-stdin")
			c.must("", "service-tokens:revoke", strconv.FormatInt(tok.ID, 10))
			d.stop(t)
		}
	}
	startPierd(t, env, args...)
	third := secret()
	if third["router"] != second["router"] || third["builder"] == first["builder"] || !strings.HasPrefix(third["builder"], "piersvc_builder_") {
		t.Fatal("after a restart the Secret does not hold the same router token and a new builder token")
	}
	if b, old := status(third["builder"]), status(first["builder"]); b != http.StatusForbidden || old != http.StatusUnauthorized {
		t.Fatalf("new builder token %d (want 403: live, another scope), revoked one %d (want 401)", b, old)
	}
}
