package cli

import (
	"context"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/accounts"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/app"
	"github.com/sagemathinc/cocalc-hosts/pkg/client"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// The services commands call. In direct mode the domain services that
// pkg/app builds implement them; with server.url set, the clients of
// pkg/client do, and the commands stay as they are. Commands that need a
// part only this process has (the catalog cache, the SSH pool) take it
// from Factory.App instead, which refuses in server mode.

// HostService is what host commands ask of the host domain.
type HostService interface {
	Get(ctx context.Context, idOrName string) (model.Host, error)
	List(ctx context.Context, f store.HostFilter) ([]model.Host, error)
	// Each calls fn with each host f selects as it arrives, never holding
	// the listing whole; the host is reused for the next.
	Each(ctx context.Context, f store.HostFilter, fn func(*model.Host) error) error
	Plan(ctx context.Context, req hosts.CreateRequest) (hosts.Plan, error)
	Create(ctx context.Context, req hosts.CreateRequest) (hosts.Submitted, error)
	Start(ctx context.Context, idOrName string) (hosts.Submitted, error)
	Stop(ctx context.Context, idOrName string, o hosts.StopOptions) (hosts.Submitted, error)
	Delete(ctx context.Context, idOrName string, o hosts.DeleteOptions) (hosts.Submitted, error)
	Upgrade(ctx context.Context, idOrName string) (hosts.Submitted, error)
	// IsBootstrapped reports whether h is reached over SSH (and so has an
	// agent to upgrade and a host key to pin).
	IsBootstrapped(ctx context.Context, h model.Host) (bool, error)
	// Detail is the host with its pending job, collaborators, recent log,
	// agent health and ingress (`show`).
	Detail(ctx context.Context, idOrName string) (hosts.Detail, error)
	// AgentMetrics are the Prometheus metrics of the host's agent
	// (`agent-metrics`).
	AgentMetrics(ctx context.Context, idOrName string) (hosts.AgentMetrics, error)
	// Log is the host's cloud_vm_log after afterID, oldest first (`logs`).
	Log(ctx context.Context, idOrName string, afterID int64, limit int) (model.Host, []model.LogEntry, error)
	// BootLog is the host's newest bootstrap run and its output, or with
	// afterID the lines after it (`logs --boot`).
	BootLog(ctx context.Context, idOrName string, afterID int64, limit int) (model.Host, hosts.BootLog, error)
	// ActiveJobs are the queued and running jobs of the hosts (through a
	// server: of those the caller may use).
	ActiveJobs(ctx context.Context) ([]model.Job, error)
}

var _ HostService = (*hosts.Service)(nil)

// ProjectService is what project commands ask of the project domain, as
// the caller c.
type ProjectService interface {
	Create(ctx context.Context, c projects.Caller, req projects.CreateRequest) (projects.Submitted, error)
	List(ctx context.Context, c projects.Caller, r projects.ListRequest) ([]model.Project, error)
	// Resolve turns what the user typed for a project (its id, the
	// beginning of it, its title) into its id.
	Resolve(ctx context.Context, c projects.Caller, ref string) (string, error)
	Show(ctx context.Context, c projects.Caller, id string) (projects.Detail, error)
	// Get is the project's stored record (Show asks its host too).
	Get(ctx context.Context, c projects.Caller, id string) (model.Project, error)
	Start(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error)
	Stop(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error)
	Restart(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error)
	Delete(ctx context.Context, c projects.Caller, id string, purge bool) (projects.Submitted, error)
	Exec(ctx context.Context, c projects.Caller, id string, req agentapi.ExecRequest, eio agentapi.ExecIO) (int, error)
	Snapshot(ctx context.Context, c projects.Caller, id, name string) (projects.Submitted, string, error)
	Snapshots(ctx context.Context, c projects.Caller, id string) ([]agentapi.Snapshot, error)
	Restore(ctx context.Context, c projects.Caller, id, snapshot, path string) (projects.Submitted, error)
	Move(ctx context.Context, c projects.Caller, r projects.MoveRequest) (projects.Submitted, model.Move, error)
	Clone(ctx context.Context, c projects.Caller, r projects.CloneRequest) (projects.Submitted, model.Move, error)
	CleanupMove(ctx context.Context, c projects.Caller, id string, progress func(string)) (model.Move, error)

	AddCollaborator(ctx context.Context, c projects.Caller, host, account string) (model.Host, error)
	RemoveCollaborator(ctx context.Context, c projects.Caller, host, account string) (model.Host, error)
	Collaborators(ctx context.Context, c projects.Caller, host string) (model.Host, []string, error)
	SetShared(ctx context.Context, c projects.Caller, host string, shared bool) (model.Host, error)
	SetAdmin(ctx context.Context, c projects.Caller, account string, admin bool) error
	Admins(ctx context.Context) ([]string, error)
	SetHostIdle(ctx context.Context, c projects.Caller, host string, after time.Duration) (agentapi.IdlePolicy, error)
	HostIdle(ctx context.Context, c projects.Caller, host string) (model.Host, agentapi.IdlePolicy, error)
	BuildImage(ctx context.Context, c projects.Caller, r projects.BuildImageRequest, progress func(string)) (model.Host, bool, error)
	Images(ctx context.Context, c projects.Caller, host string) (model.Host, []projects.ImageStatus, error)

	// Direct access through the hosts' ingress.
	ProjectCollaborators(ctx context.Context, c projects.Caller, id string) ([]string, error)
	AddProjectCollaborator(ctx context.Context, c projects.Caller, id, account string) (string, error)
	RemoveProjectCollaborator(ctx context.Context, c projects.Caller, id, account string) (string, error)
	AddSSHKey(ctx context.Context, c projects.Caller, line string) (model.SSHKey, []string, error)
	RemoveSSHKey(ctx context.Context, c projects.Caller, fingerprint string) ([]string, error)
	SSHKeys(ctx context.Context, c projects.Caller) ([]model.SSHKey, error)
	Open(ctx context.Context, c projects.Caller, id string, port int) (projects.Opened, error)
	SSHCertificate(ctx context.Context, c projects.Caller, id string, pub ssh.PublicKey) (projects.SSHAccess, error)
}

var _ ProjectService = (*projects.Service)(nil)

// BackupService is what backup commands ask (backup_config.go,
// project_backup.go, project_restore.go, project list --stale-backups).
type BackupService interface {
	SetBackupConfig(ctx context.Context, c projects.Caller, repository string, credentials map[string]string) (projects.BackupConfigView, error)
	GetBackupConfig(ctx context.Context) (projects.BackupConfigView, error)
	StartBackup(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error)
	Backups(ctx context.Context, c projects.Caller, id string) ([]projects.BackupInfo, error)
	RestoreBackup(ctx context.Context, c projects.Caller, id string, r projects.RestoreBackupRequest) (projects.Submitted, error)
	StaleBackups(ctx context.Context, c projects.Caller, all bool, age time.Duration) ([]projects.StaleBackup, error)
}

var _ BackupService = (*projects.Service)(nil)

// OpsService is what `cost`, `catalog`, `providers` and `reconcile` ask of
// the deployment as a whole; the server answers its clients with the same
// interface.
type OpsService = server.Ops

var _ OpsService = app.Ops{}

// The clients of a server implement the same services.
var (
	_ HostService    = client.Hosts{}
	_ ProjectService = client.Projects{}
	_ JobRunner      = client.Jobs{}
	_ AccountService = client.Accounts{}
	_ BackupService  = client.Projects{}
	_ OpsService     = client.Ops{}
	_ Watcher        = client.Events{}
	_ Watcher        = (*app.App)(nil)
	_ AccountService = (*accounts.Service)(nil)
)

// AccountService manages accounts, API keys and the audit log of server
// mode, as the caller c.
type AccountService interface {
	Create(ctx context.Context, c projects.Caller, id string, admin bool) (model.Account, error)
	List(ctx context.Context, c projects.Caller) ([]model.Account, error)
	SetDisabled(ctx context.Context, c projects.Caller, id string, disabled bool) (model.Account, error)
	CreateKey(ctx context.Context, c projects.Caller, name string, expires *time.Time) (accounts.NewKey, error)
	Keys(ctx context.Context, c projects.Caller, all bool) ([]model.APIKey, error)
	RevokeKey(ctx context.Context, c projects.Caller, id string) error
	Audit(ctx context.Context, c projects.Caller, f store.AuditFilter) ([]model.AuditEntry, error)
}

// JobRunner works a queued job to its end (or waits for the worker that
// has it), telling onEvent what happens.
type JobRunner interface {
	RunJob(ctx context.Context, job model.Job, onEvent func(queue.Event)) (model.Job, error)
}

// Watcher follows the hosts, projects and jobs the caller c may see
// (what `list` and `project list` would show it): emit gets each topic's
// current rows and a Sync event, then each committed change, until ctx
// ends. Directly it reads the database's change notifications; through a
// server, its event stream (reconnecting when it breaks).
type Watcher interface {
	Watch(ctx context.Context, c projects.Caller, topics []store.Topic, emit func(store.Event) error) error
}
