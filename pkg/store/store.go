// Package store persists the control plane's state in Postgres or in an
// embedded SQLite file. Both backends run the same SQL (written with $N
// placeholders, which both drivers accept); they differ only in DDL, in
// the row lock used when claiming jobs, in how errors are translated, in
// how change notifications reach other processes, and in how a batch of
// finished jobs is written (on Postgres, pipelined in one round trip).
//
// # Change notifications
//
// Subscribe(ctx, topics...) delivers a Change{Topic, ID} for every
// committed change to hosts (TopicHosts), projects (TopicProjects) and
// jobs (TopicJobs: enqueued, claimed, finished), from every process that
// shares the database. The queue's workers sleep on it instead of
// polling; a dashboard or a server can follow the fleet with it. On
// Postgres, triggers NOTIFY the channels cocalc_hosts, cocalc_projects and
// cocalc_jobs with the row's id, and each SQLStore keeps one LISTEN
// connection; on SQLite, a store publishes its own job changes at once
// and sees other processes' commits by polling PRAGMA data_version every
// SQLitePollInterval (such changes carry no id). Changes are hints to
// re-read, never a log: a slow subscriber gets an empty-ID change in
// place of those it missed.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Store is the control plane's state.
type Store interface {
	// Backend is "sqlite" or "postgres".
	Backend() string
	Close() error

	CreateHost(ctx context.Context, h model.Host) error
	// CreateHostWithJob inserts h and queues its first job in one
	// transaction: both or neither.
	CreateHostWithJob(ctx context.Context, h model.Host, j model.Job) (model.Job, error)
	// GetHost finds a live host by id or, failing that, by name.
	GetHost(ctx context.Context, idOrName string) (model.Host, error)
	ListHosts(ctx context.Context, f HostFilter) ([]model.Host, error)
	// EachHost calls fn with each host f selects, in ListHosts' order, as
	// the rows are read, so that a large listing is never held whole. The
	// host is reused for the next row: fn copies what it keeps. An error
	// from fn ends the listing and is returned as it is. fn must not use
	// the store: the listing holds a connection (SQLite has only one).
	EachHost(ctx context.Context, f HostFilter, fn func(*model.Host) error) error
	UpdateHost(ctx context.Context, h model.Host) error
	// UpdateHostIfIdle writes h, and log if given, in one transaction, but
	// only if the row's updated_at still equals expect, the host is not
	// deleted and it has no queued or running job. It reports whether it
	// wrote. Reconcile uses it so that it never overwrites a worker.
	UpdateHostIfIdle(ctx context.Context, h model.Host, expect time.Time, log *model.LogEntry) (bool, error)

	// The queue's table (jobs.go; package queue runs it).
	EnqueueJob(ctx context.Context, j model.Job) (model.Job, bool, error)
	ClaimJobs(ctx context.Context, c Claim) ([]model.Job, error)
	HeartbeatJobs(ctx context.Context, owner string, until, now time.Time) ([]string, error)
	FinishJobs(ctx context.Context, fs []Finish) []error
	NextJobAt(ctx context.Context) (time.Time, bool, error)
	GetJob(ctx context.Context, id string) (model.Job, error)
	ListJobs(ctx context.Context, f JobFilter) ([]model.Job, error)

	// Subscribe watches committed changes (notify.go).
	Subscribe(ctx context.Context, topics ...Topic) <-chan Change

	AppendLog(ctx context.Context, e model.LogEntry) (model.LogEntry, error)
	ListLog(ctx context.Context, f LogFilter) ([]model.LogEntry, error)

	PutCatalog(ctx context.Context, c CatalogRecord) error
	GetCatalog(ctx context.Context, providerName, kind, scope string) (CatalogRecord, error)

	EnsureAccount(ctx context.Context, id string) (model.Account, error)
	SetAdmin(ctx context.Context, id string, admin bool) error
	AddCollaborator(ctx context.Context, hostID, accountID string) error
	RemoveCollaborator(ctx context.Context, hostID, accountID string) error
	ListCollaborators(ctx context.Context, hostID string) ([]string, error)
	// CollaboratingOn are the ids of the hosts accountID collaborates on.
	CollaboratingOn(ctx context.Context, accountID string) ([]string, error)

	// Deployment returns this control plane's id, made on first use. It
	// labels every VM we create so that List and reconcile find only ours.
	Deployment(ctx context.Context) (string, error)

	// ProviderState is the key-value store providers may keep records in.
	ProviderState() provider.StateStore

	// Each area keeps its own methods in its own file.
	BootStore    // bootlog.go: boot logs and pinned host keys
	ProjectStore // projects.go: projects on hosts
	CostStore    // cost.go: pricing cache and usage
	IngressStore // ingress.go: project collaborators, account SSH keys, hosts' ingress
	AccountStore // accounts.go: accounts, API keys and the audit log of server mode
	MoveStore    // moves.go: moves and clones of projects
	BackupStore  // backup.go: backup configuration, project keys, backup records
	StatsStore   // stats.go: counts of the queue and the fleet (metrics, status)
	LeaderStore  // leader.go: the lock of the process that runs the periodic duties
	TunnelStore  // tunnels.go: credential sums of reverse-connected hosts
}

// HostFilter selects hosts. Zero values select everything live.
type HostFilter struct {
	Provider       string
	Owner          string
	IncludeDeleted bool
	// Brief leaves each host's Spec and Runtime empty, for listings that
	// show neither: decoding their JSON is most of a large listing's
	// cost. A server may ignore it.
	Brief bool
	// UpdatedSince, when set, selects only hosts updated at or after it
	// (to the millisecond), so a watcher re-reads what changed.
	UpdatedSince time.Time
}

// JobFilter selects jobs.
type JobFilter struct {
	// Subject selects one subject's jobs; a zero Kind or ID matches any.
	Subject    model.Subject
	ActiveOnly bool
	Limit      int
}

// LogFilter selects log entries, oldest first.
type LogFilter struct {
	HostID  string
	AfterID int64
	Limit   int
}

// Claim asks for runnable jobs.
type Claim struct {
	Owner string
	Lease time.Duration
	// JobID, when set, claims only that job (a CLI working its own job).
	JobID string
	// Limit is the most jobs to take (0 means 1).
	Limit int
	Now   time.Time
}

// Finish records the end of one attempt of a job, together with the
// writes it produced (its subject's new row, a log entry), in one
// transaction guarded by the lease: if the caller no longer owns the job,
// nothing is written and ErrLeaseLost is returned.
type Finish struct {
	JobID string
	Owner string
	// State is JobDone, JobFailed, or JobQueued to retry at RunAfter.
	State    model.JobState
	RunAfter time.Time
	Error    string
	Writes   []Write
	Now      time.Time
	// Unclaim gives back a job that was claimed but never started (a
	// worker shutting down with jobs it fetched ahead): queued again,
	// without counting the attempt.
	Unclaim bool
}

// CatalogRecord is a cached catalog payload.
type CatalogRecord struct {
	Provider  string          `json:"provider"`
	Kind      string          `json:"kind"`
	Scope     string          `json:"scope"`
	Payload   json.RawMessage `json:"payload"`
	FetchedAt time.Time       `json:"fetched_at"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// ErrLeaseLost says a worker no longer holds a job's lease (another took
// it over). Match it with errors.Is; every other store error carries an
// errkind kind (not_found, conflict, unavailable, invalid).
var ErrLeaseLost = errkind.New(errkind.Conflict, "job lease lost")

// BusyError says a subject already has an active job of another action.
type BusyError struct{ Active model.Job }

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s has pending work: %s job %s is %s", e.Active.Subject, e.Active.Action, e.Active.ID, e.Active.State)
}

func (e *BusyError) ErrorKind() errkind.Kind { return errkind.Conflict }
