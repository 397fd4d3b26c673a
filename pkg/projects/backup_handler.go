package projects

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
)

// BackupHandler runs "backup.*" jobs. Their subject is the project, so
// they take turns with its other actions.
type BackupHandler struct{ S *Service }

var _ queue.Handler = BackupHandler{}

// Run performs one attempt of a backup job. Every step can be repeated:
// a backup again makes another backup; a restore writes the same files.
func (h BackupHandler) Run(ctx context.Context, job model.Job, progress func(string)) (queue.Result, error) {
	s := h.S
	p, err := s.Store.GetProject(ctx, job.Subject.ID)
	if err != nil {
		return queue.Result{}, fmt.Errorf("%s: %w", job.Action, err)
	}
	var pl payload
	json.Unmarshal(job.Payload, &pl) //nolint:errcheck // written by us
	switch job.Action {
	case model.ActionBackupCreate:
		err = h.backup(ctx, p, pl, progress)
	case model.ActionBackupRestore:
		if pl.ToHost != "" && pl.ToHost != p.HostID {
			p, err = h.restoreOnto(ctx, p, pl, progress)
		} else {
			err = h.restore(ctx, p, pl, progress)
		}
	default:
		return queue.Result{}, errkind.Errorf(errkind.Invalid, "unknown backup action %s", job.Action)
	}
	if err != nil {
		return queue.Result{}, err
	}
	p.LastAction, p.LastError, p.UpdatedAt = string(job.Action), "", s.Now()
	return queue.Result{}, s.Store.UpdateProject(ctx, p)
}

// Failed records a failed attempt on the project as its other actions do.
func (h BackupHandler) Failed(ctx context.Context, job model.Job, err error, final bool) queue.Result {
	return Handler(h).Failed(ctx, job, err, final)
}

// on returns project p's host and a client for its agent.
func (h BackupHandler) on(ctx context.Context, hostID string) (model.Host, *agentapi.Client, error) {
	host, err := h.S.Store.GetHost(ctx, hostID)
	if err != nil {
		return host, nil, err
	}
	client, err := h.S.client(ctx, host)
	return host, client, classify(host, err)
}

func (h BackupHandler) backup(ctx context.Context, p model.Project, pl payload, progress func(string)) error {
	s := h.S
	host, client, err := h.on(ctx, p.HostID)
	if err != nil {
		return err
	}
	progress(fmt.Sprintf("backing up project %s on %s", p.ID, host.Name))
	res, err := withBackupConfig(ctx, s, client, host, p, func(v int64) (agentapi.BackupResult, error) { return client.CreateBackup(ctx, p.ID, v) })
	if err != nil {
		return classify(host, err)
	}
	rec := model.BackupRecord{ProjectID: p.ID, ID: res.ID, ShortID: res.ShortID, HostID: host.ID, Time: res.Time,
		Files: res.Files, Bytes: res.Bytes, BytesAdded: res.BytesAdded}
	if err := s.Store.RecordBackups(ctx, p.ID, []model.BackupRecord{rec}, nil); err != nil {
		return err
	}
	from := "a read-only snapshot of the home"
	if !res.FromSnapshot {
		from = "the live home (a plain-directory pool has no snapshots)"
	}
	progress(fmt.Sprintf("backup %s of project %s: %d files, %s, %s new, from %s", res.ShortID, p.ID, res.Files,
		FormatBytes(res.Bytes), FormatBytes(res.BytesAdded), from))
	if !pl.Scheduled || s.Backup.Keep == (agentapi.BackupForgetRequest{}) {
		return nil
	}
	fr, err := withBackupConfig(ctx, s, client, host, p, func(v int64) (agentapi.BackupForgetResult, error) {
		return client.ForgetBackups(ctx, p.ID, v, s.Backup.Keep)
	})
	if err != nil {
		return classify(host, err)
	}
	if fr.Removed > 0 {
		progress(fmt.Sprintf("retention removed %d old backup(s) of project %s; %d kept", fr.Removed, p.ID, fr.Kept))
	}
	_, err = s.syncBackups(ctx, host, p)
	return err
}

func (h BackupHandler) restore(ctx context.Context, p model.Project, pl payload, progress func(string)) error {
	s := h.S
	host, client, err := h.on(ctx, p.HostID)
	if err != nil {
		return err
	}
	what := "the home"
	switch {
	case pl.Path != "" && pl.ToScratch:
		what = pl.Path + " into /scratch"
	case pl.Path != "":
		what = pl.Path
	case pl.ToScratch:
		what = "the home into /scratch"
	}
	progress(fmt.Sprintf("restoring %s of project %s from backup %s", what, p.ID, short(pl.Snapshot)))
	res, err := withBackupConfig(ctx, s, client, host, p, func(v int64) (agentapi.BackupRestoreResult, error) {
		return client.RestoreBackup(ctx, p.ID, v, agentapi.BackupRestoreRequest{Backup: pl.Snapshot, Path: pl.Path, ToScratch: pl.ToScratch})
	})
	if err != nil {
		return classify(host, err)
	}
	progress(fmt.Sprintf("restored backup %s to %s", short(res.Backup), res.Where))
	if res.SafetySnapshot != "" {
		progress(fmt.Sprintf("what was there before is in snapshot %s", res.SafetySnapshot))
	}
	return nil
}

// restoreOnto makes project p on host pl.ToHost from backup pl.Snapshot,
// then moves p there and marks its copy on its old host stale, in one
// transaction. A failed restore removes what it made on the new host, and
// the project stays where it was.
func (h BackupHandler) restoreOnto(ctx context.Context, p model.Project, pl payload, progress func(string)) (model.Project, error) {
	s := h.S
	target, client, err := h.on(ctx, pl.ToHost)
	if err != nil {
		return p, err
	}
	progress(fmt.Sprintf("making storage for project %s on %s (%s quota)", p.ID, target.Name, FormatBytes(p.Limits.DiskBytes)))
	if _, err := client.CreateProject(ctx, p.ID, agentapi.CreateProjectRequest{DiskBytes: p.Limits.DiskBytes}); err != nil && !agentapi.IsCode(err, agentapi.CodeConflict) {
		return p, classify(target, err)
	}
	progress(fmt.Sprintf("restoring project %s on %s from backup %s", p.ID, target.Name, short(pl.Snapshot)))
	_, err = withBackupConfig(ctx, s, client, target, p, func(v int64) (agentapi.BackupRestoreResult, error) {
		return client.RestoreBackup(ctx, p.ID, v, agentapi.BackupRestoreRequest{Backup: pl.Snapshot})
	})
	if err != nil {
		if derr := client.DeleteProject(context.WithoutCancel(ctx), p.ID); derr != nil {
			return p, classify(target, fmt.Errorf("%w; removing the half-restored copy on %s also failed: %v", err, target.Name, derr))
		}
		return p, classify(target, err)
	}
	old := p.HostID
	oldName := old
	if oh, err := s.Store.GetHost(ctx, old); err == nil {
		oldName = oh.Name
	}
	p.HostID, p.State, p.LastAction, p.LastError, p.UpdatedAt = target.ID, model.ProjectStopped, string(model.ActionBackupRestore), "", s.Now()
	if err := s.Store.MoveProjectToHost(ctx, p, old, s.Now()); err != nil {
		return p, err
	}
	progress(fmt.Sprintf("project %s is now on %s (stopped); its copy on %s is marked stale", p.ID, target.Name, oldName))
	return p, nil
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
