package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// ProjectStore holds projects and their placement on hosts.
type ProjectStore interface {
	// CreateProject inserts p; an existing id is an errkind.Conflict error.
	CreateProject(ctx context.Context, p model.Project) error
	// CreateProjectWithin records a new project with its first job (see
	// NewProject) in one transaction, only if the disk promised to the
	// projects of its host (every row, deleted ones too: their data stays
	// until purged) plus the project's stays within DiskCap; else
	// *NoRoomError. Concurrent creates on one host are serialized, so two
	// cannot both take the last room.
	CreateProjectWithin(ctx context.Context, n NewProject) (model.Job, error)
	// GetProject returns project id, deleted or not, or an errkind.NotFound error.
	GetProject(ctx context.Context, id string) (model.Project, error)
	ListProjects(ctx context.Context, f ProjectFilter) ([]model.Project, error)
	// FindProjects returns at most limit live projects, oldest first,
	// whose id begins with ref (when ref can begin one, model.IDPrefix)
	// or whose title is ref; with account set, only those it owns or
	// collaborates on.
	FindProjects(ctx context.Context, ref, account string, limit int) ([]model.Project, error)
	// UpdateProject writes every field of p but id and created_at.
	UpdateProject(ctx context.Context, p model.Project) error
	// UpdateProjectIfIdle writes p only if the row's updated_at still
	// equals expect and the project has no queued or running job, so that
	// what was observed on the host never overwrites a worker's write.
	UpdateProjectIfIdle(ctx context.Context, p model.Project, expect time.Time) (bool, error)
	// PurgeProject removes a project's row for good.
	PurgeProject(ctx context.Context, id string) error

	// SetHostShared puts a host in (or takes it out of) the shared pool
	// that every account may place projects on.
	SetHostShared(ctx context.Context, hostID string, shared bool) error
	// ListAdmins returns the accounts that are admins.
	ListAdmins(ctx context.Context) ([]string, error)

	// SetIdlePolicy records a host's idle stop (0: off).
	SetIdlePolicy(ctx context.Context, hostID string, stopAfterSeconds int64, at time.Time) error
	// GetIdlePolicy returns a host's idle stop; 0 when none was set.
	GetIdlePolicy(ctx context.Context, hostID string) (int64, error)
	// ListIdlePolicies returns the hosts with an idle stop set, as host id
	// → seconds.
	ListIdlePolicies(ctx context.Context) (map[string]int64, error)
}

// ProjectFilter selects projects. Zero values select every live project.
type ProjectFilter struct {
	HostID         string
	Owner          string
	IncludeDeleted bool
}

const projectColumns = `id, title, owner, host_id, image, memory_bytes, cpus, pids_limit, disk_bytes, idle_timeout_s,
 state, last_activity, last_action, last_error, created_at, updated_at, deleted_at`

func scanProject(r scanner) (model.Project, error) {
	var p model.Project
	var state string
	var created, updated int64
	var activity, deleted sql.NullInt64
	err := r.Scan(&p.ID, &p.Title, &p.Owner, &p.HostID, &p.Image, &p.Limits.MemoryBytes, &p.Limits.CPUs,
		&p.Limits.PidsLimit, &p.Limits.DiskBytes, &p.IdleTimeoutSeconds, &state, &activity, &p.LastAction,
		&p.LastError, &created, &updated, &deleted)
	if err != nil {
		return p, err
	}
	p.State = model.ProjectState(state)
	p.LastActivity, p.DeletedAt = nullMS(activity), nullMS(deleted)
	p.CreatedAt, p.UpdatedAt = fromMS(created), fromMS(updated)
	return p, nil
}

const insertProjectSQL = `INSERT INTO projects (` + projectColumns + `)
 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)`

func (s *SQLStore) CreateProject(ctx context.Context, p model.Project) error {
	return s.insertProject(ctx, s.db, p)
}

func (s *SQLStore) insertProject(ctx context.Context, db execer, p model.Project) error {
	_, err := db.ExecContext(ctx, insertProjectSQL,
		p.ID, p.Title, p.Owner, p.HostID, p.Image, p.Limits.MemoryBytes, p.Limits.CPUs, p.Limits.PidsLimit,
		p.Limits.DiskBytes, p.IdleTimeoutSeconds, string(p.State), toNullMS(p.LastActivity), p.LastAction,
		p.LastError, ms(p.CreatedAt), ms(p.UpdatedAt), toNullMS(p.DeletedAt))
	if err != nil {
		err = s.d.translate(err)
		if errkind.Is(err, errkind.Conflict) {
			return errkind.Errorf(errkind.Conflict, "a project with id %s already exists", p.ID)
		}
		return fmt.Errorf("create project %s: %w", p.ID, err)
	}
	return nil
}

// NewProject is a project to record together with the job that makes it
// (and, for a clone, the move that job carries out): all commit or none
// does, so that no project is left creating without its job.
type NewProject struct {
	Project model.Project
	// DiskCap is what the projects of its host may be promised in all.
	DiskCap int64
	// Job must act on Project.
	Job  model.Job
	Move *model.Move
}

// NoRoomError says a host's disk is already promised to its projects.
type NoRoomError struct {
	Promised, Cap int64
	Projects      int
}

func (e *NoRoomError) Error() string {
	return fmt.Sprintf("%d of %d bytes of disk are promised to %d project(s)", e.Promised, e.Cap, e.Projects)
}

func (s *SQLStore) CreateProjectWithin(ctx context.Context, n NewProject) (model.Job, error) {
	p, j := n.Project, n.Job
	if j.Subject != model.ProjectSubject(p.ID) {
		return j, fmt.Errorf("create project %s: its job acts on %s", p.ID, j.Subject)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return j, s.err("create project "+p.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck
	var id string
	err = tx.QueryRowContext(ctx, `SELECT id FROM project_hosts WHERE id = $1`+s.d.lockRow(), p.HostID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return j, &errkind.NotFoundError{Type: "host", Name: p.HostID}
	}
	if err != nil {
		return j, s.err("create project "+p.ID, err)
	}
	var promised int64
	var count int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(disk_bytes), 0), COUNT(*) FROM projects WHERE host_id = $1`,
		p.HostID).Scan(&promised, &count); err != nil {
		return j, s.err("create project "+p.ID, err)
	}
	if promised+p.Limits.DiskBytes > n.DiskCap {
		return j, &NoRoomError{Promised: promised, Cap: n.DiskCap, Projects: count}
	}
	if err := s.insertProject(ctx, tx, p); err != nil {
		return j, err
	}
	if n.Move != nil {
		if _, err := tx.ExecContext(ctx, putMoveSQL, putMoveArgs(*n.Move)...); err != nil {
			return j, s.err("record move "+n.Move.ID, err)
		}
	}
	if j, err = s.insertJob(ctx, tx, j); err != nil {
		return j, err
	}
	if err := tx.Commit(); err != nil {
		return j, s.err("create project "+p.ID, err)
	}
	s.changed(TopicJobs, j.ID)
	return j, nil
}

func (s *SQLStore) GetProject(ctx context.Context, id string) (model.Project, error) {
	p, err := scanProject(s.db.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, &errkind.NotFoundError{Type: "project", Name: id}
	}
	return p, s.err("get project "+id, err)
}

func (s *SQLStore) ListProjects(ctx context.Context, f ProjectFilter) ([]model.Project, error) {
	q := `SELECT ` + projectColumns + ` FROM projects WHERE ($1 = '' OR host_id = $1) AND ($2 = '' OR owner = $2)`
	if !f.IncludeDeleted {
		q += ` AND deleted_at IS NULL`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id`, f.HostID, f.Owner)
	if err != nil {
		return nil, s.err("list projects", err)
	}
	defer rows.Close()
	var out []model.Project
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, s.err("list projects", err)
		}
		out = append(out, p)
	}
	return out, s.err("list projects", rows.Err())
}

func (s *SQLStore) FindProjects(ctx context.Context, ref, account string, limit int) ([]model.Project, error) {
	prefix := ""
	if model.IDPrefix(ref) {
		// Only hex digits and dashes: nothing LIKE would read as a pattern.
		prefix = ref + "%"
	}
	var out []model.Project
	err := s.each(ctx, "find projects", func(r *sql.Rows) error {
		p, err := scanProject(r)
		out = append(out, p)
		return err
	}, `SELECT `+projectColumns+` FROM projects WHERE deleted_at IS NULL AND (id LIKE $1 OR title = $2)
 AND ($3 = '' OR owner = $3 OR id IN (SELECT project_id FROM project_collaborators WHERE account_id = $3))
 ORDER BY created_at, id LIMIT $4`, prefix, ref, account, limit)
	return out, err
}

const updateProjectSQL = `UPDATE projects SET title=$2, owner=$3, host_id=$4, image=$5, memory_bytes=$6, cpus=$7,
 pids_limit=$8, disk_bytes=$9, idle_timeout_s=$10, state=$11, last_activity=$12, last_action=$13, last_error=$14,
 updated_at=$15, deleted_at=$16 WHERE id = $1`

func updateProjectArgs(p model.Project) []any {
	return []any{p.ID, p.Title, p.Owner, p.HostID, p.Image, p.Limits.MemoryBytes, p.Limits.CPUs, p.Limits.PidsLimit,
		p.Limits.DiskBytes, p.IdleTimeoutSeconds, string(p.State), toNullMS(p.LastActivity), p.LastAction, p.LastError,
		ms(p.UpdatedAt), toNullMS(p.DeletedAt)}
}

func (s *SQLStore) UpdateProject(ctx context.Context, p model.Project) error {
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = time.Now()
	}
	res, err := s.db.ExecContext(ctx, updateProjectSQL, updateProjectArgs(p)...)
	if err != nil {
		return s.err("update project "+p.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "project %s no longer exists", p.ID)
	}
	return nil
}

func (s *SQLStore) UpdateProjectIfIdle(ctx context.Context, p model.Project, expect time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, updateProjectSQL+` AND updated_at = $17
 AND NOT EXISTS (SELECT 1 FROM jobs WHERE subject_kind = 'project' AND subject_id = $1 AND state IN ('queued','running'))`,
		append(updateProjectArgs(p), ms(expect))...)
	if err != nil {
		return false, s.err("update project "+p.ID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (s *SQLStore) PurgeProject(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM projects WHERE id = $1`, id)
	return s.err("purge project "+id, err)
}

func (s *SQLStore) SetHostShared(ctx context.Context, hostID string, shared bool) error {
	// Only this column: a worker writing the whole host row at the same
	// time would otherwise race with it (and it with the worker).
	res, err := s.db.ExecContext(ctx, `UPDATE project_hosts SET shared = $2 WHERE id = $1 AND deleted_at IS NULL`, hostID, shared)
	if err != nil {
		return s.err("set host shared", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &errkind.NotFoundError{Type: "host", Name: hostID}
	}
	return nil
}

func (s *SQLStore) ListAdmins(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM accounts WHERE admin = $1 ORDER BY id`, true)
	if err != nil {
		return nil, s.err("list admins", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.err("list admins", err)
		}
		out = append(out, id)
	}
	return out, s.err("list admins", rows.Err())
}

func (s *SQLStore) SetIdlePolicy(ctx context.Context, hostID string, stopAfterSeconds int64, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO host_idle_policies (host_id, stop_after_s, updated_at) VALUES ($1,$2,$3)
 ON CONFLICT (host_id) DO UPDATE SET stop_after_s = excluded.stop_after_s, updated_at = excluded.updated_at`,
		hostID, stopAfterSeconds, ms(at))
	return s.err("set idle policy", err)
}

func (s *SQLStore) GetIdlePolicy(ctx context.Context, hostID string) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT stop_after_s FROM host_idle_policies WHERE host_id = $1`, hostID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, s.err("get idle policy", err)
}

func (s *SQLStore) ListIdlePolicies(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT host_id, stop_after_s FROM host_idle_policies WHERE stop_after_s > 0`)
	if err != nil {
		return nil, s.err("list idle policies", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var v int64
		if err := rows.Scan(&id, &v); err != nil {
			return nil, s.err("list idle policies", err)
		}
		out[id] = v
	}
	return out, s.err("list idle policies", rows.Err())
}
