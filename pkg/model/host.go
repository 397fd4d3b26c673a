// Package model holds the types that cross package boundaries: what the
// store persists, what the CLI prints as JSON and what the server will
// serve. JSON field names here are a public contract: do not rename them.
package model

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Status is a host's lifecycle state as the control plane sees it.
type Status string

const (
	StatusProvisioning   Status = "provisioning"
	StatusStarting       Status = "starting"
	StatusRunning        Status = "running"
	StatusStopping       Status = "stopping"
	StatusOff            Status = "off"
	StatusDeprovisioning Status = "deprovisioning"
	StatusDeprovisioned  Status = "deprovisioned"
	StatusError          Status = "error"
)

// AllStatuses lists every status in lifecycle order.
var AllStatuses = []Status{
	StatusProvisioning, StatusStarting, StatusRunning, StatusStopping,
	StatusOff, StatusDeprovisioning, StatusDeprovisioned, StatusError,
}

// HostSpec is what the user asked for. It is stored with the host and
// logged with each action.
type HostSpec struct {
	MachineType string `json:"machine_type,omitempty"`
	CPUs        int    `json:"cpus,omitempty"`
	MemoryGiB   int    `json:"memory_gib,omitempty"`
	GPUModel    string `json:"gpu_model,omitempty"`
	GPUCount    int    `json:"gpu_count,omitempty"`
	DiskGB      int    `json:"disk_gb,omitempty"`
	Image       string `json:"image,omitempty"`
	Spot        bool   `json:"spot,omitempty"`
	// Address is the machine an adopting provider (ssh) takes over, as
	// USER@HOST:PORT.
	Address string `json:"address,omitempty"`
	// Reverse: the machine cannot be dialed; it keeps a tunnel to `serve`
	// (create --reverse, then `join` on the machine), through which the
	// control plane reaches its SSH server and users its ingress.
	Reverse bool `json:"reverse,omitempty"`
	// DataDiskDevice is the device an adopted machine's pool goes on
	// (e.g. /dev/vdb); empty means a loop file.
	DataDiskDevice string `json:"data_disk_device,omitempty"`
	// DiskPricePerGBMonth is the data disk's USD price per GB-month when
	// the host was launched, and DiskPriceSource where it came from: cost
	// bills the disk at it, as it bills compute at the host's hourly price.
	DiskPricePerGBMonth float64 `json:"disk_price_gb_month,omitempty"`
	DiskPriceSource     string  `json:"disk_price_source,omitempty"`
	// BootDiskMonthly is the boot disk's USD price per month at launch,
	// billed while the VM exists (0: included in the machine price).
	BootDiskMonthly float64 `json:"boot_disk_monthly,omitempty"`
}

// Runtime is what the provider told us about the host's VM.
type Runtime struct {
	InstanceID string `json:"instance_id,omitempty"`
	PublicIP   string `json:"public_ip,omitempty"`
	PrivateIP  string `json:"private_ip,omitempty"`
	DataDisk   string `json:"data_disk,omitempty"`
	// DataDiskDevice hints where the data disk appears inside the VM.
	DataDiskDevice string `json:"data_disk_device,omitempty"`
	// DNSName is the host's public name when DNS is configured.
	DNSName string `json:"dns_name,omitempty"`
	// SSH endpoint used by the bootstrap runner and to reach the agent.
	SSHUser string `json:"ssh_user,omitempty"`
	SSHHost string `json:"ssh_host,omitempty"`
	SSHPort int    `json:"ssh_port,omitempty"`
	// SSHHostKey is the pinned host public key (authorized_keys format).
	SSHHostKey string            `json:"ssh_host_key,omitempty"`
	Meta       map[string]string `json:"meta,omitempty"`
}

// Host is one project host.
type Host struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Owner       string     `json:"owner"`
	Provider    string     `json:"provider"`
	Region      string     `json:"region"`
	Zone        string     `json:"zone"`
	Status      Status     `json:"status"`
	Spec        HostSpec   `json:"spec"`
	Runtime     Runtime    `json:"runtime"`
	HourlyPrice float64    `json:"hourly_price"`
	LastAction  string     `json:"last_action"`
	LastError   string     `json:"last_error"`
	Shared      bool       `json:"shared"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	DeletedAt   *time.Time `json:"deleted_at,omitempty"`
	// MissingCount counts consecutive reconcile passes that did not find
	// the host's VM at its provider.
	MissingCount int `json:"missing_count"`
}

// HasAgent reports whether the control plane knows how to reach h's
// agent: over SSH, or at a socket on this machine (local hosts).
// Simulated hosts have none.
func (h Host) HasAgent() bool {
	return h.Runtime.SSHHost != "" || h.Runtime.Meta["socket"] != ""
}

// Action is a unit of work on a host, run by the durable queue.
type Action string

const (
	ActionCreate  Action = "create"
	ActionStart   Action = "start"
	ActionStop    Action = "stop"
	ActionDelete  Action = "delete"
	ActionResize  Action = "resize"
	ActionRefresh Action = "refresh"
	// ActionUpgrade installs the control plane's agent on a host that was
	// bootstrapped over SSH and restarts it.
	ActionUpgrade Action = "upgrade"
)

// JobState is a queue job's state.
type JobState string

const (
	JobQueued  JobState = "queued"
	JobRunning JobState = "running"
	JobDone    JobState = "done"
	JobFailed  JobState = "failed"
)

// SubjectKind names what kind of thing a job acts on.
type SubjectKind string

const (
	SubjectHost    SubjectKind = "host"
	SubjectProject SubjectKind = "project"
)

// Subject is what a job acts on. At most one job per subject is queued or
// running, so a subject's actions run one at a time.
type Subject struct {
	Kind SubjectKind `json:"kind"`
	ID   string      `json:"id"`
}

// HostSubject is the subject of a host's jobs.
func HostSubject(id string) Subject { return Subject{Kind: SubjectHost, ID: id} }

// ProjectSubject is the subject of a project's jobs.
func ProjectSubject(id string) Subject { return Subject{Kind: SubjectProject, ID: id} }

func (s Subject) String() string { return string(s.Kind) + " " + s.ID }

// Job is one queued action on a subject.
type Job struct {
	ID          string          `json:"id"`
	Subject     Subject         `json:"subject"`
	Action      Action          `json:"action"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	State       JobState        `json:"state"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts"`
	RunAfter    time.Time       `json:"run_after"`
	LeaseOwner  string          `json:"lease_owner,omitempty"`
	LeaseUntil  *time.Time      `json:"lease_until,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
}

// Active reports whether the job still holds its subject.
func (j Job) Active() bool { return j.State == JobQueued || j.State == JobRunning }

// LogEntry is one row of the append-only cloud_vm_log.
type LogEntry struct {
	ID             int64           `json:"id"`
	HostID         string          `json:"host_id"`
	JobID          string          `json:"job_id,omitempty"`
	TS             time.Time       `json:"ts"`
	Action         string          `json:"action"`
	Status         string          `json:"status"`
	Provider       string          `json:"provider"`
	Spec           json.RawMessage `json:"spec,omitempty"`
	Runtime        json.RawMessage `json:"runtime,omitempty"`
	Error          string          `json:"error,omitempty"`
	PricingVersion string          `json:"pricing_version,omitempty"`
	// HostStatus is the host status this entry moved the host to, if any.
	HostStatus Status `json:"host_status,omitempty"`
}

// Account is a user of the control plane.
type Account struct {
	ID        string    `json:"id"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	// Disabled accounts are refused by the server, whatever key they use.
	Disabled bool `json:"disabled"`
}

// FormatGiB shows an amount of memory in GiB for people: to a tenth,
// without trailing zeros (catalogs give RAM such as 2.3021358869347655
// when a cloud counts in MB or GB).
func FormatGiB(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}
