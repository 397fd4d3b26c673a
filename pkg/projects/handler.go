package projects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
)

// Handler runs "project.*" jobs from the durable queue. A job's subject
// is its project, so a project's actions run one at a time.
type Handler struct{ S *Service }

var _ queue.Handler = Handler{}

// transitional is the state a project shows while an action runs.
var transitional = map[model.Action]model.ProjectState{
	model.ActionProjectStart:   model.ProjectStarting,
	model.ActionProjectStop:    model.ProjectStopping,
	model.ActionProjectRestart: model.ProjectStarting,
	model.ActionProjectDelete:  model.ProjectDeleting,
}

// classify marks errors for the queue, which retries only transient
// ones: an agent that cannot be reached (or fails inside) may come back,
// while bad input, a missing image or a host that is off stays so.
func classify(h model.Host, err error) error {
	if err == nil {
		return nil
	}
	var known errkind.Kinded
	if errors.As(err, &known) || errors.Is(err, context.Canceled) {
		return err
	}
	var ae *agentapi.Error
	if errors.As(err, &ae) {
		kind := errkind.Invalid
		switch ae.Code {
		case agentapi.CodeInternal:
			if ae.Status >= 500 && ae.Status != 501 {
				kind = errkind.Transient
			}
		case agentapi.CodeNotFound:
			kind = errkind.NotFound
		case agentapi.CodeUnsupported, agentapi.CodeNotRunning:
			kind = errkind.Refused
		case agentapi.CodeStalled:
			kind = errkind.Transient
		}
		return errkind.Errorf(kind, "host %s: %s", h.Name, ae.Message)
	}
	if isConnErr(err) {
		return errkind.Errorf(errkind.Transient, "host %s: %w", h.Name, err)
	}
	return errkind.Errorf(errkind.Invalid, "host %s: %w", h.Name, err)
}

// agentCode is the agent's error code of err, "" for other errors.
func agentCode(err error) string {
	var ae *agentapi.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// isTransfer reports whether action is a move or clone (move.go).
func isTransfer(a model.Action) bool {
	return a == model.ActionProjectMove || a == model.ActionProjectClone
}

// Run performs one attempt of a project job. Every step is idempotent.
func (h Handler) Run(ctx context.Context, job model.Job, progress func(string)) (queue.Result, error) {
	s := h.S
	if isTransfer(job.Action) {
		return s.runMove(ctx, job, progress)
	}
	p, err := s.Store.GetProject(ctx, job.Subject.ID)
	if err != nil {
		return queue.Result{}, fmt.Errorf("%s: %w", job.Action, err)
	}
	var pl payload
	json.Unmarshal(job.Payload, &pl) //nolint:errcheck // written by us
	host, err := s.Store.GetHost(ctx, p.HostID)
	if err != nil {
		return queue.Result{}, err
	}
	client, err := s.client(ctx, host)
	if err != nil {
		// A host that is off stays off until someone starts it: retrying
		// would not help.
		return queue.Result{}, classify(host, err)
	}
	if st, ok := transitional[job.Action]; ok && p.State != st {
		p.State, p.LastAction, p.UpdatedAt = st, string(job.Action), s.Now()
		if err := s.Store.UpdateProject(ctx, p); err != nil {
			return queue.Result{}, err
		}
	}
	start := func() error {
		progress(fmt.Sprintf("starting project %s on %s (image %s, %s memory, %g cpus)", p.ID, host.Name, p.Image, FormatBytes(p.Limits.MemoryBytes), p.Limits.CPUs))
		return s.startOn(ctx, client, host, &p)
	}
	stop := func() error {
		progress(fmt.Sprintf("stopping project %s on %s", p.ID, host.Name))
		if _, err := client.StopProject(ctx, p.ID); err != nil {
			return err
		}
		p.State = model.ProjectStopped
		return nil
	}
	purged := false
	switch job.Action {
	case model.ActionProjectCreate:
		// (No `:=` of err in this case: it would hide the start's error
		// from the check after the switch.)
		info, ierr := client.Image(ctx, p.Image)
		if ierr != nil {
			return queue.Result{}, classify(host, ierr)
		}
		if !info.Present {
			progress(fmt.Sprintf("pulling image %s onto %s", p.Image, host.Name))
			if _, err := client.PullImage(ctx, p.Image); err != nil {
				return queue.Result{}, classify(host, err)
			}
		}
		progress(fmt.Sprintf("making storage for project %s on %s (%s quota)", p.ID, host.Name, FormatBytes(p.Limits.DiskBytes)))
		if _, err := client.CreateProject(ctx, p.ID, agentapi.CreateProjectRequest{DiskBytes: p.Limits.DiskBytes}); err != nil {
			return queue.Result{}, classify(host, err)
		}
		p.State = model.ProjectStopped
		if pl.Start {
			err = start()
		}
	case model.ActionProjectStart:
		err = start()
	case model.ActionProjectStop:
		err = stop()
	case model.ActionProjectRestart:
		if err = stop(); err == nil {
			err = start()
		}
	case model.ActionProjectDelete:
		if err = stop(); err != nil {
			break
		}
		if pl.Purge {
			var br DeleteBackupsResult
			if br, err = s.purgeBackups(ctx, &host, p); err != nil {
				break
			}
			progress(fmt.Sprintf("backups of project %s: %s", p.ID, br))
			progress(fmt.Sprintf("destroying the home, snapshots and scratch of project %s on %s", p.ID, host.Name))
			if err = client.DeleteProject(ctx, p.ID); err == nil {
				err = s.Store.PurgeProject(ctx, p.ID)
				purged = true
			}
			break
		}
		now := s.Now()
		p.State, p.DeletedAt = model.ProjectDeleted, &now
	case model.ActionProjectSnapshot:
		progress(fmt.Sprintf("snapshot %s of project %s", pl.Snapshot, p.ID))
		_, err = client.CreateSnapshot(ctx, p.ID, pl.Snapshot)
		if job.Attempts > 1 && agentCode(err) == agentapi.CodeConflict {
			// The name was free when the job was queued (Snapshot checks),
			// so an earlier attempt, cut short after the snapshot was made
			// (its worker or the agent killed), made it.
			progress(fmt.Sprintf("snapshot %s was made by an earlier attempt", pl.Snapshot))
			err = nil
		}
	case model.ActionProjectRestore:
		what := pl.Path
		if what == "" {
			what = "the whole home"
		}
		progress(fmt.Sprintf("restoring %s of project %s from snapshot %s", what, p.ID, pl.Snapshot))
		var res agentapi.RestoreResult
		res, err = client.Restore(ctx, p.ID, agentapi.RestoreRequest{Snapshot: pl.Snapshot, Path: pl.Path})
		if err == nil {
			progress(fmt.Sprintf("what was there before is in snapshot %s", res.SafetySnapshot))
		}
	default:
		return queue.Result{}, errkind.Errorf(errkind.Invalid, "unknown project action %s", job.Action)
	}
	if err != nil {
		return queue.Result{}, classify(host, err)
	}
	if purged {
		return queue.Result{}, nil
	}
	p.LastAction, p.LastError, p.UpdatedAt = string(job.Action), "", s.Now()
	if err := s.Store.UpdateProject(ctx, p); err != nil {
		return queue.Result{}, err
	}
	return queue.Result{}, nil
}

// Failed records a failed attempt on the project. A create that fails for
// good is undone: its storage on the host (if any was made) and its record
// are removed, so nothing half-made is left.
func (h Handler) Failed(ctx context.Context, job model.Job, err error, final bool) queue.Result {
	s := h.S
	if isTransfer(job.Action) {
		return s.moveFailed(ctx, job, err, final)
	}
	p, gerr := s.Store.GetProject(ctx, job.Subject.ID)
	if gerr != nil {
		return queue.Result{}
	}
	if final && job.Action == model.ActionProjectCreate {
		if derr := s.removeMade(ctx, p); derr != nil {
			// Keep the record: it is how anyone finds what is left, and
			// `project delete --purge` removes it once the host is back.
			p.State, p.LastError, p.UpdatedAt = model.ProjectError,
				fmt.Sprintf("%v; removing what was made also failed: %v", err, derr), s.Now()
			s.Store.UpdateProject(ctx, p) //nolint:errcheck
			return queue.Result{}
		}
		s.Store.PurgeProject(ctx, p.ID) //nolint:errcheck
		return queue.Result{}
	}
	msg := fmt.Sprintf("attempt %d of %d failed, will retry: %v", job.Attempts, job.MaxAttempts, err)
	if final {
		msg = err.Error()
		// What the host says is the truth; without it the state is unknown.
		p.State = model.ProjectError
		if host, herr := s.Store.GetHost(ctx, p.HostID); herr == nil {
			if client, cerr := s.client(ctx, host); cerr == nil {
				if st, serr := client.Project(ctx, p.ID); serr == nil {
					switch st.State {
					case agentapi.ProjectRunning:
						p.State = model.ProjectRunning
					case agentapi.ProjectStopped:
						p.State = model.ProjectStopped
					}
				}
			} else {
				if errkind.Is(cerr, errkind.Refused) && p.State != model.ProjectCreating {
					// The host is off, so the project is not running.
					p.State = model.ProjectStopped
				}
			}
		}
	}
	p.LastAction, p.LastError, p.UpdatedAt = string(job.Action), strings.TrimSpace(msg), s.Now()
	s.Store.UpdateProject(ctx, p) //nolint:errcheck
	return queue.Result{}
}

// removeMade removes from its host whatever a failed create of p made. A
// host that is gone took it along; a host that cannot be asked (off,
// stopping, its agent down) may still hold it, which is an error.
func (s *Service) removeMade(ctx context.Context, p model.Project) error {
	host, err := s.Store.GetHost(ctx, p.HostID)
	if errkind.Is(err, errkind.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if host.DeletedAt != nil || host.Status == model.StatusDeprovisioned {
		return nil
	}
	client, err := s.client(ctx, host)
	if err != nil {
		return err
	}
	return client.DeleteProject(ctx, p.ID)
}
