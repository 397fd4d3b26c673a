package model

import "time"

// Actions of moves and clones. A move and a clone are jobs of the project
// they act on (a clone: of the new project); the cleanup of a move's
// source copy is a job of the move itself, so that waiting for it never
// holds up the project's other actions.
const (
	ActionProjectMove  Action = "project.move"
	ActionProjectClone Action = "project.clone"
	ActionMoveCleanup  Action = "move.cleanup"
)

// SubjectMove is the subject kind of a move's cleanup.
const SubjectMove SubjectKind = "move"

// Kinds of transfer.
const (
	MoveKindMove  = "move"
	MoveKindClone = "clone"
)

// Phases of a move or clone, in order.
const (
	MovePrecopy = "pre-copy" // sending while the project runs
	MoveCutover = "cut-over" // stopped, final incremental, switch placement
	MoveDone    = "done"     // switched (the source copy kept until cleanup)
	MoveCleaned = "cleaned"  // the source copy deleted
	MoveFailed  = "failed"   // rolled back: the source is authoritative
)

// Move is one move or clone of a project, kept for resuming it after a
// crash and for `project show`.
type Move struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	ProjectID string `json:"project_id"`
	// CloneID is the new project of a clone.
	CloneID  string `json:"clone_id,omitempty"`
	FromHost string `json:"from_host"`
	ToHost   string `json:"to_host"`
	// FromName and ToName are the hosts' names when the move began.
	FromName string `json:"from_name"`
	ToName   string `json:"to_name"`
	Phase    string `json:"phase"`
	// Path is how the data went: "direct" from the source agent to the
	// destination agent, or "relayed" through the control plane's
	// connections to both; PathNote says why a move was relayed.
	Path     string `json:"path"`
	PathNote string `json:"path_note,omitempty"`
	// Method is "btrfs" (snapshots carried) or "tar" (the home only).
	Method string `json:"method"`
	// MethodNote says why a move went by tar: which host keeps projects
	// in a plain directory, so that snapshots are not carried.
	MethodNote string `json:"method_note,omitempty"`
	// Round counts pre-copy rounds; LastSent is the newest transfer
	// snapshot the destination holds.
	Round      int    `json:"round"`
	LastSent   string `json:"last_sent,omitempty"`
	WasRunning bool   `json:"was_running"`
	// Stopped says the move stopped the project on the source (so a
	// rollback starts it again).
	Stopped    bool       `json:"stopped,omitempty"`
	Bytes      int64      `json:"bytes"`
	DowntimeMS int64      `json:"downtime_ms"`
	Error      string     `json:"error,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// KeepUntil is when the source copy of a done move is deleted.
	KeepUntil *time.Time `json:"keep_until,omitempty"`
	// CutoverSteps is how long each step of the cut-over took, in order
	// (their sum is about DowntimeMS).
	CutoverSteps []MoveStep `json:"cutover_steps,omitempty"`
	// PlannedBytes is what the move expects to send (the project's usage
	// with snapshots when it began); progress counts toward it.
	PlannedBytes int64 `json:"planned_bytes,omitempty"`
}

// MoveStep is one timed step of a move's cut-over.
type MoveStep struct {
	Step string `json:"step"`
	MS   int64  `json:"ms"`
}
