package model

import "time"

// BackupConfig is where projects are backed up: one repository location
// for the deployment, under which each project has a repository of its own
// with its own password (so destroying that password makes the project's
// backups unreadable).
type BackupConfig struct {
	// Repository is a local path (on each host), rest:http(s)://… or
	// s3:http(s)://….
	Repository string `json:"repository"`
	// Credentials of the repository's server; never shown.
	Credentials map[string]string `json:"-"`
	// CredentialKeys names the credentials that are set (not their values).
	CredentialKeys []string `json:"credential_keys"`
	// Version goes up with every change, so a host's copy can be told
	// from the current one.
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// BackupRecord is one backup of a project as the control plane recorded it.
type BackupRecord struct {
	ProjectID string    `json:"project_id"`
	ID        string    `json:"id"`
	ShortID   string    `json:"short_id"`
	HostID    string    `json:"host_id"`
	Time      time.Time `json:"time"`
	Files     int64     `json:"files"`
	Bytes     int64     `json:"bytes"`
	// BytesAdded is what this backup added to the repository.
	BytesAdded int64 `json:"bytes_added"`
}

// StaleCopy is a project's copy left on a host it no longer runs on (the
// host was broken or gone when the project was restored elsewhere).
type StaleCopy struct {
	ProjectID string    `json:"project_id"`
	HostID    string    `json:"host_id"`
	MarkedAt  time.Time `json:"marked_at"`
}

// Backup actions run by the durable queue; their subject is the project,
// so they take turns with its other actions.
const (
	ActionBackupCreate  Action = "backup.create"
	ActionBackupRestore Action = "backup.restore"
	ActionBackupForget  Action = "backup.forget"
)
