package controller

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/crypto/ssh"

	"github.com/pierpaas/pier"
)

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) (any, error) {
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	users, next, err := s.store.ListUsers(r.Context(), p)
	return list(users, next), err
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) (any, error) {
	mode, ok, err := s.store.GetSetting(r.Context(), settingRegistration)
	if err != nil {
		return nil, err
	}
	if !ok {
		mode = pier.RegistrationAdmin
	}
	return pier.Settings{Registration: mode}, nil
}

func (s *Server) patchSettings(w http.ResponseWriter, r *http.Request) (any, error) {
	var req pier.Settings
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	switch req.Registration {
	case pier.RegistrationAdmin, pier.RegistrationOpen:
	default:
		return nil, pier.Errorf(pier.EINVALID, "registration %q is invalid: use %q or %q", clipPath(req.Registration), pier.RegistrationAdmin, pier.RegistrationOpen)
	}
	if err := s.store.SetSetting(r.Context(), settingRegistration, req.Registration); err != nil {
		return nil, err
	}
	s.event(r.Context(), pier.Event{Actor: userOf(r).Username, Action: "settings.update", Detail: "registration=" + req.Registration})
	return req, nil
}

type tokenRequest struct {
	Description   string `json:"description"`
	ExpiresInDays int    `json:"expires_in_days,omitempty"` // 0: never
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) (any, error) {
	ts, err := s.store.ListAPITokens(r.Context(), userOf(r).Username)
	return list(ts, ""), err
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) (any, error) {
	var req tokenRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	req.Description = strings.TrimSpace(req.Description)
	if req.Description == "" || len(req.Description) > 200 {
		return nil, pier.Errorf(pier.EINVALID, "token description must be 1 to 200 characters: say what the token is for, such as \"CI deploys\"")
	}
	if req.ExpiresInDays < 0 || req.ExpiresInDays > 3650 {
		return nil, pier.Errorf(pier.EINVALID, "expires_in_days must be 0 (never) to 3650")
	}
	token := APITokenPrefix + randomString(32)
	t := &pier.APIToken{Username: userOf(r).Username, Description: req.Description, Prefix: token[:len(APITokenPrefix)+6]}
	if req.ExpiresInDays > 0 {
		exp := s.now().Add(time.Duration(req.ExpiresInDays) * 24 * time.Hour)
		t.ExpiresAt = &exp
	}
	if err := s.store.CreateAPIToken(r.Context(), t, hashToken(token)); err != nil {
		return nil, err
	}
	return pier.NewAPIToken{Token: token, APIToken: *t}, nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) (any, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id < 1 {
		return nil, pier.Errorf(pier.EINVALID, "token ID must be a number: see `pier tokens`")
	}
	return nil, s.store.RevokeAPIToken(r.Context(), userOf(r).Username, id)
}

type keyRequest struct {
	Name      string `json:"name,omitempty"`
	PublicKey string `json:"public_key"`
}

// maxKeyBytes bounds a public key: an RSA 16384-bit key is about 2.8 KB.
const maxKeyBytes = 16 << 10

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) (any, error) {
	keys, err := s.store.ListKeys(r.Context(), userOf(r).Username)
	return list(keys, ""), err
}

func (s *Server) addKey(w http.ResponseWriter, r *http.Request) (any, error) {
	var req keyRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if len(req.PublicKey) > maxKeyBytes {
		return nil, pier.Errorf(pier.ETOOLARGE, "public key is over %d bytes: send a .pub file", maxKeyBytes)
	}
	pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		return nil, pier.Errorf(pier.EINVALID, "public key is not in OpenSSH format: send the contents of a .pub file, such as ~/.ssh/id_ed25519.pub (never the private key)")
	}
	if len(options) > 0 || len(strings.TrimSpace(string(rest))) > 0 {
		return nil, pier.Errorf(pier.EINVALID, "send one public key without authorized_keys options")
	}
	if err := acceptableKey(pub); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name = strings.TrimSpace(comment)
	}
	if name == "" {
		name = pub.Type()
	}
	if err := validateKeyName(name); err != nil {
		return nil, err
	}
	k := &pier.Key{
		Username:    userOf(r).Username,
		Name:        name,
		Fingerprint: ssh.FingerprintSHA256(pub),
		PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
	}
	if err := s.store.AddKey(r.Context(), k); err != nil {
		if pier.ErrorCode(err) == pier.ECONFLICT {
			return nil, pier.Errorf(pier.ECONFLICT, "key %s (or a key named %q) is already registered: see `pier keys`", k.Fingerprint, name)
		}
		return nil, err
	}
	return k, nil
}

// acceptableKey refuses key types and sizes that are no longer safe.
func acceptableKey(pub ssh.PublicKey) error {
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		return nil
	case ssh.KeyAlgoRSA:
		if ck, ok := pub.(ssh.CryptoPublicKey); ok {
			if k, ok := ck.CryptoPublicKey().(interface{ Size() int }); ok && k.Size()*8 < 2048 {
				return pier.Errorf(pier.EINVALID, "RSA keys must have at least 2048 bits: make one with `ssh-keygen -t ed25519`")
			}
		}
		return nil
	}
	return pier.Errorf(pier.EINVALID, "key type %s is not accepted: make a key with `ssh-keygen -t ed25519`", pub.Type())
}

func validateKeyName(name string) error {
	if len(name) > 100 {
		return pier.Errorf(pier.EINVALID, "key name is over 100 characters: pass a shorter name")
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return pier.Errorf(pier.EINVALID, "key name has control characters: pass a plain name")
		}
	}
	return nil
}

func (s *Server) removeKey(w http.ResponseWriter, r *http.Request) (any, error) {
	key, err := pathParam(r, "key")
	if err != nil {
		return nil, err
	}
	return nil, s.store.RemoveKey(r.Context(), userOf(r).Username, key)
}
