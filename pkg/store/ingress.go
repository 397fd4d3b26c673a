package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// IngressStore holds who may reach projects through the hosts' ingress.
type IngressStore interface {
	// AddProjectCollaborator lets account use project (idempotent).
	AddProjectCollaborator(ctx context.Context, projectID, account string, at time.Time) error
	// RemoveProjectCollaborator takes it away; an errkind.NotFound error
	// if it had none.
	RemoveProjectCollaborator(ctx context.Context, projectID, account string) error
	ListProjectCollaborators(ctx context.Context, projectID string) ([]string, error)
	// ProjectAccounts returns, for every live project on host, its owner
	// and collaborators, by project id.
	ProjectAccounts(ctx context.Context, hostID string) (map[string][]string, error)

	// AddSSHKey records an account's public key; the same key again is an
	// errkind.Conflict error.
	AddSSHKey(ctx context.Context, k model.SSHKey) error
	// RemoveSSHKey removes one; an errkind.NotFound error if the account
	// has no such key.
	RemoveSSHKey(ctx context.Context, account, fingerprint string) error
	// ListSSHKeys returns the keys of the given accounts.
	ListSSHKeys(ctx context.Context, accounts []string) ([]model.SSHKey, error)

	// PutHostIngress records what a host's agent said about its ingress.
	PutHostIngress(ctx context.Context, in model.HostIngress) error
	// GetHostIngress returns it, or an errkind.NotFound error before the
	// first push.
	GetHostIngress(ctx context.Context, hostID string) (model.HostIngress, error)
	// RecordCertAttempt records an attempt to get a host a CA-issued
	// certificate and why it failed (empty: it worked).
	RecordCertAttempt(ctx context.Context, hostID string, tried time.Time, errMsg string) error
}

func (s *SQLStore) AddProjectCollaborator(ctx context.Context, projectID, account string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO project_collaborators (project_id, account_id, created_at) VALUES ($1,$2,$3)
 ON CONFLICT (project_id, account_id) DO NOTHING`, projectID, account, ms(at))
	return s.err("add project collaborator", err)
}

func (s *SQLStore) RemoveProjectCollaborator(ctx context.Context, projectID, account string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM project_collaborators WHERE project_id = $1 AND account_id = $2`, projectID, account)
	if err != nil {
		return s.err("remove project collaborator", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "%s is not a collaborator on project %s", account, projectID)
	}
	return nil
}

func (s *SQLStore) ListProjectCollaborators(ctx context.Context, projectID string) ([]string, error) {
	out := []string{}
	err := s.each(ctx, "list project collaborators", func(r *sql.Rows) error {
		var a string
		if err := r.Scan(&a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	}, `SELECT account_id FROM project_collaborators WHERE project_id = $1 ORDER BY account_id`, projectID)
	return out, err
}

func (s *SQLStore) ProjectAccounts(ctx context.Context, hostID string) (map[string][]string, error) {
	out := map[string][]string{}
	err := s.each(ctx, "project accounts", func(r *sql.Rows) error {
		var id, acct string
		if err := r.Scan(&id, &acct); err != nil {
			return err
		}
		out[id] = append(out[id], acct)
		return nil
	}, `SELECT id, owner FROM projects WHERE host_id = $1 AND deleted_at IS NULL
 UNION SELECT c.project_id, c.account_id FROM project_collaborators c JOIN projects p ON p.id = c.project_id
  WHERE p.host_id = $1 AND p.deleted_at IS NULL
 ORDER BY 1, 2`, hostID)
	return out, err
}

func (s *SQLStore) AddSSHKey(ctx context.Context, k model.SSHKey) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO account_ssh_keys (account_id, fingerprint, public_key, comment, created_at) VALUES ($1,$2,$3,$4,$5)
 ON CONFLICT (account_id, fingerprint) DO NOTHING`, k.Account, k.Fingerprint, k.PublicKey, k.Comment, ms(k.CreatedAt))
	if err != nil {
		return s.err("add ssh key", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.Conflict, "%s already has key %s", k.Account, k.Fingerprint)
	}
	return nil
}

func (s *SQLStore) RemoveSSHKey(ctx context.Context, account, fingerprint string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM account_ssh_keys WHERE account_id = $1 AND fingerprint = $2`, account, fingerprint)
	if err != nil {
		return s.err("remove ssh key", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "%s has no key %s", account, fingerprint)
	}
	return nil
}

func (s *SQLStore) ListSSHKeys(ctx context.Context, accounts []string) ([]model.SSHKey, error) {
	out := []model.SSHKey{}
	if len(accounts) == 0 {
		return out, nil
	}
	marks := make([]string, len(accounts))
	args := make([]any, len(accounts))
	for i, a := range accounts {
		marks[i], args[i] = fmt.Sprintf("$%d", i+1), a
	}
	err := s.each(ctx, "list ssh keys", func(r *sql.Rows) error {
		var k model.SSHKey
		var created int64
		if err := r.Scan(&k.Account, &k.Fingerprint, &k.PublicKey, &k.Comment, &created); err != nil {
			return err
		}
		k.CreatedAt = fromMS(created)
		out = append(out, k)
		return nil
	}, `SELECT account_id, fingerprint, public_key, comment, created_at FROM account_ssh_keys
 WHERE account_id IN (`+strings.Join(marks, ",")+`) ORDER BY account_id, created_at, fingerprint`, args...)
	return out, err
}

func (s *SQLStore) PutHostIngress(ctx context.Context, in model.HostIngress) error {
	var c model.HostCert
	if in.Cert != nil {
		c = *in.Cert
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO host_ingress (host_id, https_addr, ssh_addr, tls_cert_sha256, ssh_host_key, error, pushed_at,
  cert_issuer, cert_name, cert_not_before, cert_not_after)
 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
 ON CONFLICT (host_id) DO UPDATE SET https_addr = excluded.https_addr, ssh_addr = excluded.ssh_addr,
  tls_cert_sha256 = excluded.tls_cert_sha256, ssh_host_key = excluded.ssh_host_key, error = excluded.error, pushed_at = excluded.pushed_at,
  cert_issuer = excluded.cert_issuer, cert_name = excluded.cert_name, cert_not_before = excluded.cert_not_before, cert_not_after = excluded.cert_not_after`,
		in.HostID, in.HTTPSAddr, in.SSHAddr, in.TLSCertSHA256, in.SSHHostKey, in.Error, ms(in.PushedAt),
		c.Issuer, c.Name, certTime(in.Cert, c.NotBefore), certTime(in.Cert, c.NotAfter))
	return s.err("record host ingress", err)
}

func certTime(c *model.HostCert, t time.Time) sql.NullInt64 {
	if c == nil {
		return sql.NullInt64{}
	}
	return toNullMS(&t)
}

// RecordCertAttempt records the control plane's attempt at tried to get
// host hostID a certificate: errMsg says why it failed, empty if it
// worked. An access-list push leaves it as it is.
func (s *SQLStore) RecordCertAttempt(ctx context.Context, hostID string, tried time.Time, errMsg string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE host_ingress SET cert_error = $2, cert_tried_at = $3 WHERE host_id = $1`, hostID, errMsg, ms(tried))
	if err != nil {
		return s.err("record certificate attempt", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "host %s has not reported its ingress yet", hostID)
	}
	return nil
}

func (s *SQLStore) GetHostIngress(ctx context.Context, hostID string) (model.HostIngress, error) {
	in := model.HostIngress{HostID: hostID}
	var pushed int64
	var c model.HostCert
	var notBefore, notAfter, tried sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT https_addr, ssh_addr, tls_cert_sha256, ssh_host_key, error, pushed_at,
  cert_issuer, cert_name, cert_not_before, cert_not_after, cert_error, cert_tried_at FROM host_ingress WHERE host_id = $1`, hostID).
		Scan(&in.HTTPSAddr, &in.SSHAddr, &in.TLSCertSHA256, &in.SSHHostKey, &in.Error, &pushed,
			&c.Issuer, &c.Name, &notBefore, &notAfter, &in.CertError, &tried)
	if errors.Is(err, sql.ErrNoRows) {
		return in, errkind.Errorf(errkind.NotFound, "host %s has not reported its ingress yet", hostID)
	}
	if err != nil {
		return in, s.err("get host ingress", err)
	}
	in.PushedAt = fromMS(pushed)
	in.CertTriedAt = nullMS(tried)
	if c.Issuer != "" {
		c.NotBefore, c.NotAfter = fromMS(notBefore.Int64), fromMS(notAfter.Int64)
		in.Cert = &c
	}
	return in, nil
}

// each runs query and calls scan for every row.
func (s *SQLStore) each(ctx context.Context, op string, scan func(*sql.Rows) error, query string, args ...any) error {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return s.err(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return s.err(op, err)
		}
	}
	return s.err(op, rows.Err())
}
