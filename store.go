package pier

import (
	"context"
	"time"
)

// Store keeps Pier's desired state. It is the only place that state lives:
// every method that changes more than one row does so in one transaction,
// and records its audit Event in that same transaction.
//
// Methods that take an app take its name and return ENOTFOUND if there is no
// such app. actor is the username of whoever asked for the change.
// List methods return one page and the cursor of the next ("" at the end).
type Store interface {
	// Settings are platform-wide values (signing key, bootstrap token hash,
	// registration mode). InitSetting stores value only if key is unset and
	// returns whichever value is stored, so concurrent starts agree.
	InitSetting(ctx context.Context, key, value string) (string, error)
	GetSetting(ctx context.Context, key string) (value string, ok bool, err error)
	SetSetting(ctx context.Context, key, value string) error
	DeleteSetting(ctx context.Context, key string) error

	// Users. RegisterFirstUser creates u as admin only if there are no users
	// yet and the stored bootstrap token hash equals bootstrapHash; it then
	// deletes that hash, so the token works once. EFORBIDDEN otherwise.
	RegisterFirstUser(ctx context.Context, u *User, passwordHash, bootstrapHash string) error
	CreateUser(ctx context.Context, u *User, passwordHash string) error // ECONFLICT if taken
	HasUsers(ctx context.Context) (bool, error)
	FindUser(ctx context.Context, username string) (*User, error)
	// UserPassword returns the user and the stored password hash, for login.
	UserPassword(ctx context.Context, username string) (*User, string, error)
	ListUsers(ctx context.Context, p Page) ([]User, string, error)

	// Failed logins per username, counted in the database so that every
	// controller throttles the same guesses.
	LoginFailures(ctx context.Context, username string) (count int, last time.Time, err error)
	RecordLoginFailure(ctx context.Context, username string) error
	ClearLoginFailures(ctx context.Context, username string) error

	// Sessions. UserForSession returns the user with that ID, or
	// EUNAUTHORIZED if the user is gone or the token ID jti was revoked.
	UserForSession(ctx context.Context, userID int64, jti string) (*User, error)
	RevokeSession(ctx context.Context, jti string, expiresAt time.Time) error

	// API tokens, stored by hash. UserForAPIToken returns EUNAUTHORIZED for an
	// unknown, revoked or expired token and records its use.
	CreateAPIToken(ctx context.Context, t *APIToken, hash string) error
	ListAPITokens(ctx context.Context, username string) ([]APIToken, error)
	RevokeAPIToken(ctx context.Context, username string, id int64) error
	UserForAPIToken(ctx context.Context, hash string) (*User, error)

	// SSH keys. Fingerprints are unique across all users (ECONFLICT).
	AddKey(ctx context.Context, k *Key) error
	ListKeys(ctx context.Context, username string) ([]Key, error)
	RemoveKey(ctx context.Context, username, nameOrFingerprint string) error
	UserForKey(ctx context.Context, fingerprint string) (*User, error)

	// Apps. CreateApp makes app (owned by actor, who becomes its owner
	// member) and its release v1 "Initial release". AppAccess returns the app
	// and the role username has in it ("" if none).
	CreateApp(ctx context.Context, app *App, actor string) (*Release, error)
	AppAccess(ctx context.Context, name, username string) (*App, string, error)
	ListApps(ctx context.Context, viewer *User, p Page) ([]App, string, error)
	DestroyApp(ctx context.Context, name, actor string) error

	// Config and releases. SetConfig applies change to the current config and
	// adds the next release. Rollback adds a release copying version's build
	// and config (version 0: the last one before the current that did not
	// fail). Versions per app are strictly increasing with no gaps, whatever
	// the concurrency.
	//
	// CurrentRelease is the app's newest release that is not failed; Config
	// is always its config, and new releases build on it.
	// MarkReleaseSucceeded records that a pending release's processes became
	// available (a no-op for any other). MarkReleaseFailed marks a pending
	// release failed with the reason (ECONFLICT if it succeeded before or
	// failed already), restores the config of the release that is current
	// after it, records the event "release.fail" by actor, and returns that
	// current release.
	Config(ctx context.Context, app string) (Config, error)
	SetConfig(ctx context.Context, app string, change ConfigChange, actor string) (*Release, error)
	ListReleases(ctx context.Context, app string, p Page) ([]Release, string, error)
	FindRelease(ctx context.Context, app string, version int) (*Release, error)
	CurrentRelease(ctx context.Context, app string) (*Release, error)
	Rollback(ctx context.Context, app string, version int, actor string) (*Release, error)
	MarkReleaseSucceeded(ctx context.Context, app string, version int) error
	MarkReleaseFailed(ctx context.Context, app string, version int, reason, actor string) (*Release, error)

	// Builds. Deploy adds a release of a succeeded build with the current
	// config, succeeded from the start (the reconciler calls it once the
	// build's processes serve); a first build defining "web" scales web to 1
	// if it was 0.
	// CreateBuild stores b.Log too; FindBuild returns it, ListBuilds (newest
	// first) leaves it out.
	CreateBuild(ctx context.Context, b *Build) error
	FindBuild(ctx context.Context, app string, id int64) (*Build, error)
	ListBuilds(ctx context.Context, app string, p Page) ([]Build, string, error)
	Deploy(ctx context.Context, app string, buildID int64, actor string) (*Release, error)
	// DeployFailed records a deploy of a succeeded build whose processes did
	// not come up: a failed release with the reason, and the event
	// "release.fail". The current release stays current.
	DeployFailed(ctx context.Context, app string, buildID int64, reason, actor string) (*Release, error)

	// Formation. Scale sets the given quantities and returns the whole
	// formation. Once the app has a build, unknown process types are refused
	// (EINVALID, naming the known ones).
	Formation(ctx context.Context, app string) (Formation, error)
	Scale(ctx context.Context, app string, f Formation, actor string) (Formation, error)

	// Limits, by process type (types without any are absent). SetLimits
	// applies change and returns all of them; like Scale, once the app has
	// a build, setting a limit of a type it does not define is refused.
	Limits(ctx context.Context, app string) (map[string]Limits, error)
	SetLimits(ctx context.Context, app string, change LimitsChange, actor string) (map[string]Limits, error)

	// AppBuilder is the CNB builder image the app's source is built with
	// by the pack strategy, "" for the platform's default. SetAppBuilder
	// sets it ("" goes back to the default) and records "builder.set".
	AppBuilder(ctx context.Context, app string) (string, error)
	SetAppBuilder(ctx context.Context, app, builder, actor string) error

	// Router settings of an app (maintenance, allowlist, body limit,
	// timeout); an app that never set any has the zero RouterSettings.
	// SetRouterSettings applies change, records "router.set", and returns
	// them all; routers learn of it (postgres: WatchRouterSettings).
	RouterSettings(ctx context.Context, app string) (RouterSettings, error)
	SetRouterSettings(ctx context.Context, app string, change RouterChange, actor string) (RouterSettings, error)

	// Domains. A hostname belongs to one app (ECONFLICT).
	AddDomain(ctx context.Context, app, hostname, actor string) (*Domain, error)
	ListDomains(ctx context.Context, app string) ([]Domain, error)
	RemoveDomain(ctx context.Context, app, hostname, actor string) error

	// Certificates (TLS) of an app. AddCert stores c (its metadata, from
	// ParseCertificate) with its chain and key; the same certificate twice
	// on one app is ECONFLICT. ListCerts never returns keys. RemoveCert
	// takes a name or a fingerprint prefix of at least 8 hex digits
	// (ENOTFOUND if none matches, EINVALID if several do). Each records
	// its event (cert.add, cert.remove), naming the certificate, never
	// the key.
	AddCert(ctx context.Context, app string, c *Certificate, chainPEM, keyPEM, actor string) error
	ListCerts(ctx context.Context, app string) ([]Certificate, error)
	RemoveCert(ctx context.Context, app, name, actor string) (*Certificate, error)
	// HTTPS settings of an app; SetAppHTTPS records "https.set".
	AppHTTPS(ctx context.Context, app string) (HTTPSSettings, error)
	SetAppHTTPS(ctx context.Context, app string, change HTTPSChange, actor string) (HTTPSSettings, error)
	// Automatic certificates (ACME) of an app: SetAutoCerts turns them on or
	// off and records "certs.auto.enable" or "certs.auto.disable";
	// AutoCertApp returns what PlanAutoCerts needs to show their state.
	SetAutoCerts(ctx context.Context, app string, on bool, actor string) error
	AutoCertApp(ctx context.Context, app string) (*AutoCertApp, error)

	// Members. The owner cannot be removed.
	ListMembers(ctx context.Context, app string) ([]Member, error)
	AddMember(ctx context.Context, app, username, actor string) error
	RemoveMember(ctx context.Context, app, username, actor string) error

	// Events. RecordEvent is for events outside any other change (logins).
	RecordEvent(ctx context.Context, e Event) error
	ListEvents(ctx context.Context, app string, p Page) ([]Event, string, error)
}
