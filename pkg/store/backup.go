package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// BackupStore holds the backup configuration, each project's repository
// password and the record of backups made.
type BackupStore interface {
	// GetBackupConfig returns the configuration, or an errkind.NotFound
	// error when none was set.
	GetBackupConfig(ctx context.Context) (model.BackupConfig, error)
	// PutBackupConfig replaces it, with the next version, and returns it.
	PutBackupConfig(ctx context.Context, repository string, credentials map[string]string, at time.Time) (model.BackupConfig, error)

	// BackupKey returns project's repository password, storing fresh()
	// as it the first time.
	BackupKey(ctx context.Context, projectID string, fresh func() string, at time.Time) (string, error)
	// DestroyBackupKey removes it; it reports whether there was one.
	DestroyBackupKey(ctx context.Context, projectID string) (bool, error)
	// HasBackupKey reports whether project has a repository password.
	HasBackupKey(ctx context.Context, projectID string) (bool, error)

	// RecordBackups records backups of a project (known ones are kept as
	// they are) and forgets the project's recorded backups not in keep,
	// when keep is not nil (after a forget, with what the repository
	// still holds).
	RecordBackups(ctx context.Context, projectID string, rs []model.BackupRecord, keep []string) error
	// ListBackups returns a project's recorded backups, oldest first.
	ListBackups(ctx context.Context, projectID string) ([]model.BackupRecord, error)
	// LatestBackups returns, for every project with one, its newest
	// backup's time.
	LatestBackups(ctx context.Context) (map[string]time.Time, error)

	// MoveProjectToHost puts p (whose HostID is its new host) there and
	// marks its copy on the old host stale, in one transaction.
	MoveProjectToHost(ctx context.Context, p model.Project, oldHostID string, at time.Time) error
	// StaleCopies returns the hosts holding stale copies of a project.
	StaleCopies(ctx context.Context, projectID string) ([]model.StaleCopy, error)
}

func (s *SQLStore) GetBackupConfig(ctx context.Context) (model.BackupConfig, error) {
	var c model.BackupConfig
	var creds string
	var updated int64
	err := s.db.QueryRowContext(ctx, `SELECT repository, credentials, version, updated_at FROM backup_config WHERE id = 1`).
		Scan(&c.Repository, &creds, &c.Version, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return c, errkind.Errorf(errkind.NotFound, "no backup repository is configured")
	}
	if err != nil {
		return c, s.err("get backup config", err)
	}
	if err := json.Unmarshal([]byte(creds), &c.Credentials); err != nil {
		return c, errkind.Errorf(errkind.Internal, "backup config credentials: %v", err)
	}
	c.UpdatedAt = fromMS(updated)
	c.CredentialKeys = credentialKeys(c.Credentials)
	return c, nil
}

func credentialKeys(m map[string]string) []string {
	keys := []string{}
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (s *SQLStore) PutBackupConfig(ctx context.Context, repository string, credentials map[string]string, at time.Time) (model.BackupConfig, error) {
	if credentials == nil {
		credentials = map[string]string{}
	}
	b, _ := json.Marshal(credentials)
	var version int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO backup_config (id, repository, credentials, version, updated_at) VALUES (1, $1, $2, 1, $3)
 ON CONFLICT (id) DO UPDATE SET repository = excluded.repository, credentials = excluded.credentials,
  version = backup_config.version + 1, updated_at = excluded.updated_at
 RETURNING version`, repository, string(b), ms(at)).Scan(&version)
	if err != nil {
		return model.BackupConfig{}, s.err("put backup config", err)
	}
	return model.BackupConfig{Repository: repository, Credentials: credentials, CredentialKeys: credentialKeys(credentials),
		Version: version, UpdatedAt: fromMS(ms(at))}, nil
}

func (s *SQLStore) BackupKey(ctx context.Context, projectID string, fresh func() string, at time.Time) (string, error) {
	// Insert-if-absent then read: two workers asking at once get the same
	// password, whichever insert won.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO backup_keys (project_id, password, created_at) VALUES ($1, $2, $3)
 ON CONFLICT (project_id) DO NOTHING`, projectID, fresh(), ms(at)); err != nil {
		return "", s.err("backup key", err)
	}
	var pw string
	if err := s.db.QueryRowContext(ctx, `SELECT password FROM backup_keys WHERE project_id = $1`, projectID).Scan(&pw); err != nil {
		return "", s.err("backup key", err)
	}
	return pw, nil
}

func (s *SQLStore) DestroyBackupKey(ctx context.Context, projectID string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM backup_keys WHERE project_id = $1`, projectID)
	if err != nil {
		return false, s.err("destroy backup key", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

func (s *SQLStore) HasBackupKey(ctx context.Context, projectID string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM backup_keys WHERE project_id = $1`, projectID).Scan(&n)
	return n > 0, s.err("backup key", err)
}

func (s *SQLStore) RecordBackups(ctx context.Context, projectID string, rs []model.BackupRecord, keep []string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.err("record backups", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO backups (project_id, id, short_id, host_id, taken_at, files, bytes, bytes_added)
 VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (project_id, id) DO NOTHING`,
			projectID, r.ID, r.ShortID, r.HostID, ms(r.Time), r.Files, r.Bytes, r.BytesAdded); err != nil {
			return s.err("record backups", err)
		}
	}
	if keep != nil {
		kept := map[string]bool{}
		for _, id := range keep {
			kept[id] = true
		}
		var gone []string
		rows, err := tx.QueryContext(ctx, `SELECT id FROM backups WHERE project_id = $1`, projectID)
		if err != nil {
			return s.err("record backups", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return s.err("record backups", err)
			}
			if !kept[id] {
				gone = append(gone, id)
			}
		}
		rows.Close()
		for _, id := range gone {
			if _, err := tx.ExecContext(ctx, `DELETE FROM backups WHERE project_id = $1 AND id = $2`, projectID, id); err != nil {
				return s.err("record backups", err)
			}
		}
	}
	return s.err("record backups", tx.Commit())
}

func (s *SQLStore) ListBackups(ctx context.Context, projectID string) ([]model.BackupRecord, error) {
	out := []model.BackupRecord{}
	err := s.each(ctx, "list backups", func(r *sql.Rows) error {
		var b model.BackupRecord
		var at int64
		if err := r.Scan(&b.ProjectID, &b.ID, &b.ShortID, &b.HostID, &at, &b.Files, &b.Bytes, &b.BytesAdded); err != nil {
			return err
		}
		b.Time = fromMS(at)
		out = append(out, b)
		return nil
	}, `SELECT project_id, id, short_id, host_id, taken_at, files, bytes, bytes_added FROM backups WHERE project_id = $1 ORDER BY taken_at, id`, projectID)
	return out, err
}

func (s *SQLStore) LatestBackups(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.each(ctx, "latest backups", func(r *sql.Rows) error {
		var id string
		var at int64
		if err := r.Scan(&id, &at); err != nil {
			return err
		}
		out[id] = fromMS(at)
		return nil
	}, `SELECT project_id, MAX(taken_at) FROM backups GROUP BY project_id`)
	return out, err
}

func (s *SQLStore) MoveProjectToHost(ctx context.Context, p model.Project, oldHostID string, at time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.err("move project", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	res, err := tx.ExecContext(ctx, updateProjectSQL, updateProjectArgs(p)...)
	if err != nil {
		return s.err("move project "+p.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "project %s no longer exists", p.ID)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO project_stale_copies (project_id, host_id, marked_at) VALUES ($1,$2,$3)
 ON CONFLICT (project_id, host_id) DO UPDATE SET marked_at = excluded.marked_at`, p.ID, oldHostID, ms(at)); err != nil {
		return s.err("move project "+p.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM project_stale_copies WHERE project_id = $1 AND host_id = $2`, p.ID, p.HostID); err != nil {
		return s.err("move project "+p.ID, err)
	}
	return s.err("move project "+p.ID, tx.Commit())
}

func (s *SQLStore) StaleCopies(ctx context.Context, projectID string) ([]model.StaleCopy, error) {
	out := []model.StaleCopy{}
	err := s.each(ctx, "stale copies", func(r *sql.Rows) error {
		var c model.StaleCopy
		var at int64
		if err := r.Scan(&c.ProjectID, &c.HostID, &at); err != nil {
			return err
		}
		c.MarkedAt = fromMS(at)
		out = append(out, c)
		return nil
	}, `SELECT project_id, host_id, marked_at FROM project_stale_copies WHERE project_id = $1 ORDER BY marked_at`, projectID)
	return out, err
}
