package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// StatsStore counts the queue and the fleet for /metrics and `status`.
// Every query reads the partial indexes of active jobs or the live hosts,
// so a scrape costs the same however many jobs have finished.
type StatsStore interface {
	Stats(ctx context.Context, now time.Time) (Stats, error)
	// FailedJobs lists the jobs that failed at or after since and still
	// stand (no later job of the same action on the same subject was
	// done: a backup that failed and then succeeded is no problem),
	// newest first (at most limit), and how many there are.
	FailedJobs(ctx context.Context, since time.Time, limit int) ([]model.Job, int, error)
	// AgentAnswers lists the running hosts that have an agent
	// (model.Host.HasAgent), by name, with when each agent last answered
	// the control plane.
	AgentAnswers(ctx context.Context) ([]AgentAnswer, error)
}

// AgentAnswer is a running host with an agent and when that agent last
// answered the control plane: the last access list it took
// (host_ingress.pushed_at, every ingress.acl_ttl from the leader); nil
// if it never did.
type AgentAnswer struct {
	Host     string     `json:"host"`
	Provider string     `json:"provider"`
	At       *time.Time `json:"at,omitempty"`
}

// Stats are counts of the queue and the fleet at one moment.
type Stats struct {
	// Active counts the queued and running jobs by action and state.
	Active []JobCount `json:"active"`
	// OldestDue is the queued job that has been due longest (nil: none
	// is due).
	OldestDue *model.Job `json:"oldest_due,omitempty"`
	// Leases are the workers that hold unexpired leases on running jobs.
	Leases []LeaseCount `json:"leases"`
	// Hosts counts the live hosts by provider and status.
	Hosts []HostCount `json:"hosts"`
}

// JobCount is how many jobs of an action are in a state.
type JobCount struct {
	Action model.Action   `json:"action"`
	State  model.JobState `json:"state"`
	Count  int            `json:"count"`
}

// LeaseCount is a worker and the running jobs it holds.
type LeaseCount struct {
	Worker string `json:"worker"`
	Jobs   int    `json:"jobs"`
}

// HostCount is how many live hosts of a provider are in a status.
type HostCount struct {
	Provider string       `json:"provider"`
	Status   model.Status `json:"status"`
	Count    int          `json:"count"`
}

func (s *SQLStore) Stats(ctx context.Context, now time.Time) (Stats, error) {
	var st Stats
	var err error
	if st.Active, err = queryRows(ctx, s, "count jobs", func(c *JobCount) []any { return []any{&c.Action, &c.State, &c.Count} },
		`SELECT action, state, count(*) FROM jobs WHERE state IN ('queued','running') GROUP BY action, state ORDER BY action, state`); err != nil {
		return st, err
	}
	j, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE state = 'queued' AND run_after <= $1 ORDER BY run_after, created_at LIMIT 1`, ms(now)))
	switch {
	case err == nil:
		st.OldestDue = &j
	case !errors.Is(err, sql.ErrNoRows):
		return st, s.err("oldest due job", err)
	}
	if st.Leases, err = queryRows(ctx, s, "count leases", func(c *LeaseCount) []any { return []any{&c.Worker, &c.Jobs} },
		`SELECT lease_owner, count(*) FROM jobs WHERE state = 'running' AND lease_until > $1 GROUP BY lease_owner ORDER BY lease_owner`, ms(now)); err != nil {
		return st, err
	}
	st.Hosts, err = queryRows(ctx, s, "count hosts", func(c *HostCount) []any { return []any{&c.Provider, &c.Status, &c.Count} },
		`SELECT provider, status, count(*) FROM project_hosts WHERE deleted_at IS NULL GROUP BY provider, status ORDER BY provider, status`)
	return st, err
}

// queryRows runs query and scans each row into a new T through the
// pointers fields gives; never nil, so that JSON shows [] for none.
func queryRows[T any](ctx context.Context, s *SQLStore, what string, fields func(*T) []any, query string, args ...any) ([]T, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return []T{}, s.err(what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var v T
		if err := rows.Scan(fields(&v)...); err != nil {
			return []T{}, s.err(what, err)
		}
		out = append(out, v)
	}
	return out, s.err(what, rows.Err())
}

func (s *SQLStore) FailedJobs(ctx context.Context, since time.Time, limit int) ([]model.Job, int, error) {
	const standing = ` FROM jobs f WHERE f.state = 'failed' AND f.finished_at >= $1 AND NOT EXISTS (
 SELECT 1 FROM jobs d WHERE d.subject_id = f.subject_id AND d.subject_kind = f.subject_kind AND d.action = f.action
 AND d.state = 'done' AND d.finished_at > f.finished_at)`
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*)`+standing, ms(since)).Scan(&n); err != nil {
		return nil, 0, s.err("count failed jobs", err)
	}
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf(`SELECT `+jobColumns+standing+` ORDER BY finished_at DESC, id LIMIT %d`, max(limit, 0)), ms(since))
	if err != nil {
		return nil, 0, s.err("list failed jobs", err)
	}
	defer rows.Close()
	out := []model.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, 0, s.err("list failed jobs", err)
		}
		out = append(out, j)
	}
	return out, n, s.err("list failed jobs", rows.Err())
}

func (s *SQLStore) AgentAnswers(ctx context.Context) ([]AgentAnswer, error) {
	type row struct {
		host    model.Host
		runtime string
		at      sql.NullInt64
	}
	rows, err := queryRows(ctx, s, "agent answers", func(r *row) []any { return []any{&r.host.Name, &r.host.Provider, &r.runtime, &r.at} },
		`SELECT h.name, h.provider, h.runtime, i.pushed_at FROM project_hosts h LEFT JOIN host_ingress i ON i.host_id = h.id
 WHERE h.deleted_at IS NULL AND h.status = 'running' ORDER BY h.name`)
	if err != nil {
		return nil, err
	}
	out := []AgentAnswer{}
	for _, r := range rows {
		if err := json.Unmarshal([]byte(r.runtime), &r.host.Runtime); err != nil {
			return nil, fmt.Errorf("host %s: corrupt runtime: %w", r.host.Name, err)
		}
		if r.host.HasAgent() {
			out = append(out, AgentAnswer{Host: r.host.Name, Provider: r.host.Provider, At: nullMS(r.at)})
		}
	}
	return out, nil
}
