// Package accounts manages who may use a cocalc-hosts server: accounts,
// their API keys (made here, shown once, stored only as a SHA-256 hash),
// and the audit log of what they did through the server. The rules are
// those of admin rights in pkg/projects: admins manage accounts, and
// while no admin exists anyone may make the first one (the operator of a
// new deployment, who holds the database).
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// KeyPrefix starts every API key, so that a leaked key is recognisable
// (secret scanners, logs) and never mistaken for another credential.
const KeyPrefix = "chk_"

// Service manages accounts, API keys and the audit log.
type Service struct {
	Store store.Store
	Now   func() time.Time
}

// New returns a service on st.
func New(st store.Store, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{Store: st, Now: now}
}

// NewKey is a key just made: the only time its secret is seen.
type NewKey struct {
	model.APIKey
	// Key is the secret to give to `cocalc-hosts login`.
	Key string `json:"key"`
}

// Hash is what is stored of key.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// me resolves c to the account whose rights apply: c's own (which may
// not be stored yet: a plain account), or c.As's, for admins.
func (s *Service) me(ctx context.Context, c projects.Caller) (model.Account, error) {
	if err := projects.CheckAccount(c.Account); err != nil {
		return model.Account{}, err
	}
	// Not made on lookup: `account create` may be making this very one.
	me, err := s.Store.GetAccount(ctx, c.Account)
	if errkind.Is(err, errkind.NotFound) {
		me, err = model.Account{ID: c.Account}, nil
	}
	if err != nil || c.As == "" || c.As == c.Account {
		return me, err
	}
	if !me.Admin {
		return model.Account{}, errkind.Errorf(errkind.Forbidden, "--as %s: only admins may act for another account, and %s is not an admin", c.As, c.Account)
	}
	return s.Store.GetAccount(ctx, c.As)
}

// admin resolves c and refuses unless it is an admin; while no admin
// exists, bootstrap decides whether the request may make the first one.
func (s *Service) admin(ctx context.Context, c projects.Caller, what string, bootstrap bool) (model.Account, error) {
	me, err := s.me(ctx, c)
	if err != nil || me.Admin {
		return me, err
	}
	admins, err := s.Store.ListAdmins(ctx)
	if err != nil {
		return me, err
	}
	if len(admins) == 0 {
		if bootstrap {
			return me, nil
		}
		return me, errkind.Errorf(errkind.Forbidden, "only admins may %s, and there is no admin yet: make the first with `cocalc-hosts account create NAME --admin`", what)
	}
	return me, errkind.Errorf(errkind.Forbidden, "only admins may %s; %s is not an admin", what, me.ID)
}

// Create adds account id. Admins may; while there is no admin, anyone may
// create an admin.
func (s *Service) Create(ctx context.Context, c projects.Caller, id string, admin bool) (model.Account, error) {
	if _, err := s.admin(ctx, c, "create accounts", admin); err != nil {
		return model.Account{}, err
	}
	if err := projects.CheckAccount(id); err != nil {
		return model.Account{}, err
	}
	a := model.Account{ID: id, Admin: admin, CreatedAt: s.Now().UTC().Truncate(time.Millisecond)}
	return a, s.Store.CreateAccount(ctx, a)
}

// List returns every account (admins only).
func (s *Service) List(ctx context.Context, c projects.Caller) ([]model.Account, error) {
	if _, err := s.admin(ctx, c, "list accounts", false); err != nil {
		return nil, err
	}
	return s.Store.ListAccounts(ctx)
}

// SetDisabled disables (or enables again) account id: a disabled account's
// keys are refused. Admins only, and never their own account.
func (s *Service) SetDisabled(ctx context.Context, c projects.Caller, id string, disabled bool) (model.Account, error) {
	me, err := s.admin(ctx, c, "disable accounts", false)
	if err != nil {
		return model.Account{}, err
	}
	if disabled && id == me.ID {
		return model.Account{}, errkind.Errorf(errkind.Refused, "%s may not disable its own account; ask another admin", id)
	}
	if err := s.Store.SetAccountDisabled(ctx, id, disabled); err != nil {
		return model.Account{}, err
	}
	return s.Store.GetAccount(ctx, id)
}

// CreateKey makes an API key for the caller's account (for c.As's, when
// an admin acts for it), valid until expires (nil: until revoked).
func (s *Service) CreateKey(ctx context.Context, c projects.Caller, name string, expires *time.Time) (NewKey, error) {
	a, err := s.me(ctx, c)
	if err != nil {
		return NewKey{}, err
	}
	if a.Disabled {
		return NewKey{}, errkind.Errorf(errkind.Refused, "account %s is disabled; enable it first", a.ID)
	}
	if _, err := s.Store.EnsureAccount(ctx, a.ID); err != nil {
		return NewKey{}, err
	}
	if len(name) > 100 || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' }) {
		return NewKey{}, errkind.Errorf(errkind.Invalid, "invalid key name %q: use at most 100 printable characters", name)
	}
	now := s.Now().UTC().Truncate(time.Millisecond)
	if expires != nil && !expires.After(now) {
		return NewKey{}, errkind.Errorf(errkind.Invalid, "the key would expire at %s, which is not in the future", expires.Format(time.RFC3339))
	}
	secret := make([]byte, 32)
	id := make([]byte, 6)
	if _, err := rand.Read(secret); err != nil {
		return NewKey{}, err
	}
	if _, err := rand.Read(id); err != nil {
		return NewKey{}, err
	}
	k := NewKey{
		APIKey: model.APIKey{ID: hex.EncodeToString(id), Account: a.ID, Name: name, CreatedAt: now, ExpiresAt: expires},
		Key:    KeyPrefix + base64.RawURLEncoding.EncodeToString(secret),
	}
	if err := s.Store.CreateAPIKey(ctx, k.APIKey, Hash(k.Key)); err != nil {
		return NewKey{}, fmt.Errorf("store the new key: %w", err)
	}
	return k, nil
}

// Keys lists the caller's keys (every account's, for admins with all).
func (s *Service) Keys(ctx context.Context, c projects.Caller, all bool) ([]model.APIKey, error) {
	what := "list every account's keys"
	var a model.Account
	var err error
	if all {
		a, err = s.admin(ctx, c, what, false)
	} else {
		a, err = s.me(ctx, c)
	}
	if err != nil {
		return nil, err
	}
	if all {
		return s.Store.ListAPIKeys(ctx, "")
	}
	return s.Store.ListAPIKeys(ctx, a.ID)
}

// RevokeKey revokes one of the caller's keys.
func (s *Service) RevokeKey(ctx context.Context, c projects.Caller, id string) error {
	a, err := s.me(ctx, c)
	if err != nil {
		return err
	}
	return s.Store.RevokeAPIKey(ctx, a.ID, id, s.Now())
}

// Authenticate returns the account and key that key identifies. Every
// refusal is an errkind.Auth error that says what is wrong with the key
// without echoing it.
func (s *Service) Authenticate(ctx context.Context, key string) (model.Account, model.APIKey, error) {
	if !strings.HasPrefix(key, KeyPrefix) {
		return model.Account{}, model.APIKey{}, errkind.New(errkind.Auth, "not a cocalc-hosts API key; make one with `cocalc-hosts account api-key create`")
	}
	k, err := s.Store.APIKeyByHash(ctx, Hash(key))
	if errkind.Is(err, errkind.NotFound) {
		return model.Account{}, k, errkind.New(errkind.Auth, "unknown API key")
	}
	if err != nil {
		return model.Account{}, k, err
	}
	now := s.Now()
	switch {
	case k.RevokedAt != nil:
		return model.Account{}, k, errkind.Errorf(errkind.Auth, "API key %s was revoked at %s", k.ID, k.RevokedAt.Format(time.RFC3339))
	case !k.Usable(now):
		return model.Account{}, k, errkind.Errorf(errkind.Auth, "API key %s expired at %s", k.ID, k.ExpiresAt.Format(time.RFC3339))
	}
	a, err := s.Store.GetAccount(ctx, k.Account)
	if err != nil {
		return a, k, err
	}
	if a.Disabled {
		return a, k, errkind.Errorf(errkind.Auth, "account %s is disabled", a.ID)
	}
	return a, k, nil
}

// Record appends e to the audit log.
func (s *Service) Record(ctx context.Context, e model.AuditEntry) error {
	return s.Store.AppendAudit(ctx, e)
}

// Audit returns the audit log: everyone's for admins, one's own for
// others.
func (s *Service) Audit(ctx context.Context, c projects.Caller, f store.AuditFilter) ([]model.AuditEntry, error) {
	a, err := s.me(ctx, c)
	if err != nil {
		return nil, err
	}
	if !a.Admin {
		if f.Account != "" && f.Account != a.ID {
			return nil, errkind.Errorf(errkind.Forbidden, "only admins may read other accounts' audit entries; %s is not an admin", a.ID)
		}
		f.Account = a.ID
	}
	return s.Store.ListAudit(ctx, f)
}
