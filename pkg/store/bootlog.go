package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// BootStore holds boot logs of the SSH bootstrap runner and pinned SSH host keys.
type BootStore interface {
	// StartBootRun records a new run (Result BootRunning).
	StartBootRun(ctx context.Context, r BootRun) error
	// FinishBootRun records how run id ended.
	FinishBootRun(ctx context.Context, id string, finished time.Time, result, errMsg string) error
	// ListBootRuns returns a host's runs, newest first; limit 0 means all.
	ListBootRuns(ctx context.Context, hostID string, limit int) ([]BootRun, error)
	// AppendBootLog stores lines in one transaction. Lines already stored
	// (same run and seq) are skipped, so a batch may be written again.
	AppendBootLog(ctx context.Context, lines []BootLine) error
	// ListBootLog returns lines oldest first.
	ListBootLog(ctx context.Context, f BootLogFilter) ([]BootLine, error)

	// PinHostKey records a host's SSH host key. With replace false an
	// existing pin is kept and returned (the first contact of two racing
	// processes wins); with replace true the key is replaced (a deliberate
	// re-pin). It returns the pin in force afterwards.
	PinHostKey(ctx context.Context, pin HostKeyPin, replace bool) (HostKeyPin, error)
	// GetHostKey returns a host's pin, or an errkind.NotFound error.
	GetHostKey(ctx context.Context, hostID string) (HostKeyPin, error)
	DeleteHostKey(ctx context.Context, hostID string) error
	// TouchHostContact records a successful contact with the host (its
	// health); it does nothing for a host without a pin.
	TouchHostContact(ctx context.Context, hostID string, at time.Time) error
}

// Boot run results.
const (
	BootRunning = "running"
	BootDone    = "done"
	BootFailed  = "failed"
)

// BootRun is one run of the bootstrap (or of an upgrade) on a host.
type BootRun struct {
	ID         string     `json:"id"`
	HostID     string     `json:"host_id"`
	JobID      string     `json:"job_id,omitempty"`
	Kind       string     `json:"kind"` // "bootstrap" or "upgrade"
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Result     string     `json:"result"`
	Error      string     `json:"error,omitempty"`
}

// BootLine is one line of a run's output.
type BootLine struct {
	ID     int64     `json:"id"`
	HostID string    `json:"host_id"`
	RunID  string    `json:"run_id"`
	Seq    int       `json:"seq"`
	TS     time.Time `json:"ts"`
	Line   string    `json:"line"`
}

// BootLogFilter selects boot log lines. RunID empty means every run of
// the host. Limit keeps the newest Limit lines (0: all).
type BootLogFilter struct {
	HostID  string
	RunID   string
	AfterID int64
	Limit   int
}

// HostKeyPin is the SSH host key the control plane accepts for a host.
type HostKeyPin struct {
	HostID string `json:"host_id"`
	// PublicKey is in authorized_keys format ("ssh-ed25519 AAAA...").
	PublicKey string `json:"public_key"`
	// Source says how the key became known: "generated" (we made it and
	// the provider installed it), "first_contact" or "repinned".
	Source        string     `json:"source"`
	PinnedAt      time.Time  `json:"pinned_at"`
	LastContactAt *time.Time `json:"last_contact_at,omitempty"`
}

// maxBootLine bounds one stored line; longer output (a progress bar
// without newlines) is cut.
const maxBootLine = 4096

func (s *SQLStore) StartBootRun(ctx context.Context, r BootRun) error {
	if r.Result == "" {
		r.Result = BootRunning
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO boot_runs (id, host_id, job_id, kind, started_at, finished_at, result, error)
 VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`, r.ID, r.HostID, r.JobID, r.Kind, ms(r.StartedAt), toNullMS(r.FinishedAt), r.Result, r.Error)
	return s.err("start boot run", err)
}

func (s *SQLStore) FinishBootRun(ctx context.Context, id string, finished time.Time, result, errMsg string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE boot_runs SET finished_at = $2, result = $3, error = $4 WHERE id = $1`,
		id, ms(finished), result, errMsg)
	if err != nil {
		return s.err("finish boot run", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "no boot run %s", id)
	}
	return nil
}

func (s *SQLStore) ListBootRuns(ctx context.Context, hostID string, limit int) ([]BootRun, error) {
	q := `SELECT id, host_id, job_id, kind, started_at, finished_at, result, error FROM boot_runs
 WHERE host_id = $1 ORDER BY started_at DESC, id DESC`
	args := []any{hostID}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.err("list boot runs", err)
	}
	defer rows.Close()
	var out []BootRun
	for rows.Next() {
		var r BootRun
		var started int64
		var finished sql.NullInt64
		if err := rows.Scan(&r.ID, &r.HostID, &r.JobID, &r.Kind, &started, &finished, &r.Result, &r.Error); err != nil {
			return nil, s.err("list boot runs", err)
		}
		r.StartedAt, r.FinishedAt = fromMS(started), nullMS(finished)
		out = append(out, r)
	}
	return out, s.err("list boot runs", rows.Err())
}

func (s *SQLStore) AppendBootLog(ctx context.Context, lines []BootLine) error {
	if len(lines) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.err("append boot log", err)
	}
	defer tx.Rollback() //nolint:errcheck
	for _, l := range lines {
		line := l.Line
		if len(line) > maxBootLine {
			line = line[:maxBootLine] + " …(cut)"
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO boot_log (host_id, run_id, seq, ts, line) VALUES ($1,$2,$3,$4,$5)
 ON CONFLICT (run_id, seq) DO NOTHING`, l.HostID, l.RunID, l.Seq, ms(l.TS), line); err != nil {
			return s.err("append boot log", err)
		}
	}
	return s.err("append boot log", tx.Commit())
}

func (s *SQLStore) ListBootLog(ctx context.Context, f BootLogFilter) ([]BootLine, error) {
	// The newest Limit lines, returned oldest first.
	q := `SELECT id, host_id, run_id, seq, ts, line FROM boot_log
 WHERE host_id = $1 AND ($2 = '' OR run_id = $2) AND id > $3 ORDER BY id DESC`
	args := []any{f.HostID, f.RunID, f.AfterID}
	if f.Limit > 0 {
		q += ` LIMIT $4`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.err("list boot log", err)
	}
	defer rows.Close()
	var out []BootLine
	for rows.Next() {
		var l BootLine
		var ts int64
		if err := rows.Scan(&l.ID, &l.HostID, &l.RunID, &l.Seq, &ts, &l.Line); err != nil {
			return nil, s.err("list boot log", err)
		}
		l.TS = fromMS(ts)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, s.err("list boot log", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (s *SQLStore) PinHostKey(ctx context.Context, pin HostKeyPin, replace bool) (HostKeyPin, error) {
	if pin.HostID == "" || pin.PublicKey == "" {
		return HostKeyPin{}, errors.New("pin host key: empty host id or key")
	}
	q := `INSERT INTO host_ssh_keys (host_id, public_key, source, pinned_at) VALUES ($1,$2,$3,$4)
 ON CONFLICT (host_id) DO `
	if replace {
		q += `UPDATE SET public_key = excluded.public_key, source = excluded.source, pinned_at = excluded.pinned_at`
	} else {
		q += `NOTHING`
	}
	if _, err := s.db.ExecContext(ctx, q, pin.HostID, pin.PublicKey, pin.Source, ms(pin.PinnedAt)); err != nil {
		return HostKeyPin{}, s.err("pin host key", err)
	}
	return s.GetHostKey(ctx, pin.HostID)
}

func (s *SQLStore) GetHostKey(ctx context.Context, hostID string) (HostKeyPin, error) {
	var p HostKeyPin
	var pinned int64
	var contact sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT host_id, public_key, source, pinned_at, last_contact_at FROM host_ssh_keys WHERE host_id = $1`,
		hostID).Scan(&p.HostID, &p.PublicKey, &p.Source, &pinned, &contact)
	if errors.Is(err, sql.ErrNoRows) {
		return p, errkind.Errorf(errkind.NotFound, "no pinned host key for host %s", hostID)
	}
	if err != nil {
		return p, s.err("get host key", err)
	}
	p.PinnedAt, p.LastContactAt = fromMS(pinned), nullMS(contact)
	return p, nil
}

func (s *SQLStore) DeleteHostKey(ctx context.Context, hostID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM host_ssh_keys WHERE host_id = $1`, hostID)
	return s.err("delete host key", err)
}

func (s *SQLStore) TouchHostContact(ctx context.Context, hostID string, at time.Time) error {
	// Never move the time backwards: contacts from several processes
	// arrive out of order.
	_, err := s.db.ExecContext(ctx, `UPDATE host_ssh_keys SET last_contact_at = $2
 WHERE host_id = $1 AND (last_contact_at IS NULL OR last_contact_at < $2)`, hostID, ms(at))
	return s.err("touch host contact", err)
}
