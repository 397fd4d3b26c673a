package model

import "time"

// HealthRequest says what `status` counts as a problem.
type HealthRequest struct {
	// MinFreePercent: a running host whose data disk or memory has less
	// than this much free is reported (0: 10).
	MinFreePercent float64 `json:"min_free_percent"`
	// FailedSince: jobs that failed since then are reported (zero: the
	// last 24 hours).
	FailedSince time.Time `json:"failed_since"`
}

// Health is the one-screen summary of `status`.
type Health struct {
	Healthy bool      `json:"healthy"`
	Backend string    `json:"backend"`
	At      time.Time `json:"at"`
	// Queue: how many jobs are queued and running, and the queued job
	// due longest with how long it has waited.
	Queued     int     `json:"queued"`
	Running    int     `json:"running"`
	OldestDue  *Job    `json:"oldest_due,omitempty"`
	OldestWait float64 `json:"oldest_wait_seconds"`
	// Workers hold leases on running jobs (a worker with no running job
	// is not seen).
	Workers []WorkerSeen `json:"workers"`
	// Leader is whether some process (a worker or server) holds the
	// database's leader lock, and so runs reconcile, catalog refresh and
	// the other periodic duties.
	Leader bool `json:"leader"`
	// Hosts counts the live hosts by status.
	Hosts map[Status]int `json:"hosts"`
	// FailedJobs is how many jobs failed since FailedSince; Failed the
	// newest of them.
	FailedJobs int   `json:"failed_jobs"`
	Failed     []Job `json:"failed"`
	// Problems are what makes the deployment unhealthy, one line each.
	Problems []Problem `json:"problems"`
}

// WorkerSeen is a worker holding leases.
type WorkerSeen struct {
	Worker string `json:"worker"`
	Jobs   int    `json:"jobs"`
}

// Problem is one thing `status` reports: what kind, about which host,
// project or job, and what to do.
type Problem struct {
	Kind    string `json:"kind"` // failed_jobs, host_error, host_missing, agent_unreachable, low_disk, low_memory, stale_backups
	Subject string `json:"subject,omitempty"`
	Message string `json:"message"`
}
