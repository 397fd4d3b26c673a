package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// ---- jobs: the durable queue's table (see package queue)

const jobColumns = `id, subject_kind, subject_id, action, payload, state, attempts, max_attempts, run_after, lease_owner, lease_until,
 last_error, created_at, updated_at, finished_at`

func scanJob(r scanner) (model.Job, error) {
	var j model.Job
	var payload, action, state, kind string
	var runAfter, created, updated int64
	var owner sql.NullString
	var leaseUntil, finished sql.NullInt64
	err := r.Scan(&j.ID, &kind, &j.Subject.ID, &action, &payload, &state, &j.Attempts, &j.MaxAttempts, &runAfter, &owner,
		&leaseUntil, &j.LastError, &created, &updated, &finished)
	if err != nil {
		return j, err
	}
	j.Subject.Kind = model.SubjectKind(kind)
	j.Action, j.State, j.Payload = model.Action(action), model.JobState(state), json.RawMessage(payload)
	j.RunAfter, j.CreatedAt, j.UpdatedAt = fromMS(runAfter), fromMS(created), fromMS(updated)
	j.LeaseOwner, j.LeaseUntil, j.FinishedAt = owner.String, nullMS(leaseUntil), nullMS(finished)
	return j, nil
}

// EnqueueJob inserts j unless its subject already has an active job. If
// that active job is the same action, it is returned with created=false;
// otherwise a *BusyError is returned. The partial unique index
// jobs_one_active decides, so concurrent enqueues cannot both win.
func (s *SQLStore) EnqueueJob(ctx context.Context, j model.Job) (model.Job, bool, error) {
	if j.Subject.Kind == "" || j.Subject.ID == "" {
		return j, false, fmt.Errorf("enqueue %s: the job has no subject", j.Action)
	}
	for range 10 {
		got, err := scanJob(s.db.QueryRowContext(ctx, insertJobSQL+`
 ON CONFLICT (subject_kind, subject_id) WHERE state IN ('queued','running') DO NOTHING RETURNING `+jobColumns, insertJobArgs(j)...))
		if err == nil {
			s.changed(TopicJobs, j.ID)
			return got, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return j, false, s.err("enqueue "+string(j.Action), err)
		}
		active, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs
 WHERE subject_kind = $1 AND subject_id = $2 AND state IN ('queued','running')`, string(j.Subject.Kind), j.Subject.ID))
		if errors.Is(err, sql.ErrNoRows) {
			continue // the active job finished between our insert and select: try again
		}
		if err != nil {
			return j, false, s.err("enqueue "+string(j.Action), err)
		}
		if active.Action == j.Action {
			return active, false, nil
		}
		return active, false, &BusyError{Active: active}
	}
	return j, false, errkind.Errorf(errkind.Conflict, "enqueue %s for %s: lost the race ten times", j.Action, j.Subject)
}

// insertJobSQL queues a job (insertJobArgs are its values).
const insertJobSQL = `INSERT INTO jobs (` + jobColumns + `)
 VALUES ($1,$2,$3,$4,$5,'queued',0,$6,$7,NULL,NULL,'',$8,$8,NULL)`

func insertJobArgs(j model.Job) []any {
	payload := string(j.Payload)
	if payload == "" {
		payload = `{}`
	}
	return []any{j.ID, string(j.Subject.Kind), j.Subject.ID, string(j.Action), payload, j.MaxAttempts, ms(j.RunAfter), ms(j.CreatedAt)}
}

// insertJob queues j in tx, for a subject made in the same transaction
// (which has no active job yet); the caller publishes the change once
// committed.
func (s *SQLStore) insertJob(ctx context.Context, tx *sql.Tx, j model.Job) (model.Job, error) {
	got, err := scanJob(tx.QueryRowContext(ctx, insertJobSQL+` RETURNING `+jobColumns, insertJobArgs(j)...))
	if err != nil {
		return j, s.err("enqueue "+string(j.Action)+" for "+j.Subject.String(), err)
	}
	return got, nil
}

// ClaimJobs takes up to c.Limit runnable jobs in one statement: running
// jobs whose lease expired (their worker died) first, then queued jobs
// that are due, oldest first. It counts each one's attempt. Each part
// reads a partial index only as far as the rows it takes, so a claim
// costs the same whatever the depth of the queue.
func (s *SQLStore) ClaimJobs(ctx context.Context, c Claim) ([]model.Job, error) {
	now := ms(c.Now)
	args := []any{c.Owner, now + c.Lease.Milliseconds(), now, max(c.Limit, 1)}
	runnable := `((state = 'queued' AND run_after <= $3) OR (state = 'running' AND lease_until < $3))`
	var q string
	if c.JobID != "" {
		args = append(args, c.JobID)
		q = `WITH picked AS (SELECT id FROM jobs WHERE id = $5 AND ` + runnable + ` LIMIT $4` + s.d.skipLocked() + `)`
	} else {
		q = `WITH expired AS (SELECT id FROM jobs WHERE state = 'running' AND lease_until < $3
 ORDER BY lease_until LIMIT $4` + s.d.skipLocked() + `),
 due AS (SELECT id FROM jobs WHERE state = 'queued' AND run_after <= $3
 ORDER BY run_after, created_at LIMIT $4` + s.d.skipLocked() + `),
 picked AS (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT $4)`
	}
	rows, err := s.db.QueryContext(ctx, q+`
 UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
 WHERE id IN (SELECT id FROM picked) RETURNING `+jobColumns, args...)
	if err != nil {
		return nil, s.err("claim jobs", err)
	}
	defer rows.Close()
	var out []model.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, s.err("claim jobs", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, s.err("claim jobs", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RunAfter.Before(out[j].RunAfter) })
	for _, j := range out {
		s.changed(TopicJobs, j.ID)
	}
	return out, nil
}

// HeartbeatJobs extends to until the lease of every job owner runs, in
// one statement, and returns their ids: a job owner believes it runs but
// that is missing was taken over (its lease had expired) or finished.
func (s *SQLStore) HeartbeatJobs(ctx context.Context, owner string, until, now time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `UPDATE jobs SET lease_until = $2, updated_at = $3
 WHERE lease_owner = $1 AND state = 'running' RETURNING id`, owner, ms(until), ms(now))
	if err != nil {
		return nil, s.err("heartbeat jobs of "+owner, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.err("heartbeat jobs of "+owner, err)
		}
		ids = append(ids, id)
	}
	return ids, s.err("heartbeat jobs of "+owner, rows.Err())
}

// NextJobAt returns when a job next becomes runnable: the earliest
// run_after of a queued job, or lease expiry of a running one. ok is false
// when no job is queued or running.
func (s *SQLStore) NextJobAt(ctx context.Context) (t time.Time, ok bool, err error) {
	var v sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT min(t) FROM (
 SELECT min(run_after) AS t FROM jobs WHERE state = 'queued'
 UNION ALL SELECT min(lease_until) FROM jobs WHERE state = 'running') n`).Scan(&v)
	if err != nil || !v.Valid {
		return time.Time{}, false, s.err("next job", err)
	}
	return fromMS(v.Int64), true, nil
}

// Write is a change committed together with a job's outcome: in the same
// transaction, and only while the job's lease holds (see Finish).
type Write interface {
	apply(ctx context.Context, s *SQLStore, tx txWriter) error
}

// HostWrite writes every column of a host that an action may change.
type HostWrite struct{ Host model.Host }

func (w HostWrite) apply(ctx context.Context, s *SQLStore, tx txWriter) error {
	return s.updateHost(ctx, tx, w.Host)
}

// LogWrite appends an entry to cloud_vm_log.
type LogWrite struct{ Entry model.LogEntry }

func (w LogWrite) apply(ctx context.Context, s *SQLStore, tx txWriter) error {
	_, err := s.appendLog(ctx, tx, w.Entry)
	return err
}

// FinishJobs records the outcomes of jobs (see Finish) in one transaction,
// so that the workers of a process share one commit. The result has one
// entry per Finish: nil; ErrLeaseLost for one whose lease was lost, or a
// NotFound error for one whose host is gone (their writes are skipped, the
// others' are not); or the error that rolled the whole transaction back.
func (s *SQLStore) FinishJobs(ctx context.Context, fs []Finish) []error {
	var errs []error
	var err error
	if pg, ok := s.d.(postgresDialect); ok {
		errs, err = pg.finishJobs(ctx, s, fs)
	} else {
		errs, err = s.finishJobsTx(ctx, fs)
	}
	if err != nil {
		err = s.err("finish jobs", err)
		errs = make([]error, len(fs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, f := range fs {
		if errs[i] == nil {
			s.changed(TopicJobs, f.JobID)
		}
	}
	return errs
}

// finishJobSQL is the statement that records f's outcome on its job. It
// changes the job only while f.Owner holds its lease and every host f
// writes exists (on Postgres, locked until the commit), so that f's
// writes, made only when it changed the job, always find their rows.
func (s *SQLStore) finishJobSQL(f Finish) (string, []any) {
	var finished sql.NullInt64
	if f.State == model.JobDone || f.State == model.JobFailed {
		finished = sql.NullInt64{Int64: ms(f.Now), Valid: true}
	}
	args := []any{f.JobID, f.Owner, string(f.State), ms(f.RunAfter), f.Error, ms(f.Now), finished, unclaimed(f)}
	q := `UPDATE jobs SET state = $3, run_after = $4, last_error = $5, updated_at = $6, finished_at = $7,
 attempts = attempts - $8, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND state = 'running'`
	if ids := hostsWritten(f); len(ids) > 0 {
		in := make([]string, len(ids))
		for i, id := range ids {
			args = append(args, id)
			in[i] = "$" + strconv.Itoa(len(args))
		}
		q += ` AND (SELECT count(*) FROM (SELECT 1 FROM project_hosts WHERE id IN (` + strings.Join(in, ", ") + `)` +
			s.d.lockRow() + `) h) = ` + strconv.Itoa(len(ids))
	}
	return q, args
}

// hostsWritten are the hosts f writes, each once.
func hostsWritten(f Finish) []string {
	var ids []string
	for _, w := range f.Writes {
		if h, ok := w.(HostWrite); ok && !slices.Contains(ids, h.Host.ID) {
			ids = append(ids, h.Host.ID)
		}
	}
	return ids
}

// notFinished says why the statement of finishJobSQL changed no job: the
// lease was lost, or a host f writes no longer exists.
func (s *SQLStore) notFinished(ctx context.Context, db queryRower, f Finish) error {
	var held int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM jobs WHERE id = $1 AND lease_owner = $2 AND state = 'running'`,
		f.JobID, f.Owner).Scan(&held)
	for _, id := range hostsWritten(f) {
		var n int
		if err != nil || held == 0 {
			break
		}
		if err = db.QueryRowContext(ctx, `SELECT count(*) FROM project_hosts WHERE id = $1`, id).Scan(&n); err == nil && n == 0 {
			return errkind.Errorf(errkind.NotFound, "finish job %s: host %s no longer exists", f.JobID, id)
		}
	}
	if err != nil {
		return fmt.Errorf("finish job %s: %w", f.JobID, s.err("look for its lease", err))
	}
	return fmt.Errorf("finish job %s: %w", f.JobID, ErrLeaseLost)
}

// finishJobsTx is FinishJobs statement by statement in a transaction
// (SQLite, where statements cost no round trip).
func (s *SQLStore) finishJobsTx(ctx context.Context, fs []Finish) ([]error, error) {
	errs := make([]error, len(fs))
	tx, err := s.db.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	for i, f := range fs {
		q, args := s.finishJobSQL(f)
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("finish job %s: %w", f.JobID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			errs[i] = s.notFinished(ctx, tx, f)
			continue
		}
		for _, w := range f.Writes {
			if err := w.apply(ctx, s, tx); err != nil {
				return nil, fmt.Errorf("finish job %s: %w", f.JobID, err)
			}
		}
	}
	return errs, tx.Commit()
}

func (s *SQLStore) GetJob(ctx context.Context, id string) (model.Job, error) {
	j, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, &errkind.NotFoundError{Type: "job", Name: id}
	}
	return j, s.err("get job "+id, err)
}

func (s *SQLStore) ListJobs(ctx context.Context, f JobFilter) ([]model.Job, error) {
	q := `SELECT ` + jobColumns + ` FROM jobs WHERE ($1 = '' OR subject_id = $1) AND ($2 = '' OR subject_kind = $2)`
	if f.ActiveOnly {
		q += ` AND state IN ('queued','running')`
	}
	q += ` ORDER BY created_at DESC, id`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, f.Subject.ID, string(f.Subject.Kind))
	if err != nil {
		return nil, s.err("list jobs", err)
	}
	defer rows.Close()
	var out []model.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, s.err("list jobs", err)
		}
		out = append(out, j)
	}
	return out, s.err("list jobs", rows.Err())
}

// unclaimed is the attempt a Finish takes back: 1 if it unclaims.
func unclaimed(f Finish) int {
	if f.Unclaim {
		return 1
	}
	return 0
}
