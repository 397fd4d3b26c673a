package agentapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Backups of a project go to a restic repository that the control plane
// chooses. The agent never holds backup configuration it was not handed
// for a project on its host: the control plane gives it one project's
// BackupConfig at a time, with an expiry. The agent keeps it in a 0600
// file until then; when it has none, when it expired, or when the
// repository refuses the credentials (401/403), it answers
// CodeBackupConfig, and the control plane hands it a fresh one and asks
// again.

// CodeBackupConfig: the agent has no usable backup configuration for the
// project (none, expired, or refused by the repository); give it one with
// PutBackupConfig and retry.
const CodeBackupConfig = "backup_config"

// CodeUnavailable: something the agent needs beyond the host (a backup
// repository's server) does not answer.
const CodeUnavailable = "unavailable"

// BackupConfig is what an agent needs to back up one project.
type BackupConfig struct {
	// Repository is this project's repository: a local path,
	// rest:http(s)://… or s3:http(s)://….
	Repository string `json:"repository"`
	// Credentials of the repository's server (rest: username, password;
	// s3: access_key_id, secret_access_key).
	Credentials map[string]string `json:"credentials,omitempty"`
	// Password is the project's own repository password.
	Password string `json:"password"`
	// Version is the control plane's configuration version it came from.
	Version   int64     `json:"version"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Validate checks that c can be used.
func (c BackupConfig) Validate() error {
	switch {
	case c.Repository == "":
		return errors.New("backup config: repository is empty")
	case c.Password == "":
		return errors.New("backup config: password is empty")
	case c.ExpiresAt.IsZero():
		return errors.New("backup config: expires_at is missing")
	}
	return nil
}

// Backup is one backup of a project.
type Backup struct {
	ID      string    `json:"id"`
	ShortID string    `json:"short_id"`
	Time    time.Time `json:"time"`
	// HostID is the host the backup was made on.
	HostID string `json:"host_id"`
}

// BackupResult is what a backup made.
type BackupResult struct {
	Backup
	FilesNew       int64   `json:"files_new"`
	FilesChanged   int64   `json:"files_changed"`
	BytesAdded     int64   `json:"bytes_added"`
	Files          int64   `json:"files"`
	Bytes          int64   `json:"bytes"`
	DurationSecond float64 `json:"duration_seconds"`
	// FromSnapshot says the backup was read from a read-only snapshot
	// of the home (consistent); false on a plain-directory pool, where
	// it was read from the live home.
	FromSnapshot bool `json:"from_snapshot"`
}

// BackupRestoreRequest restores a project (or Path in it) from a backup.
type BackupRestoreRequest struct {
	// Backup is an id (or unique prefix) or "latest".
	Backup string `json:"backup"`
	// Path is relative to the home; empty is the whole home.
	Path string `json:"path,omitempty"`
	// ToScratch restores into the project's scratch instead of its home,
	// leaving the home alone.
	ToScratch bool `json:"to_scratch,omitempty"`
}

// BackupRestoreResult says what a restore wrote.
type BackupRestoreResult struct {
	Backup string `json:"backup"`
	// Where is the path inside the project that was written (~/PATH,
	// the home, or /scratch/…).
	Where string `json:"where"`
	// SafetySnapshot holds what the home had before (btrfs pools).
	SafetySnapshot string `json:"safety_snapshot,omitempty"`
}

// BackupForgetRequest applies a retention policy to a project's backups.
type BackupForgetRequest struct {
	KeepLast    int `json:"keep_last,omitempty"`
	KeepDaily   int `json:"keep_daily,omitempty"`
	KeepWeekly  int `json:"keep_weekly,omitempty"`
	KeepMonthly int `json:"keep_monthly,omitempty"`
}

// BackupForgetResult says how many backups a forget removed.
type BackupForgetResult struct {
	Removed int `json:"removed"`
	Kept    int `json:"kept"`
}

// BackupPurgeResult says what purging a project's backups removed.
type BackupPurgeResult struct {
	Removed int `json:"removed"`
	// RepositoryRemoved: the repository itself is gone (local paths);
	// otherwise its data is pruned and only its key files remain.
	RepositoryRemoved bool `json:"repository_removed"`
}

// backupPath is where a project's backup API lives. Every call carries
// the version of the configuration the control plane holds now, so that
// an agent with an older one (credentials rotated, repository moved)
// asks for the new one at once instead of at its expiry.
func backupPath(id string, version int64, rest ...string) string {
	return ProjectPath(id, append([]string{"backups"}, rest...)...) + "?" + ConfigVersionParam + "=" + strconv.FormatInt(version, 10)
}

// ConfigVersionParam is the query parameter that carries it.
const ConfigVersionParam = "config_version"

// PutBackupConfig hands the agent project id's backup configuration.
func (c *Client) PutBackupConfig(ctx context.Context, id string, cfg BackupConfig) error {
	return c.do(ctx, http.MethodPut, ProjectPath(id, "backup-config"), cfg, nil)
}

// CreateBackup backs up project id's home.
func (c *Client) CreateBackup(ctx context.Context, id string, version int64) (BackupResult, error) {
	var out BackupResult
	return out, c.do(ctx, http.MethodPost, backupPath(id, version), struct{}{}, &out)
}

// Backups lists project id's backups, oldest first.
func (c *Client) Backups(ctx context.Context, id string, version int64) ([]Backup, error) {
	var out []Backup
	return out, c.do(ctx, http.MethodGet, backupPath(id, version), nil, &out)
}

// RestoreBackup restores project id from a backup.
func (c *Client) RestoreBackup(ctx context.Context, id string, version int64, r BackupRestoreRequest) (BackupRestoreResult, error) {
	var out BackupRestoreResult
	return out, c.do(ctx, http.MethodPost, backupPath(id, version, "restore"), r, &out)
}

// ForgetBackups removes project id's backups that r does not keep.
func (c *Client) ForgetBackups(ctx context.Context, id string, version int64, r BackupForgetRequest) (BackupForgetResult, error) {
	var out BackupForgetResult
	return out, c.do(ctx, http.MethodPost, backupPath(id, version, "forget"), r, &out)
}

// PurgeBackups removes all of project id's backups.
func (c *Client) PurgeBackups(ctx context.Context, id string, version int64) (BackupPurgeResult, error) {
	var out BackupPurgeResult
	return out, c.do(ctx, http.MethodDelete, backupPath(id, version), nil, &out)
}

// String names a backup briefly.
func (b Backup) String() string {
	return fmt.Sprintf("%s (%s)", b.ShortID, b.Time.Format(time.RFC3339))
}
