// Package store persists the control plane's state in Postgres or in an
// embedded SQLite file. Both backends run the same SQL (written with $N
// placeholders, which both drivers accept); they differ only in DDL, in
// the row lock used when claiming jobs, and in how errors are translated.
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
	// GetHost finds a live host by id or, failing that, by name.
	GetHost(ctx context.Context, idOrName string) (model.Host, error)
	ListHosts(ctx context.Context, f HostFilter) ([]model.Host, error)
	UpdateHost(ctx context.Context, h model.Host) error
	// UpdateHostIfIdle writes h, and log if given, in one transaction, but
	// only if the row's updated_at still equals expect, the host is not
	// deleted and it has no queued or running job. It reports whether it
	// wrote. Reconcile uses it so that it never overwrites a worker.
	UpdateHostIfIdle(ctx context.Context, h model.Host, expect time.Time, log *model.LogEntry) (bool, error)

	EnqueueJob(ctx context.Context, j model.Job) (model.Job, bool, error)
	ClaimJob(ctx context.Context, c Claim) (*model.Job, error)
	HeartbeatJob(ctx context.Context, id, owner string, until time.Time) error
	FinishJob(ctx context.Context, f Finish) error
	GetJob(ctx context.Context, id string) (model.Job, error)
	ListJobs(ctx context.Context, f JobFilter) ([]model.Job, error)

	AppendLog(ctx context.Context, e model.LogEntry) (model.LogEntry, error)
	ListLog(ctx context.Context, f LogFilter) ([]model.LogEntry, error)

	PutCatalog(ctx context.Context, c CatalogRecord) error
	GetCatalog(ctx context.Context, providerName, kind, scope string) (CatalogRecord, error)

	EnsureAccount(ctx context.Context, id string) (model.Account, error)
	SetAdmin(ctx context.Context, id string, admin bool) error
	AddCollaborator(ctx context.Context, hostID, accountID string) error
	RemoveCollaborator(ctx context.Context, hostID, accountID string) error
	ListCollaborators(ctx context.Context, hostID string) ([]string, error)

	// Deployment returns this control plane's id, made on first use. It
	// labels every VM we create so that List and reconcile find only ours.
	Deployment(ctx context.Context) (string, error)

	// ProviderState is the key-value store providers may keep records in.
	ProviderState() provider.StateStore

	// Each area keeps its own methods in its own file.
	BootStore    // bootlog.go: boot logs and pinned host keys
	ProjectStore // projects.go: projects on hosts
	CostStore    // cost.go: pricing cache and usage
}

// HostFilter selects hosts. Zero values select everything live.
type HostFilter struct {
	Provider       string
	Owner          string
	IncludeDeleted bool
}

// JobFilter selects jobs.
type JobFilter struct {
	HostID     string
	ActiveOnly bool
	Limit      int
}

// LogFilter selects log entries, oldest first.
type LogFilter struct {
	HostID  string
	AfterID int64
	Limit   int
}

// Claim asks for the next runnable job.
type Claim struct {
	Owner string
	Lease time.Duration
	// JobID, when set, claims only that job (a CLI working its own job).
	JobID string
	Now   time.Time
}

// Finish records the end of one attempt of a job, together with the host
// update and log entry it produced, in one transaction guarded by the
// lease: if the caller no longer owns the job, nothing is written and
// ErrLeaseLost is returned.
type Finish struct {
	JobID string
	Owner string
	// State is JobDone, JobFailed, or JobQueued to retry at RunAfter.
	State    model.JobState
	RunAfter time.Time
	Error    string
	Host     *model.Host
	Log      *model.LogEntry
	Now      time.Time
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

// BusyError says a host already has an active job of another action.
type BusyError struct{ Active model.Job }

func (e *BusyError) Error() string {
	return fmt.Sprintf("host %s has pending work: %s job %s is %s", e.Active.HostID, e.Active.Action, e.Active.ID, e.Active.State)
}

func (e *BusyError) ErrorKind() errkind.Kind { return errkind.Conflict }
