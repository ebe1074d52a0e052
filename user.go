package pier

import (
	"regexp"
	"time"
)

// User is a person (or robot account) who talks to Pier.
type User struct {
	ID        int64     `json:"-"`
	Username  string    `json:"username"`
	Email     string    `json:"email,omitempty"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
}

// Key is an SSH public key that lets its user push with git.
type Key struct {
	ID          int64     `json:"id"`
	Username    string    `json:"username"`
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"` // SHA256:..., unique across Pier
	PublicKey   string    `json:"public_key"`  // authorized_keys format
	CreatedAt   time.Time `json:"created_at"`
}

// APIToken is a long-lived credential for CI. Only its hash is stored; the
// token itself is shown once, when it is created.
type APIToken struct {
	ID          int64      `json:"id"`
	Username    string     `json:"username"`
	Description string     `json:"description"`
	Prefix      string     `json:"prefix"` // the first characters, to tell tokens apart
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
}

// Roles of a member of an app. The owner may also destroy the app and manage
// its members; collaborators may do everything else.
const (
	RoleOwner        = "owner"
	RoleCollaborator = "collaborator"
)

// Member is a user's access to an app.
type Member struct {
	Username string `json:"username"`
	Role     string `json:"role"`
}

const (
	UsernameMin = 2
	UsernameMax = 40
	PasswordMin = 8
	PasswordMax = 256
)

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ValidateUsername says what is wrong with a username, if anything.
func ValidateUsername(name string) error {
	switch {
	case len(name) < UsernameMin || len(name) > UsernameMax:
		return Errorf(EINVALID, "username %q is %d characters: use %d to %d", clip(name), len(name), UsernameMin, UsernameMax)
	case !usernameRE.MatchString(name):
		return Errorf(EINVALID, "username %q is invalid: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", clip(name))
	}
	return nil
}

// ValidatePassword checks a new password's length. It never echoes it.
func ValidatePassword(password string) error {
	if len(password) < PasswordMin || len(password) > PasswordMax {
		return Errorf(EINVALID, "password must be %d to %d characters long", PasswordMin, PasswordMax)
	}
	return nil
}
