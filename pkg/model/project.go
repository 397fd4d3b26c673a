package model

import "time"

// ProjectState is a project's lifecycle state as the control plane sees it.
type ProjectState string

const (
	ProjectCreating ProjectState = "creating"
	ProjectStopped  ProjectState = "stopped"
	ProjectStarting ProjectState = "starting"
	ProjectRunning  ProjectState = "running"
	ProjectStopping ProjectState = "stopping"
	ProjectDeleting ProjectState = "deleting"
	ProjectDeleted  ProjectState = "deleted"
	ProjectError    ProjectState = "error"
)

// ProjectLimits are a project's resource limits; zero means none.
type ProjectLimits struct {
	MemoryBytes int64   `json:"memory_bytes"`
	CPUs        float64 `json:"cpus"`
	PidsLimit   int     `json:"pids_limit"`
	DiskBytes   int64   `json:"disk_bytes"`
}

// Project is a user's home directory plus a container, on one host.
type Project struct {
	ID     string        `json:"id"`
	Title  string        `json:"title"`
	Owner  string        `json:"owner"`
	HostID string        `json:"host_id"`
	Image  string        `json:"image"`
	Limits ProjectLimits `json:"limits"`
	// IdleTimeoutSeconds stops the project after that long without
	// activity; 0 never does.
	IdleTimeoutSeconds int64        `json:"idle_timeout_seconds"`
	State              ProjectState `json:"state"`
	LastActivity       *time.Time   `json:"last_activity,omitempty"`
	LastAction         string       `json:"last_action"`
	LastError          string       `json:"last_error"`
	CreatedAt          time.Time    `json:"created_at"`
	UpdatedAt          time.Time    `json:"updated_at"`
	DeletedAt          *time.Time   `json:"deleted_at,omitempty"`
}

// Project actions run by the durable queue ("project.*" goes to the
// project handler).
const (
	ActionProjectCreate   Action = "project.create"
	ActionProjectStart    Action = "project.start"
	ActionProjectStop     Action = "project.stop"
	ActionProjectRestart  Action = "project.restart"
	ActionProjectDelete   Action = "project.delete"
	ActionProjectSnapshot Action = "project.snapshot"
	ActionProjectRestore  Action = "project.restore"
)

// CanonicalUUID reports whether s is a UUID in canonical lowercase form
// (3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13), the only form a project id takes:
// an id becomes a path on the host, so nothing else may pass.
func CanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// IDPrefix reports whether s may be the beginning of a canonical UUID
// (lowercase hex digits and dashes, shorter than a whole one): what users
// type for a host or project after reading the short ids that tables show.
func IDPrefix(s string) bool {
	if s == "" || len(s) >= 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') && c != '-' {
			return false
		}
	}
	return true
}
