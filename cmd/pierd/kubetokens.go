package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/pierpaas/pier"
	"github.com/pierpaas/pier/controller"
	"github.com/pierpaas/pier/postgres"
)

// Components' service tokens kept in a Kubernetes Secret
// (--service-tokens-secret): the Helm chart makes the Secret empty, and
// pierd fills it at start with a router token and a builder token (keys
// "router" and "builder"), which the chart's router and builder pods
// mount. An install then needs no `pier service-tokens:create` by hand.
//
// A token in the Secret that this database does not know (revoked with
// `pier service-tokens:revoke`, or a new database) is replaced by a new
// one, never registered again: a revocation holds, and the next start of
// the controller hands the pods a new token, which they read at their next
// reconnection. A revocation through the API also makes pierd replace the
// revoked token at once (renewServiceTokens).

// kubeTokenScopes are the scopes kept in the Secret, each under its own
// name as the key.
var kubeTokenScopes = []string{pier.ScopeRouter, pier.ScopeBuilder}

// parseSecretRef reads NAMESPACE/NAME.
func parseSecretRef(s string) (ns, name string, err error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--service-tokens-secret %q: give NAMESPACE/NAME, such as pier/pier-service-tokens", s)
	}
	return ns, name, nil
}

// keepServiceTokens makes sure the Secret holds a live token of each
// scope, writing new ones where it has none (or a dead one).
func keepServiceTokens(ctx context.Context, o options, db *postgres.DB, log *slog.Logger) error {
	if o.serviceTokensSecret == "" {
		return nil
	}
	ns, name, err := parseSecretRef(o.serviceTokensSecret)
	if err != nil {
		return err
	}
	cfg, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cs, err := k8s.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// Two controllers starting at once: the loser of the update reads the
	// winner's tokens and keeps them.
	for attempt := 0; ; attempt++ {
		err := keepServiceTokensOnce(ctx, cs, db, ns, name, log)
		if err == nil || !apierrors.IsConflict(err) || attempt == 3 {
			return err
		}
	}
}

func keepServiceTokensOnce(ctx context.Context, cs k8s.Interface, db *postgres.DB, ns, name string, log *slog.Logger) error {
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the Secret %s/%s of the components' service tokens (--service-tokens-secret): %w; the chart makes it, empty, and lets pierd get and update it", ns, name, err)
	}
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	var made []func() error // registrations, once the Secret holds the tokens
	for _, scope := range kubeTokenScopes {
		tok := string(sec.Data[scope])
		if strings.HasPrefix(tok, pier.ServiceTokenPrefix+scope+"_") {
			_, err := db.ServiceTokenByHash(ctx, controller.HashServiceToken(tok))
			if err == nil {
				continue
			}
			if c := pier.ErrorCode(err); c != pier.ENOTFOUND && c != pier.EUNAUTHORIZED {
				return err
			}
			log.Info("the service token in the Secret is unknown or revoked: making a new one", "secret", ns+"/"+name, "scope", scope)
		}
		tok, prefix := controller.NewServiceTokenSecret(scope)
		sec.Data[scope] = []byte(tok)
		t := &pier.ServiceToken{Scope: scope, Description: "kept in Secret " + ns + "/" + name, Prefix: prefix, CreatedBy: "pierd"}
		made = append(made, func() error { return db.CreateServiceToken(ctx, t, controller.HashServiceToken(tok)) })
	}
	if len(made) == 0 {
		return nil
	}
	// Registered first: a pod that reads the Secret the moment it is
	// written finds its token live. A registration whose Secret update
	// then fails (a conflict) leaves a token nobody holds; it can only
	// be revoked.
	for _, register := range made {
		if err := register(); err != nil {
			return err
		}
	}
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{FieldManager: "pierd"}); err != nil {
		if apierrors.IsConflict(err) {
			return err
		}
		return errors.Join(fmt.Errorf("writing the service tokens into the Secret %s/%s", ns, name), err)
	}
	log.Info("service tokens written into the Secret for the router and builder pods", "secret", ns+"/"+name, "new", len(made))
	return nil
}

// renewServiceTokens is what runs after a service token is revoked: the
// Secret gets a new token in place of a revoked one, which the pods read
// at their next reconnection. nil without --service-tokens-secret.
func renewServiceTokens(ctx context.Context, o options, db *postgres.DB, log *slog.Logger) func() {
	if o.serviceTokensSecret == "" {
		return nil
	}
	var mu sync.Mutex // one renewal at a time
	return func() {
		go func() {
			mu.Lock()
			defer mu.Unlock()
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := keepServiceTokens(rctx, o, db, log); err != nil {
				log.Error("replacing a revoked service token in the Secret", "secret", o.serviceTokensSecret, "err", err)
			}
		}()
	}
}
