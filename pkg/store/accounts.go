package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// AccountStore holds what server mode needs: accounts, the hashes of
// their API keys, and the append-only audit log.
type AccountStore interface {
	// CreateAccount adds an account; an errkind.Conflict error if it
	// exists.
	CreateAccount(ctx context.Context, a model.Account) error
	// GetAccount returns an account, or an *errkind.NotFoundError.
	GetAccount(ctx context.Context, id string) (model.Account, error)
	ListAccounts(ctx context.Context) ([]model.Account, error)
	// SetAccountDisabled disables or enables an account.
	SetAccountDisabled(ctx context.Context, id string, disabled bool) error

	// CreateAPIKey stores k with the hash of its secret.
	CreateAPIKey(ctx context.Context, k model.APIKey, hash string) error
	// APIKeyByHash finds the key whose secret hashes to hash, or an
	// errkind.NotFound error.
	APIKeyByHash(ctx context.Context, hash string) (model.APIKey, error)
	// ListAPIKeys returns an account's keys ("" for every account's).
	ListAPIKeys(ctx context.Context, account string) ([]model.APIKey, error)
	// RevokeAPIKey revokes one of account's keys; an errkind.NotFound
	// error if it has no such live key.
	RevokeAPIKey(ctx context.Context, account, id string, at time.Time) error

	AppendAudit(ctx context.Context, e model.AuditEntry) error
	// ListAudit returns entries oldest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]model.AuditEntry, error)
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Account string // "": every account
	AfterID int64
	Limit   int // 0: all
}

func (s *SQLStore) CreateAccount(ctx context.Context, a model.Account) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO accounts (id, admin, created_at, disabled) VALUES ($1,$2,$3,$4)
 ON CONFLICT (id) DO NOTHING`, a.ID, a.Admin, ms(a.CreatedAt), a.Disabled)
	if err != nil {
		return s.err("create account "+a.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.Conflict, "account %s exists", a.ID)
	}
	return nil
}

const accountColumns = `id, admin, created_at, disabled`

func scanAccount(r interface{ Scan(...any) error }) (model.Account, error) {
	var a model.Account
	var created int64
	err := r.Scan(&a.ID, &a.Admin, &created, &a.Disabled)
	a.CreatedAt = fromMS(created)
	return a, err
}

func (s *SQLStore) GetAccount(ctx context.Context, id string) (model.Account, error) {
	a, err := scanAccount(s.db.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id))
	if err == sql.ErrNoRows {
		return a, &errkind.NotFoundError{Type: "account", Name: id}
	}
	return a, s.err("get account "+id, err)
}

func (s *SQLStore) ListAccounts(ctx context.Context) ([]model.Account, error) {
	out := []model.Account{}
	err := s.each(ctx, "list accounts", func(r *sql.Rows) error {
		a, err := scanAccount(r)
		out = append(out, a)
		return err
	}, `SELECT `+accountColumns+` FROM accounts ORDER BY id`)
	return out, err
}

func (s *SQLStore) SetAccountDisabled(ctx context.Context, id string, disabled bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE accounts SET disabled = $2 WHERE id = $1`, id, disabled)
	if err != nil {
		return s.err("disable account "+id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &errkind.NotFoundError{Type: "account", Name: id}
	}
	return nil
}

func (s *SQLStore) CreateAPIKey(ctx context.Context, k model.APIKey, hash string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_keys (id, account_id, name, hash, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6)`,
		k.ID, k.Account, k.Name, hash, ms(k.CreatedAt), toNullMS(k.ExpiresAt))
	return s.err("create API key", err)
}

const apiKeyColumns = `id, account_id, name, created_at, expires_at, revoked_at`

func scanAPIKey(r interface{ Scan(...any) error }) (model.APIKey, error) {
	var k model.APIKey
	var created int64
	var expires, revoked sql.NullInt64
	err := r.Scan(&k.ID, &k.Account, &k.Name, &created, &expires, &revoked)
	k.CreatedAt, k.ExpiresAt, k.RevokedAt = fromMS(created), nullMS(expires), nullMS(revoked)
	return k, err
}

func (s *SQLStore) APIKeyByHash(ctx context.Context, hash string) (model.APIKey, error) {
	k, err := scanAPIKey(s.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = $1`, hash))
	if err == sql.ErrNoRows {
		return k, errkind.New(errkind.NotFound, "no such API key")
	}
	return k, s.err("find API key", err)
}

func (s *SQLStore) ListAPIKeys(ctx context.Context, account string) ([]model.APIKey, error) {
	out := []model.APIKey{}
	err := s.each(ctx, "list API keys", func(r *sql.Rows) error {
		k, err := scanAPIKey(r)
		out = append(out, k)
		return err
	}, `SELECT `+apiKeyColumns+` FROM api_keys WHERE $1 = '' OR account_id = $1 ORDER BY created_at, id`, account)
	return out, err
}

func (s *SQLStore) RevokeAPIKey(ctx context.Context, account, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL`,
		id, account, ms(at))
	if err != nil {
		return s.err("revoke API key", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &errkind.NotFoundError{Type: "API key", Name: id}
	}
	return nil
}

func (s *SQLStore) AppendAudit(ctx context.Context, e model.AuditEntry) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit_log (at, account_id, as_account, key_id, method, path, status, kind, remote)
 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`, ms(e.At), e.Account, e.As, e.KeyID, e.Method, e.Path, e.Status, e.Kind, e.Remote)
	return s.err("append audit", err)
}

func (s *SQLStore) ListAudit(ctx context.Context, f AuditFilter) ([]model.AuditEntry, error) {
	q := `SELECT id, at, account_id, as_account, key_id, method, path, status, kind, remote FROM audit_log
 WHERE ($1 = '' OR account_id = $1) AND id > $2 ORDER BY id`
	args := []any{f.Account, f.AfterID}
	if f.Limit > 0 {
		q += ` LIMIT $3`
		args = append(args, f.Limit)
	}
	out := []model.AuditEntry{}
	err := s.each(ctx, "list audit", func(r *sql.Rows) error {
		var e model.AuditEntry
		var at int64
		err := r.Scan(&e.ID, &at, &e.Account, &e.As, &e.KeyID, &e.Method, &e.Path, &e.Status, &e.Kind, &e.Remote)
		e.At = fromMS(at)
		out = append(out, e)
		return err
	}, q, args...)
	return out, err
}
