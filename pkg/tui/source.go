package tui

import (
	"context"
	"io"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Source is everything the dashboard shows and does. The command layer
// implements it over the state database and the queue (direct mode); a
// server mode can implement it over HTTP, so every value that crosses it
// is plain data that encodes as JSON. Methods are called from commands
// running off the UI goroutine, each with its own deadline.
type Source interface {
	// Fleet reads the hosts (with their costs) and projects.
	Fleet(ctx context.Context) (Fleet, error)
	// Host reads one host in detail, asking its agent (slow or failing
	// agents are reported in HostInfo.Agent, not as an error).
	Host(ctx context.Context, id string) (HostInfo, error)
	// Usage asks a host's agent about some of its projects' disks and
	// snapshots.
	Usage(ctx context.Context, hostID string, projectIDs []string) ([]ProjectUsage, error)
	// Logs returns a host's cloud_vm_log entries and boot log lines
	// after the cursor (the zero cursor: the newest few of each).
	Logs(ctx context.Context, hostID string, after LogCursor) (LogPage, error)
	// Catalog lists the machines hosts can be created on, across clouds.
	Catalog(ctx context.Context) (Catalog, error)
	// Supports says which actions this source can run; the dashboard
	// offers only those.
	Supports(k ActionKind) bool
	// Preview says what an action will cost or destroy, for its
	// confirmation; an error means the action cannot be done.
	Preview(ctx context.Context, a Action) (Preview, error)
	// Do submits an action to the queue and works it to its end,
	// reporting progress as it goes.
	Do(ctx context.Context, a Action, progress func(Progress)) (Outcome, error)
	// Shell returns an interactive shell in a running project; the
	// dashboard hands it the terminal while it runs.
	Shell(ctx context.Context, projectID string) (Command, error)
	// Changes delivers the committed changes to hosts, projects and
	// jobs, in batches (each those since the last one was taken), so
	// that the screen shows a change without reading the fleet again;
	// nil when the source has no change events, and the dashboard polls.
	// A Change with Live set says the events run: every commit from then
	// on comes through them, and the dashboard stops polling the fleet;
	// should the channel close, it polls again.
	Changes(ctx context.Context) <-chan []Change
}

// Change is one committed change to a row the dashboard shows: the row
// as it is now, or the id of a row that is gone (deleted, or no longer
// visible), or Live. Exactly one field is set.
type Change struct {
	// Host comes without its Job (the jobs' changes carry those) and with
	// the costs of the last Fleet read.
	Host    *Host          `json:"host,omitempty"`
	Project *model.Project `json:"project,omitempty"`
	// Job is a job as it is now; one that ended leaves its host.
	Job         *model.Job `json:"job,omitempty"`
	GoneHost    string     `json:"gone_host,omitempty"`
	GoneProject string     `json:"gone_project,omitempty"`
	GoneJob     string     `json:"gone_job,omitempty"`
	// Live: the change events run from here on (sent once, when the
	// watch has read its starting rows).
	Live bool `json:"live,omitempty"`
}

// Command is a program that takes over the terminal (a project shell).
// It has the methods of tea.ExecCommand.
type Command interface {
	Run() error
	SetStdin(io.Reader)
	SetStdout(io.Writer)
	SetStderr(io.Writer)
}

// Fleet is what the hosts and projects views show.
type Fleet struct {
	Hosts    []Host          `json:"hosts"`
	Projects []model.Project `json:"projects"`
	// At is when it was read.
	At time.Time `json:"at"`
}

// Host is a host with what it costs and the job it has pending.
type Host struct {
	model.Host
	// MonthToDate is what it cost since the start of this month (UTC),
	// in USD, from cloud_vm_log.
	MonthToDate float64 `json:"month_to_date"`
	// MonthlyNow is what it costs per month in its current state.
	MonthlyNow float64 `json:"monthly_now"`
	// Job is its queued or running action, if any.
	Job *model.Job `json:"job,omitempty"`
}

// HostInfo is the host details view.
type HostInfo struct {
	Host          Host             `json:"host"`
	Collaborators []string         `json:"collaborators"`
	RecentLog     []model.LogEntry `json:"recent_log"`
	// Stopped is what the host costs while off; nil when unknown.
	Stopped *StoppedCost `json:"stopped_cost,omitempty"`
	Agent   *Agent       `json:"agent,omitempty"`
	At      time.Time    `json:"at"`
}

// StoppedCost is what a stopped host still costs: its disks.
type StoppedCost struct {
	Monthly             float64 `json:"monthly"`
	DiskGB              int     `json:"disk_gb"`
	DiskPricePerGBMonth float64 `json:"disk_price_gb_month"`
	Source              string  `json:"source"`
	BootDiskMonthly     float64 `json:"boot_disk_monthly,omitempty"`
}

// Agent is what a host's agent says about itself.
type Agent struct {
	Reachable   bool       `json:"reachable"`
	Error       string     `json:"error,omitempty"`
	LastContact *time.Time `json:"last_contact,omitempty"`
	Version     string     `json:"version,omitempty"`
	Uptime      float64    `json:"uptime_seconds,omitempty"`
	StorageKind string     `json:"storage_kind,omitempty"`
	DiskFree    uint64     `json:"disk_free_bytes,omitempty"`
	DiskTotal   uint64     `json:"disk_total_bytes,omitempty"`
	CPUs        int        `json:"cpus,omitempty"`
	GPUs        int        `json:"gpus,omitempty"`
	MemTotal    int64      `json:"memory_total_bytes,omitempty"`
	MemCommit   int64      `json:"memory_committed_bytes,omitempty"`
	Running     int        `json:"running_projects,omitempty"`
}

// ProjectUsage is what a host's agent says about one project.
type ProjectUsage struct {
	ID           string     `json:"id"`
	DiskUsed     int64      `json:"disk_used_bytes"`
	Snapshots    int        `json:"snapshots"`
	LastSnapshot *time.Time `json:"last_snapshot,omitempty"`
	LastBackup   *time.Time `json:"last_backup,omitempty"`
}

// LogCursor marks how far a host's logs were read.
type LogCursor struct {
	VMLog int64 `json:"vm_log"`
	Boot  int64 `json:"boot"`
}

// LogPage is a host's log lines after a cursor, oldest first.
type LogPage struct {
	Lines []LogLine `json:"lines"`
	Next  LogCursor `json:"next"`
}

// Log line kinds.
const (
	LogVM   = "vm"   // a cloud_vm_log entry
	LogBoot = "boot" // a line of bootstrap output
)

// LogLine is one line of a host's logs.
type LogLine struct {
	TS   time.Time `json:"ts"`
	Kind string    `json:"kind"`
	Text string    `json:"text"`
	// Error marks a failed action.
	Error bool `json:"error,omitempty"`
}

// Catalog is the machines hosts can be created on.
type Catalog struct {
	Machines []Machine `json:"machines"`
	Warnings []string  `json:"warnings"`
	At       time.Time `json:"at"`
}

// Machine is one machine type in one place, with what it costs.
type Machine struct {
	Provider     string  `json:"provider"`
	Region       string  `json:"region"`
	Zone         string  `json:"zone,omitempty"`
	Type         string  `json:"instance_type"`
	CPUs         int     `json:"vcpus"`
	MemoryGiB    float64 `json:"memory_gib"`
	GPUModel     string  `json:"gpu_model,omitempty"`
	GPUCount     int     `json:"gpu_count,omitempty"`
	HourlyPrice  float64 `json:"hourly_price"`
	SpotPrice    float64 `json:"spot_price,omitempty"`
	DiskGBMonth  float64 `json:"disk_price_gb_month"`
	BootMonthly  float64 `json:"boot_disk_monthly,omitempty"`
	Available    bool    `json:"available"`
	Simulated    bool    `json:"simulated,omitempty"`
	DefaultDisk  int     `json:"default_disk_gb"`
	PricingLabel string  `json:"pricing_source,omitempty"`
}

// ActionKind names an action the dashboard can ask for.
type ActionKind string

// Actions. The dashboard offers those a source Supports; a move or clone
// asks for a destination host and shows Progress bytes as a bar with
// rate and ETA.
const (
	HostCreate      ActionKind = "create"
	HostStart       ActionKind = "start"
	HostStop        ActionKind = "stop"
	HostDelete      ActionKind = "delete"
	HostUpgrade     ActionKind = "upgrade"
	ProjectCreate   ActionKind = "project.create"
	ProjectStart    ActionKind = "project.start"
	ProjectStop     ActionKind = "project.stop"
	ProjectRestart  ActionKind = "project.restart"
	ProjectSnapshot ActionKind = "project.snapshot"
	ProjectMove     ActionKind = "project.move"
	ProjectBackup   ActionKind = "project.backup"
	ProjectClone    ActionKind = "project.clone"
)

// Action is one thing to do.
type Action struct {
	Kind      ActionKind `json:"kind"`
	HostID    string     `json:"host_id,omitempty"`
	ProjectID string     `json:"project_id,omitempty"`
	// Name is what the action is on, for messages (a host's name, a
	// project's title or id).
	Name string `json:"name"`
	// NewHost is the host to create (HostCreate).
	NewHost *NewHost `json:"new_host,omitempty"`
	// NewProject is the project to create (ProjectCreate, on HostID).
	NewProject *NewProject `json:"new_project,omitempty"`
	// ToHostID is where a project moves or is copied to (ProjectMove,
	// ProjectClone).
	ToHostID string `json:"to_host_id,omitempty"`
}

// NewHost is the create-host form.
type NewHost struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Region   string `json:"region"`
	Zone     string `json:"zone,omitempty"`
	Machine  string `json:"machine_type"`
	GPUModel string `json:"gpu_model,omitempty"`
	GPUCount int    `json:"gpu_count,omitempty"`
	DiskGB   int    `json:"disk_gb"`
	Spot     bool   `json:"spot"`
}

// NewProject is the create-project form; sizes as the CLI takes them
// (2G, 512M), empty for the defaults.
type NewProject struct {
	Title  string `json:"title"`
	Memory string `json:"memory"`
	CPUs   string `json:"cpus"`
	Disk   string `json:"disk"`
	Start  bool   `json:"start"`
}

// Preview is what a confirmation shows.
type Preview struct {
	// Lines say what the action costs or destroys, one fact a line.
	Lines []string `json:"lines"`
	// Destroys marks an action that deletes data.
	Destroys bool `json:"destroys"`
	// TypeName, when set, must be typed to confirm (deletes).
	TypeName string `json:"type_name,omitempty"`
}

// Progress is a step of a running action.
type Progress struct {
	Message string `json:"message"`
	Attempt int    `json:"attempt,omitempty"`
	// Bytes and Total count a transfer (moves, backups); 0 otherwise.
	Bytes int64 `json:"bytes,omitempty"`
	Total int64 `json:"total,omitempty"`
}

// Outcome is how a finished action ended.
type Outcome struct {
	// Message is one line, e.g. "gpu1: off".
	Message string `json:"message"`
	// Notes are more lines worth showing (what a stopped host still
	// costs).
	Notes []string `json:"notes,omitempty"`
}
