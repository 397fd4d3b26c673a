package projects

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// CloneRequest asks for a copy of a project under a new id.
type CloneRequest struct {
	Project string
	To      string
	// Title of the copy; default "copy of <title>".
	Title string
}

// Clone checks the destination as a move does, records the new project
// (owned by the caller, with the source's image and limits) and queues
// copying the source's current files into it: no snapshots, and the
// source untouched. The new project is stopped when done.
func (s *Service) Clone(ctx context.Context, c Caller, r CloneRequest) (Submitted, model.Move, error) {
	a, p, from, to, warnings, err := s.checkTransfer(ctx, c, r.Project, r.To, "clone")
	if err != nil {
		return Submitted{}, model.Move{}, err
	}
	title := r.Title
	if title == "" {
		title = "copy of " + orDash(p.Title)
	}
	if len(title) > 200 {
		return Submitted{}, model.Move{}, invalid("--name must be at most 200 characters")
	}
	dst, err := s.client(ctx, to)
	if err != nil {
		return Submitted{}, model.Move{}, err
	}
	now := s.Now()
	cp := model.Project{
		ID: uuid.NewString(), Title: title, Owner: a.ID, HostID: to.ID, Image: p.Image, Limits: p.Limits,
		IdleTimeoutSeconds: p.IdleTimeoutSeconds, State: model.ProjectCreating,
		LastAction: string(model.ActionProjectClone), CreatedAt: now, UpdatedAt: now,
	}
	hc, err := s.checkHeadroom(ctx, dst, to, cp, true)
	if err != nil {
		return Submitted{}, model.Move{}, err
	}
	m := s.newMove(model.MoveKindClone, p, from, to)
	m.CloneID = cp.ID
	// The copy, its move and its job commit together or not at all.
	var noRoom *store.NoRoomError
	job, err := s.Store.CreateProjectWithin(ctx, store.NewProject{Project: cp, DiskCap: hc.disk, Move: &m,
		Job: s.newJob(cp, model.ActionProjectClone, payload{MoveID: m.ID, By: a.By})})
	if errors.As(err, &noRoom) {
		return Submitted{}, model.Move{}, noDiskRoom(to, noRoom, cp.Limits.DiskBytes)
	} else if err != nil {
		return Submitted{}, model.Move{}, err
	}
	return Submitted{Project: cp, Job: &job, Warnings: warnings}, m, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clone copies the source's live home into the new project.
func (mv *mover) clone(ctx context.Context) error {
	s := mv.s
	srcVols, _, err := mv.method(ctx)
	if err != nil {
		return err
	}
	var vol agentapi.TransferVolume
	if srcVols.Kind == agentapi.StorageBtrfs {
		if vol, err = mv.src.TransferSnapshot(ctx, mv.p.ID, mv.m.ID[:8]+"-clone"); err != nil {
			return err
		}
	}
	if _, err := mv.plan(ctx); err != nil {
		return err
	}
	home := vol.Name
	if mv.m.Method == agentapi.TransferTar {
		home = storage.HomeTarName
	}
	n, err := mv.relay(ctx, mv.m.Method, vol, "", fmt.Sprintf("copying project %s", mv.p.ID))
	mv.m.Bytes = n
	if err != nil {
		return err
	}
	cp, err := s.Store.GetProject(ctx, mv.dstID)
	if err != nil {
		return err
	}
	if err := mv.dst.CommitTransfer(ctx, mv.dstID, agentapi.CommitTransferRequest{Home: home, Snapshots: []string{}, QuotaBytes: cp.Limits.DiskBytes}); err != nil {
		return dstErr{err}
	}
	if err := mv.dst.DropTransfer(ctx, mv.dstID); err != nil {
		return dstErr{err}
	}
	if vol.Name != "" {
		if err := mv.src.DropTransferVolume(ctx, mv.p.ID, vol.Name); err != nil {
			return err
		}
	}
	now := s.Now()
	cp.State, cp.LastAction, cp.LastError, cp.UpdatedAt = model.ProjectStopped, string(model.ActionProjectClone), "", now
	if err := s.Store.UpdateProject(ctx, cp); err != nil {
		return err
	}
	mv.m.Phase, mv.m.FinishedAt = model.MoveDone, &now
	mv.progress(fmt.Sprintf("project %s is a copy of %s on %s (%s sent)", cp.ID, mv.p.ID, mv.to.Name, FormatBytes(n)))
	return mv.save(ctx)
}
