package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// MoveStore keeps moves and clones of projects (moves.go).
type MoveStore interface {
	// PutMove records m (made or updated).
	PutMove(ctx context.Context, m model.Move) error
	// GetMove returns a move, or an errkind.NotFound error.
	GetMove(ctx context.Context, id string) (model.Move, error)
	// ListMoves returns the moves of a project (a clone counts for its
	// source), newest first.
	ListMoves(ctx context.Context, projectID string) ([]model.Move, error)
	// DueMoves returns the done moves whose old copy is due for deletion.
	DueMoves(ctx context.Context, now time.Time) ([]model.Move, error)
	// SwitchPlacement puts project p on its new host and records m in
	// one transaction: the moment a move takes effect.
	SwitchPlacement(ctx context.Context, p model.Project, m model.Move) error
}

const putMoveSQL = `INSERT INTO project_moves (id, project_id, state, created_at, updated_at, due_at) VALUES ($1,$2,$3,$4,$5,$6)
 ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, due_at = excluded.due_at`

func putMoveArgs(m model.Move) []any {
	var due *time.Time
	if m.Phase == model.MoveDone && m.Kind == model.MoveKindMove {
		due = m.KeepUntil
	}
	return []any{m.ID, m.ProjectID, mustJSON(m), ms(m.StartedAt), ms(m.UpdatedAt), toNullMS(due)}
}

func (s *SQLStore) DueMoves(ctx context.Context, now time.Time) ([]model.Move, error) {
	return s.moves(ctx, "due moves", `SELECT state FROM project_moves WHERE due_at <= $1 ORDER BY due_at, id`, ms(now))
}

func (s *SQLStore) PutMove(ctx context.Context, m model.Move) error {
	_, err := s.db.ExecContext(ctx, putMoveSQL, putMoveArgs(m)...)
	return s.err("record move "+m.ID, err)
}

func (s *SQLStore) GetMove(ctx context.Context, id string) (model.Move, error) {
	var state string
	err := s.db.QueryRowContext(ctx, `SELECT state FROM project_moves WHERE id = $1`, id).Scan(&state)
	if err == sql.ErrNoRows {
		return model.Move{}, errkind.Errorf(errkind.NotFound, "no move %s", id)
	}
	if err != nil {
		return model.Move{}, s.err("get move "+id, err)
	}
	var m model.Move
	if err := json.Unmarshal([]byte(state), &m); err != nil {
		return m, fmt.Errorf("move %s: %w", id, err)
	}
	return m, nil
}

func (s *SQLStore) ListMoves(ctx context.Context, projectID string) ([]model.Move, error) {
	return s.moves(ctx, "list moves", `SELECT state FROM project_moves WHERE project_id = $1 ORDER BY created_at DESC, id`, projectID)
}

func (s *SQLStore) moves(ctx context.Context, op, query string, args ...any) ([]model.Move, error) {
	out := []model.Move{}
	err := s.each(ctx, op, func(r *sql.Rows) error {
		var state string
		if err := r.Scan(&state); err != nil {
			return err
		}
		var m model.Move
		if err := json.Unmarshal([]byte(state), &m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	}, query, args...)
	return out, err
}

func (s *SQLStore) SwitchPlacement(ctx context.Context, p model.Project, m model.Move) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.err("switch placement", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	res, err := tx.ExecContext(ctx, updateProjectSQL, updateProjectArgs(p)...)
	if err != nil {
		return s.err("switch placement of project "+p.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "project %s no longer exists", p.ID)
	}
	if _, err := tx.ExecContext(ctx, putMoveSQL, putMoveArgs(m)...); err != nil {
		return s.err("switch placement: record move "+m.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return s.err("switch placement of project "+p.ID, err)
	}
	return nil
}
