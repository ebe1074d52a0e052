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
// revoked token at once (tokenKeeper.afterRevoke).

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

// tokenKeeper keeps the components' tokens in the Secret.
type tokenKeeper struct {
	cs       k8s.Interface
	db       *postgres.DB
	ns, name string
	log      *slog.Logger
	mu       sync.Mutex // one pass at a time: at start, and after each revocation
}

// newTokenKeeper connects to the cluster of --service-tokens-secret; nil
// without it.
func newTokenKeeper(o options, db *postgres.DB, log *slog.Logger) (*tokenKeeper, error) {
	if o.serviceTokensSecret == "" {
		return nil, nil
	}
	ns, name, err := parseSecretRef(o.serviceTokensSecret)
	if err != nil {
		return nil, err
	}
	cfg, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := k8s.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &tokenKeeper{cs: cs, db: db, ns: ns, name: name, log: log}, nil
}

// keep makes sure the Secret holds a live token of each scope, writing
// new ones where it has none (or a dead one).
func (k *tokenKeeper) keep(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	// Two controllers starting at once: the loser of the update reads the
	// winner's tokens and keeps them.
	for attempt := 0; ; attempt++ {
		err := k.keepOnce(ctx)
		if err == nil || !apierrors.IsConflict(err) || attempt == 3 {
			return err
		}
	}
}

// afterRevoke is what runs after a service token is revoked: the Secret
// gets a new token in place of a revoked one, which the pods read at their
// next reconnection. It returns at once.
func (k *tokenKeeper) afterRevoke(ctx context.Context) func() {
	return func() {
		go func() {
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := k.keep(rctx); err != nil {
				k.log.Error("replacing a revoked service token in the Secret", "secret", k.ns+"/"+k.name, "err", err)
			}
		}()
	}
}

func (k *tokenKeeper) keepOnce(ctx context.Context) error {
	ns, name := k.ns, k.name
	sec, err := k.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the Secret %s/%s of the components' service tokens (--service-tokens-secret): %w; the chart makes it, empty, and lets pierd get and update it", ns, name, err)
	}
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	type newToken struct {
		t    *pier.ServiceToken
		hash string
	}
	var made []newToken // registered once the Secret's new content is known
	for _, scope := range kubeTokenScopes {
		tok := string(sec.Data[scope])
		if strings.HasPrefix(tok, pier.ServiceTokenPrefix+scope+"_") {
			_, err := k.db.ServiceTokenByHash(ctx, controller.HashServiceToken(tok))
			if err == nil {
				continue
			}
			if c := pier.ErrorCode(err); c != pier.ENOTFOUND && c != pier.EUNAUTHORIZED {
				return err
			}
			k.log.Info("the service token in the Secret is unknown or revoked: making a new one", "secret", ns+"/"+name, "scope", scope)
		}
		tok, prefix := controller.NewServiceTokenSecret(scope)
		sec.Data[scope] = []byte(tok)
		made = append(made, newToken{
			t:    &pier.ServiceToken{Scope: scope, Description: "kept in Secret " + ns + "/" + name, Prefix: prefix, CreatedBy: "pierd"},
			hash: controller.HashServiceToken(tok),
		})
	}
	if len(made) == 0 {
		return nil
	}
	// Registered first: a pod that reads the Secret the moment it is
	// written finds its token live. A registration whose Secret update
	// then fails (a conflict) leaves a token nobody holds; it can only
	// be revoked.
	for _, n := range made {
		if err := k.db.CreateServiceToken(ctx, n.t, n.hash); err != nil {
			return err
		}
	}
	if _, err := k.cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{FieldManager: "pierd"}); err != nil {
		if apierrors.IsConflict(err) {
			return err
		}
		return errors.Join(fmt.Errorf("writing the service tokens into the Secret %s/%s", ns, name), err)
	}
	k.log.Info("service tokens written into the Secret for the router and builder pods", "secret", ns+"/"+name, "new", len(made))
	return nil
}
