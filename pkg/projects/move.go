package projects

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/telemetry"
)

// Moves and clones.
//
// A move is a durable job of the project. Pre-copy sends, while the
// project keeps running, the snapshots the destination lacks and a
// transfer snapshot of the live home, again and again while each round
// sends less than the one before. Cut-over stops the project, sends the
// last small incremental, has the destination commit it (the receive
// checked each volume's identity), and switches the placement in one
// transaction; the project starts on the destination if it ran. Every
// step is idempotent and the move's phase is recorded, so a retried job
// resumes where the last attempt stopped. A move that fails for good is
// rolled back: transfer state is dropped on both sides, the placement is
// unchanged, and a project the move stopped is started again.
//
// The bytes go from the source agent straight to the destination agent
// when the source can reach it ("direct", see agentapi/direct.go: a
// one-time credential for this project, move and volume, a certificate
// fingerprint to pin); otherwise, and for the rest of the move once a
// direct attempt failed, through the control plane's connections to both
// ("relayed"). They never touch the database.

// Pre-copy ends when a round sends at most this much, when a round sends
// no less than the one before, or after maxPrecopyRounds.
const (
	precopyDoneBytes = 1 << 20
	maxPrecopyRounds = 5
)

// Paths of a move's data (model.Move.Path).
const (
	PathDirect  = "direct"  // source agent to destination agent
	PathRelayed = "relayed" // through the control plane
)

// directTTL is how long the destination waits for the source to connect.
const directTTL = 2 * time.Minute

// MoveRequest asks for a move.
type MoveRequest struct {
	Project string
	To      string
}

// Move checks that the project can go to the destination and queues the
// move. Nothing is written when a check fails.
func (s *Service) Move(ctx context.Context, c Caller, r MoveRequest) (Submitted, model.Move, error) {
	a, p, from, to, warnings, err := s.checkTransfer(ctx, c, r.Project, r.To, "move")
	if err != nil {
		return Submitted{}, model.Move{}, err
	}
	if to.ID == from.ID {
		return Submitted{}, model.Move{}, invalid("project %s is already on host %s; give another host with --to (see `cocalc-hosts list`)", p.ID, to.Name)
	}
	m := s.newMove(model.MoveKindMove, p, from, to)
	if err := s.Store.PutMove(ctx, m); err != nil {
		return Submitted{}, m, err
	}
	sub, err := s.enqueue(ctx, p, model.ActionProjectMove, payload{MoveID: m.ID, By: a.By})
	if err != nil {
		m.Phase, m.Error = model.MoveFailed, err.Error()
		s.Store.PutMove(context.WithoutCancel(ctx), m) //nolint:errcheck // the error below is what matters
		return Submitted{}, m, err
	}
	if sub.Job != nil && sub.Job.Action == model.ActionProjectMove && !strings.Contains(string(sub.Job.Payload), m.ID) {
		// The same move was already queued: that one goes on.
		m.Phase, m.Error = model.MoveFailed, "superseded by the move already queued"
		s.Store.PutMove(ctx, m) //nolint:errcheck
	}
	sub.Warnings = append(sub.Warnings, warnings...)
	return sub, m, nil
}

func (s *Service) newMove(kind string, p model.Project, from, to model.Host) model.Move {
	now := s.Now()
	m := model.Move{ID: uuid.NewString(), Kind: kind, ProjectID: p.ID, FromHost: from.ID, ToHost: to.ID, FromName: from.Name, ToName: to.Name,
		Phase: model.MovePrecopy, Path: PathDirect, StartedAt: now, UpdatedAt: now}
	if s.RelayMoves {
		m.Path, m.PathNote = PathRelayed, "moves.path is relay"
	}
	return m
}

// checkTransfer finds the project, its host and the destination, and
// refuses a destination the caller may not use, that is off, has no room
// for the project (its usage with snapshots) or lacks its image.
func (s *Service) checkTransfer(ctx context.Context, c Caller, id, toName, what string) (actor, model.Project, model.Host, model.Host, []string, error) {
	fail := func(err error) (actor, model.Project, model.Host, model.Host, []string, error) {
		return actor{}, model.Project{}, model.Host{}, model.Host{}, nil, err
	}
	if toName == "" {
		return fail(invalid("%s needs a destination: give --to HOST (see `cocalc-hosts list`)", what))
	}
	a, err := s.who(ctx, c)
	if err != nil {
		return fail(err)
	}
	p, err := s.live(ctx, a, id)
	if err != nil {
		return fail(err)
	}
	if p.State == model.ProjectCreating {
		return fail(refused("project %s is still being created; wait for it (`cocalc-hosts worker --drain`)", id))
	}
	from, err := s.hostOf(ctx, p, what)
	if err != nil {
		return fail(err)
	}
	to, err := s.liveHost(ctx, toName)
	if err != nil {
		return fail(err)
	}
	if to.Status != model.StatusRunning {
		return fail(refused("cannot %s project %s to host %s: it is %s; start it with `cocalc-hosts start %s`", what, p.ID, to.Name, to.Status, to.Name))
	}
	ok, err := s.mayPlace(ctx, a, to)
	if err != nil {
		return fail(err)
	}
	if !ok {
		return fail(refused("%s may not place projects on host %s (owned by %s): ask its owner to run `cocalc-hosts collaborators add %s %s`, or choose a host you own, collaborate on, or from the shared pool",
			a.ID, to.Name, to.Owner, to.Name, a.ID))
	}
	src, err := s.client(ctx, from)
	if err != nil {
		return fail(err)
	}
	dst, err := s.client(ctx, to)
	if err != nil {
		return fail(err)
	}
	st, err := src.Project(ctx, p.ID)
	if err != nil {
		return fail(hostErr(from, err))
	}
	res, err := dst.Resources(ctx)
	if err != nil {
		return fail(hostErr(to, err))
	}
	var used int64
	if st.Disk != nil {
		used = st.Disk.UsedBytes
	}
	if used > int64(res.Storage.FreeBytes) {
		return fail(refused("host %s has no disk headroom for project %s: it uses %s with its snapshots and %s has %s free; free space there or choose another host",
			to.Name, p.ID, FormatBytes(used), to.Name, FormatBytes(int64(res.Storage.FreeBytes))))
	}
	if p.Limits.DiskBytes > int64(res.Storage.TotalBytes) {
		return fail(invalid("project %s has a %s quota, more than host %s has (%s)", p.ID, FormatBytes(p.Limits.DiskBytes), to.Name, FormatBytes(int64(res.Storage.TotalBytes))))
	}
	info, err := dst.Image(ctx, p.Image)
	if err != nil {
		return fail(hostErr(to, err))
	}
	if !info.Present && localOnly(p.Image) {
		return fail(refused("image %s of project %s is not on host %s and has no registry to pull it from: build it there first with `cocalc-hosts image build %s --host %s`",
			p.Image, p.ID, to.Name, strings.TrimPrefix(p.Image, "localhost/"), to.Name))
	}
	var warnings []string
	srcRes, err := src.Resources(ctx)
	if err != nil {
		return fail(hostErr(from, err))
	}
	if note := plainNote(from.Name, to.Name, srcRes.Snapshots, res.Snapshots); note != "" {
		warnings = append(warnings, note)
	}
	return a, p, from, to, warnings, nil
}

// plainNote says what a move from host from to host to does where either
// keeps projects in a plain directory (not btrfs): "" where both have btrfs.
func plainNote(from, to string, fromBtrfs, toBtrfs bool) string {
	switch {
	case !fromBtrfs && !toBtrfs:
		return fmt.Sprintf("hosts %s and %s keep projects in plain directories: the home is copied with tar and snapshots are not carried", from, to)
	case !fromBtrfs:
		return fmt.Sprintf("host %s keeps projects in a plain directory: the home is copied with tar and snapshots are not carried", from)
	case !toBtrfs:
		return fmt.Sprintf("host %s keeps projects in a plain directory: the home is copied with tar and snapshots are not carried", to)
	}
	return ""
}

// mover carries out one attempt of a move or clone.
type mover struct {
	s        *Service
	m        model.Move
	p        model.Project
	from, to model.Host
	src, dst *agentapi.Client
	// dstID is the project id on the destination (a clone's new id).
	dstID    string
	progress func(string)
	// timing records each step in m.CutoverSteps (during the cut-over).
	timing bool
	// clock and base start the ETA: when this attempt's first volume
	// began, and the move's bytes then.
	clock time.Time
	base  int64
	// stopped is the source's status when pre-copy, just before the
	// cut-over, found the project stopped (nil otherwise).
	stopped *agentapi.ProjectStatus
}

// step runs f as one step of the move, timed in m.CutoverSteps during the
// cut-over.
func (mv *mover) step(name string, f func() error) error {
	if !mv.timing {
		return f()
	}
	t := mv.s.Now()
	err := f()
	mv.m.CutoverSteps = append(mv.m.CutoverSteps, model.MoveStep{Step: name, MS: mv.s.Now().Sub(t).Milliseconds()})
	return err
}

func (mv *mover) save(ctx context.Context) error {
	mv.m.UpdatedAt = mv.s.Now()
	return mv.s.Store.PutMove(ctx, mv.m)
}

// open loads a move and connects to both agents.
func (s *Service) openMove(ctx context.Context, job model.Job, progress func(string)) (*mover, error) {
	var pl payload
	json.Unmarshal(job.Payload, &pl) //nolint:errcheck // written by us
	m, err := s.Store.GetMove(ctx, pl.MoveID)
	if err != nil {
		return nil, err
	}
	mv := &mover{s: s, m: m, dstID: m.ProjectID, progress: progress}
	if m.Kind == model.MoveKindClone {
		mv.dstID = m.CloneID
	}
	if mv.p, err = s.Store.GetProject(ctx, m.ProjectID); err != nil {
		return mv, err
	}
	if mv.from, err = s.Store.GetHost(ctx, m.FromHost); err != nil {
		return mv, err
	}
	if mv.to, err = s.Store.GetHost(ctx, m.ToHost); err != nil {
		return mv, err
	}
	if mv.src, err = s.client(ctx, mv.from); err != nil {
		return mv, classify(mv.from, err)
	}
	if mv.dst, err = s.client(ctx, mv.to); err != nil {
		return mv, classify(mv.to, err)
	}
	return mv, nil
}

// runMove performs one attempt of a move or clone job.
func (s *Service) runMove(ctx context.Context, job model.Job, progress func(string)) (queue.Result, error) {
	mv, err := s.openMove(ctx, job, progress)
	if err != nil {
		return queue.Result{}, err
	}
	switch mv.m.Phase {
	case model.MoveFailed:
		return queue.Result{}, nil
	case model.MoveDone, model.MoveCleaned:
		if mv.m.Kind != model.MoveKindMove || mv.p.HostID != mv.m.ToHost {
			return queue.Result{}, nil
		}
		// An earlier attempt switched the placement and was cut short
		// after it (its worker killed, the start on the destination
		// failed): what follows the switch — the start where the project
		// ran, dropping the source's transfer state, freezing the old
		// copy — is done again (cutover skips to it). The job still holds
		// the project, so no other move of it runs meanwhile.
	}
	if mv.m.Kind == model.MoveKindClone {
		err = mv.clone(ctx)
	} else {
		err = mv.move(ctx)
	}
	if err != nil {
		h := mv.from
		if isDst(err) {
			h = mv.to
		}
		return queue.Result{}, classify(h, err)
	}
	return queue.Result{}, nil
}

// dstErr marks an error of the destination's agent (for naming it).
type dstErr struct{ error }

func (e dstErr) Unwrap() error { return e.error }

func isDst(err error) bool {
	_, ok := err.(dstErr)
	return ok
}

// method decides how the data travels: btrfs when both pools are btrfs.
func (mv *mover) method(ctx context.Context) (srcVols, dstVols agentapi.TransferVolumes, err error) {
	// Both hosts at once: each lists with a command per volume.
	dstDone := make(chan error, 1)
	go func() {
		var err error
		dstVols, err = mv.dst.TransferVolumes(ctx, mv.dstID)
		dstDone <- err
	}()
	srcVols, err = mv.src.TransferVolumes(ctx, mv.p.ID)
	if derr := <-dstDone; err == nil && derr != nil {
		return srcVols, dstVols, dstErr{derr}
	}
	if err != nil {
		return srcVols, dstVols, err
	}
	m := agentapi.TransferTar
	if srcVols.Kind == agentapi.StorageBtrfs && dstVols.Kind == agentapi.StorageBtrfs {
		m = agentapi.TransferBtrfs
	}
	note := ""
	if mv.m.Kind == model.MoveKindMove { // a clone carries no snapshots anyway
		note = plainNote(mv.from.Name, mv.to.Name, srcVols.Kind == agentapi.StorageBtrfs, dstVols.Kind == agentapi.StorageBtrfs)
	}
	if mv.m.Method != m || mv.m.MethodNote != note {
		mv.m.Method, mv.m.MethodNote = m, note
		return srcVols, dstVols, mv.save(ctx)
	}
	return srcVols, dstVols, nil
}

func toStorage(vs []agentapi.TransferVolume) []storage.Volume {
	out := make([]storage.Volume, len(vs))
	for i, v := range vs {
		out[i] = storage.Volume{Name: v.Name, Identity: v.Identity, Transfer: v.Transfer, Staged: v.Staged}
	}
	return out
}

// sendSnapshots sends the snapshots the destination lacks, oldest first,
// and says how many it sent.
func (mv *mover) sendSnapshots(ctx context.Context, srcVols, dstVols agentapi.TransferVolumes) (int, error) {
	byName := map[string]agentapi.TransferVolume{}
	for _, v := range srcVols.Volumes {
		byName[v.Name] = v
	}
	steps := storage.PlanSend(toStorage(srcVols.Volumes), toStorage(dstVols.Volumes))
	for _, step := range steps {
		n, err := mv.transfer(ctx, agentapi.TransferBtrfs, byName[step.Name], step.Parent, "snapshot "+step.Name)
		mv.m.Bytes += n
		if err != nil {
			return 0, err
		}
		if err := mv.save(ctx); err != nil {
			return 0, err
		}
	}
	return len(steps), nil
}

// parent is the newest volume of the source that the destination holds:
// the last transfer snapshot sent, else the newest snapshot ("" if none).
func parent(srcVols, dstVols agentapi.TransferVolumes, lastSent string) string {
	held := map[string]bool{}
	for _, v := range dstVols.Volumes {
		held[v.Identity] = true
	}
	best := ""
	for _, v := range srcVols.Volumes {
		if v.Staged || !held[v.Identity] {
			continue
		}
		if v.Transfer {
			if v.Name == lastSent {
				return v.Name
			}
			continue
		}
		best = v.Name
	}
	return best
}

// sendLive takes a transfer snapshot of the live home and sends it
// against the newest volume both sides hold. It also returns the source's
// snapshots.
func (mv *mover) sendLive(ctx context.Context, tag, what string) (agentapi.TransferVolume, int64, []string, error) {
	var srcVols, dstVols agentapi.TransferVolumes
	err := mv.step("list volumes", func() (err error) {
		srcVols, dstVols, err = mv.method(ctx)
		return err
	})
	if err != nil {
		return agentapi.TransferVolume{}, 0, nil, err
	}
	snaps := []string{}
	for _, v := range srcVols.Volumes {
		if !v.Transfer && !v.Staged {
			snaps = append(snaps, v.Name)
		}
	}
	var sent int
	err = mv.step("send snapshots", func() (err error) {
		sent, err = mv.sendSnapshots(ctx, srcVols, dstVols)
		return err
	})
	if err != nil {
		return agentapi.TransferVolume{}, 0, nil, err
	}
	if sent > 0 {
		// The destination holds more now.
		err = mv.step("list volumes (destination)", func() (err error) {
			if dstVols, err = mv.dst.TransferVolumes(ctx, mv.dstID); err != nil {
				return dstErr{err}
			}
			return nil
		})
		if err != nil {
			return agentapi.TransferVolume{}, 0, nil, err
		}
	}
	from := parent(srcVols, dstVols, mv.m.LastSent)
	var vol agentapi.TransferVolume
	err = mv.step("transfer snapshot", func() (err error) {
		vol, err = mv.src.TransferSnapshot(ctx, mv.p.ID, tag)
		return err
	})
	if err != nil {
		return vol, 0, nil, err
	}
	var n int64
	err = mv.step("send", func() (err error) {
		n, err = mv.transfer(ctx, agentapi.TransferBtrfs, vol, from, what)
		mv.m.Bytes += n
		return err
	})
	if err != nil {
		return vol, n, nil, err
	}
	if old := mv.m.LastSent; old != "" && old != vol.Name && !mv.timing {
		// The new one is there: the previous round's is of no more use.
		// Not during the cut-over, while the project is down: both sides'
		// transfer areas are dropped once it runs again.
		err := mv.step("drop previous transfer snapshot", func() error {
			if err := mv.src.DropTransferVolume(ctx, mv.p.ID, old); err != nil {
				return err
			}
			if err := mv.dst.DropTransferVolume(ctx, mv.dstID, old); err != nil {
				return dstErr{err}
			}
			return nil
		})
		if err != nil {
			return vol, n, nil, err
		}
	}
	mv.m.LastSent = vol.Name
	return vol, n, snaps, mv.step("record", func() error { return mv.save(ctx) })
}

func (mv *mover) move(ctx context.Context) error {
	if mv.m.Phase == model.MovePrecopy {
		if err := mv.precopy(ctx); err != nil {
			return err
		}
		mv.m.Phase = model.MoveCutover
		if err := mv.save(ctx); err != nil {
			return err
		}
	}
	return mv.cutover(ctx)
}

func (mv *mover) precopy(ctx context.Context) error {
	if _, _, err := mv.method(ctx); err != nil {
		return err
	}
	if mv.m.Round == 0 && mv.m.LastSent == "" {
		// A fresh start: what an earlier move left where a host could not
		// be reached to roll it back goes now.
		if err := mv.src.DropTransfer(ctx, mv.p.ID); err != nil {
			return err
		}
		if err := mv.dst.DropTransfer(ctx, mv.dstID); err != nil {
			return dstErr{err}
		}
		st, err := mv.plan(ctx)
		if err != nil {
			return err
		}
		if st.State != agentapi.ProjectRunning {
			// Stopped: the cut-over, which follows at once, sends it all
			// (a project started meanwhile is stopped there first: the
			// job holds the project, so only outside the control plane).
			// It need not ask the source again for what it was just told.
			mv.stopped = &st
			return nil
		}
	}
	if mv.m.Method != agentapi.TransferBtrfs {
		// tar copies the whole home each time: it is copied once, stopped.
		return nil
	}
	var prev int64 = -1
	for mv.m.Round < maxPrecopyRounds {
		mv.m.Round++
		_, n, _, err := mv.sendLive(ctx, fmt.Sprintf("%s-%d", mv.m.ID[:8], mv.m.Round), fmt.Sprintf("pre-copy round %d", mv.m.Round))
		if err != nil {
			return err
		}
		if n <= precopyDoneBytes || (prev >= 0 && n >= prev) {
			break
		}
		prev = n
	}
	return nil
}

// cutover stops the project, sends the rest, commits it on the
// destination and switches the placement.
func (mv *mover) cutover(ctx context.Context) error {
	s := mv.s
	mv.timing = mv.p.HostID != mv.m.ToHost
	defer func() { mv.timing = false }()
	if mv.timing {
		mv.m.CutoverSteps = nil
		var st agentapi.ProjectStatus
		err := mv.step("status", func() (err error) {
			if mv.stopped != nil {
				st = *mv.stopped
				return nil
			}
			st, err = mv.src.Project(ctx, mv.p.ID)
			return err
		})
		if err != nil {
			return err
		}
		// The project runs until it is stopped: the downtime starts here.
		start := s.Now()
		if st.State == agentapi.ProjectRunning {
			mv.m.WasRunning, mv.m.Stopped = true, true
			if err := mv.save(ctx); err != nil {
				return err
			}
			mv.progress(fmt.Sprintf("cut-over: stopping project %s on %s", mv.p.ID, mv.from.Name))
			// Its processes end at once; its container is removed below.
			if err := mv.step("halt", func() error { _, err := mv.src.HaltProject(ctx, mv.p.ID); return err }); err != nil {
				return err
			}
		}
		if err := mv.commit(ctx); err != nil {
			return err
		}
		now := s.Now()
		keep := now.Add(s.KeepSource)
		mv.p.HostID, mv.p.State, mv.p.LastAction, mv.p.LastError, mv.p.UpdatedAt = mv.m.ToHost, model.ProjectStopped, string(model.ActionProjectMove), "", now
		mv.m.Phase, mv.m.FinishedAt, mv.m.KeepUntil, mv.m.UpdatedAt = model.MoveDone, &now, &keep, now
		mv.m.DowntimeMS = now.Sub(start).Milliseconds()
		if err := mv.step("switch placement", func() error { return s.Store.SwitchPlacement(ctx, mv.p, mv.m) }); err != nil {
			return err
		}
		mv.progress(fmt.Sprintf("project %s is on %s now (%s sent, the project was unavailable for %s)",
			mv.p.ID, mv.to.Name, FormatBytes(mv.m.Bytes), time.Duration(mv.m.DowntimeMS)*time.Millisecond))
	}
	// After the switch: the project runs again where it ran (first: the
	// downtime ends there); the old copy is frozen and kept.
	if mv.m.WasRunning {
		err := mv.step("start (destination)", func() error {
			if err := mv.s.startOn(ctx, mv.dst, mv.to, &mv.p); err != nil {
				return dstErr{err}
			}
			mv.p.UpdatedAt = s.Now()
			return s.Store.UpdateProject(ctx, mv.p)
		})
		if err != nil {
			return err
		}
		if d := s.Now().Sub(*mv.m.FinishedAt).Milliseconds(); d > 0 {
			mv.m.DowntimeMS += d
		}
	}
	if err := mv.step("drop transfer (source)", func() error { return mv.src.DropTransfer(ctx, mv.p.ID) }); err != nil {
		return err
	}
	// What the commit was made from (kept out of the downtime).
	err := mv.step("drop transfer (destination)", func() error {
		if err := mv.dst.DropTransfer(ctx, mv.dstID); err != nil {
			return dstErr{err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = mv.step("freeze (source)", func() error {
		if err := mv.src.Freeze(ctx, mv.p.ID, true); err != nil && !agentapi.IsCode(err, agentapi.CodeNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if mv.timing || mv.m.WasRunning {
		if err := mv.save(ctx); err != nil {
			return err
		}
	}
	if s.KeepSource <= 0 {
		return s.queueCleanup(ctx, mv.m)
	}
	return nil
}

// commit sends what changed since pre-copy (the project is stopped) and
// commits it on the destination. A project this move stopped has its
// container removed on the source meanwhile, not before (podman takes
// most of a second, all of it downtime otherwise), and before it starts
// on the destination: hosts that share one podman (local hosts) share
// container names.
func (mv *mover) commit(ctx context.Context) error {
	removed := make(chan error, 1)
	if mv.m.Stopped {
		go func() { _, err := mv.src.StopProject(ctx, mv.p.ID); removed <- err }()
	} else {
		removed <- nil
	}
	err := mv.sendRestAndCommit(ctx)
	rerr := mv.step("remove container (source)", func() error { return <-removed })
	if err != nil {
		return err
	}
	return rerr
}

func (mv *mover) sendRestAndCommit(ctx context.Context) error {
	home, snaps, err := mv.final(ctx)
	if err != nil {
		return err
	}
	mv.progress(fmt.Sprintf("cut-over: committing on %s", mv.to.Name))
	return mv.step("commit", func() error {
		if err := mv.dst.CommitTransfer(ctx, mv.dstID, agentapi.CommitTransferRequest{Home: home, Snapshots: snaps, QuotaBytes: mv.p.Limits.DiskBytes}); err != nil {
			return dstErr{err}
		}
		return nil
	})
}

// final sends what changed since pre-copy (the project is stopped) and
// says what the destination commits: the home's volume and the snapshots.
func (mv *mover) final(ctx context.Context) (string, []string, error) {
	if mv.m.Method == agentapi.TransferBtrfs {
		// The project is stopped: the snapshots listed first are all.
		vol, _, snaps, err := mv.sendLive(ctx, mv.m.ID[:8]+"-final", cutOver)
		return vol.Name, snaps, err
	}
	// tar: from a transfer snapshot where the source has btrfs (the same
	// files: the project is stopped), else from the home itself (named,
	// for a direct transfer's hello).
	srcVols, _, err := mv.method(ctx)
	if err != nil {
		return "", nil, err
	}
	vol := agentapi.TransferVolume{Name: storage.HomeTarName}
	if srcVols.Kind == agentapi.StorageBtrfs {
		if vol, err = mv.src.TransferSnapshot(ctx, mv.p.ID, mv.m.ID[:8]+"-tar"); err != nil {
			return "", nil, err
		}
	}
	n, err := mv.transfer(ctx, agentapi.TransferTar, vol, "", "copying the home with tar (snapshots are not carried)")
	mv.m.Bytes += n
	if err != nil {
		return "", nil, err
	}
	return storage.HomeTarName, nil, mv.save(ctx)
}

// startOn starts p on host h (its record's state follows).
func (s *Service) startOn(ctx context.Context, client *agentapi.Client, h model.Host, p *model.Project) error {
	// The agent checks the memory headroom in one step with the start,
	// against its own size: no round trip to ask for it first.
	req := startRequest(*p, 0)
	req.MemoryOvercommit = s.MemoryOvercommit
	actx, end := telemetry.Start(ctx, "agent start project", attribute.String("host.id", h.ID))
	st, err := client.StartProject(actx, p.ID, req)
	end(err)
	if err != nil {
		return err
	}
	p.State = model.ProjectRunning
	if st.LastActivity != nil {
		t := st.LastActivity.UTC().Truncate(time.Millisecond)
		p.LastActivity = &t
	}
	return nil
}

// cutOver names the last volume a move sends, while the project is down.
const cutOver = "cut-over"

// reporter returns how one volume's progress is reported: what it is and
// its bytes, its rate, and for a move with a planned size the move's bytes
// so far and an ETA; done adds the volume's time. (Once the cut-over's
// volume is sent nothing is left, whatever the plan guessed.)
func (mv *mover) reporter(what, how string) func(n int64, done bool) {
	sent := what + ": %s sent" + how
	start := mv.s.Now()
	if mv.clock.IsZero() {
		mv.clock, mv.base = start, mv.m.Bytes
	}
	return func(n int64, done bool) {
		now := mv.s.Now()
		el := now.Sub(start)
		msg := fmt.Sprintf(sent, FormatBytes(n))
		if done {
			msg += fmt.Sprintf(" in %.1fs", el.Seconds())
		}
		msg += fmt.Sprintf(", %s/s", FormatBytes(int64(float64(n)/max(el.Seconds(), 0.001))))
		if done && what == cutOver {
			msg += "; nothing left to send"
		} else if e, ok := estimate(mv.m.PlannedBytes, mv.m.Bytes+n, mv.base, now.Sub(mv.clock)); ok {
			msg += "; " + e.String()
		}
		mv.progress(msg)
	}
}

// plan records what the move is expected to send: the project's usage
// with snapshots (the ETA counts toward it; a clone sends less).
func (mv *mover) plan(ctx context.Context) (agentapi.ProjectStatus, error) {
	st, err := mv.src.Project(ctx, mv.p.ID)
	if err != nil {
		return st, err
	}
	if st.Disk != nil {
		mv.m.PlannedBytes = st.Disk.UsedBytes
	}
	return st, nil
}

// eta is how far a move is: its bytes so far of the planned, the rate
// since this attempt began, and the time left at that rate.
type eta struct {
	Sent, Planned int64
	Rate          float64 // bytes per second
	Left          time.Duration
}

// estimate says how far a move is that has sent sent of planned bytes,
// base of them before the clock started elapsed ago. ok is false when
// there is nothing to go by (no plan, no time, nothing sent yet).
func estimate(planned, sent, base int64, elapsed time.Duration) (eta, bool) {
	if planned <= 0 || elapsed <= 0 || sent <= base {
		return eta{}, false
	}
	e := eta{Sent: sent, Planned: planned, Rate: float64(sent-base) / elapsed.Seconds()}
	if rest := planned - sent; rest > 0 {
		e.Left = time.Duration(float64(rest) / e.Rate * float64(time.Second)).Round(time.Second)
	}
	return e, true
}

func (e eta) String() string {
	if e.Sent >= e.Planned {
		return fmt.Sprintf("the move has sent %s (planned %s), finishing", FormatBytes(e.Sent), FormatBytes(e.Planned))
	}
	return fmt.Sprintf("the move has sent %s of %s, about %s left", FormatBytes(e.Sent), FormatBytes(e.Planned), e.Left)
}

// progressReader reports the bytes read, at most once a second.
type progressReader struct {
	r      io.Reader
	n      int64
	last   time.Time
	now    func() time.Time
	report func(n int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if t := p.now(); t.Sub(p.last) >= time.Second {
		p.last = t
		p.report(p.n)
	}
	return n, err
}

// WriteTo hands the relayed stream on in reads of up to 1 MiB: the HTTP
// request to the destination sends each as one chunk (io.Copy's 32 KiB
// would cost a chunk and a system call each).
func (p *progressReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := p.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// transfer sends one volume directly while the move's path is direct,
// else relays it; a direct attempt that sent nothing switches the move to
// relayed (for good, with the reason) and relays.
func (mv *mover) transfer(ctx context.Context, method string, vol agentapi.TransferVolume, parent, what string) (int64, error) {
	if mv.m.Path == PathDirect {
		n, err := mv.direct(ctx, method, vol, parent, what)
		if err == nil || !errors.Is(err, errRelay) {
			return n, err
		}
		mv.m.Path, mv.m.PathNote = PathRelayed, strings.TrimPrefix(err.Error(), errRelay.Error()+": ")
		mv.progress("relaying instead of sending directly: " + mv.m.PathNote)
		if err := mv.save(ctx); err != nil {
			return 0, err
		}
	}
	return mv.relay(ctx, method, vol, parent, what)
}

// errRelay marks a direct attempt that sent nothing.
var errRelay = errors.New("relay")

// directAddr is the destination's address as the source reaches it: the
// loopback between two hosts on this machine, the private address within
// one provider's region, else the public one ("" if none: relay).
func directAddr(from, to model.Host) string {
	switch {
	case from.Provider == "local" && to.Provider == "local":
		return "127.0.0.1"
	case to.Provider == "local":
		return "" // this machine's loopback is not the source's
	case from.Provider == to.Provider && from.Region == to.Region && from.Runtime.PrivateIP != "" && to.Runtime.PrivateIP != "":
		return to.Runtime.PrivateIP
	}
	return to.Runtime.PublicIP
}

// direct has the destination expect the volume and the source push it.
func (mv *mover) direct(ctx context.Context, method string, vol agentapi.TransferVolume, parent, what string) (int64, error) {
	addr := directAddr(mv.from, mv.to)
	if addr == "" {
		return 0, fmt.Errorf("%w: host %s has no address host %s can reach", errRelay, mv.to.Name, mv.from.Name)
	}
	secret := make([]byte, agentapi.CredentialBytes)
	if _, err := rand.Read(secret); err != nil {
		return 0, fmt.Errorf("transfer credential: %w", err)
	}
	cred := base64.StdEncoding.EncodeToString(secret)
	exp, err := mv.dst.Expect(ctx, mv.dstID, agentapi.ExpectRequest{Move: mv.m.ID, Method: method, Volume: vol, Credential: cred, TTLSeconds: int(directTTL / time.Second), Address: addr})
	if err != nil {
		return 0, fmt.Errorf("%w: host %s cannot expect a direct transfer: %v", errRelay, mv.to.Name, err)
	}
	report := mv.reporter(what, " directly")
	res, err := mv.src.Push(ctx, mv.p.ID, agentapi.PushRequest{
		SendRequest: agentapi.SendRequest{Method: method, Name: vol.Name, Parent: parent},
		Addr:        net.JoinHostPort(addr, strconv.Itoa(exp.Port)), Fingerprint: exp.Fingerprint,
		Hello: agentapi.DirectHello{Project: mv.dstID, Move: mv.m.ID, Volume: vol.Name, Credential: cred},
	}, func(n int64) { report(n, false) })
	if agentapi.IsCode(err, agentapi.CodeUnreachable) {
		return 0, fmt.Errorf("%w: %v", errRelay, err)
	}
	if err != nil {
		return res.Bytes, err
	}
	report(res.Bytes, true)
	return res.Bytes, nil
}

// relay streams one volume from the source agent to the destination
// agent and returns the bytes that crossed. An error on either side
// cancels both.
func (mv *mover) relay(ctx context.Context, method string, vol agentapi.TransferVolume, parent, what string) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, check, err := mv.src.Send(ctx, mv.p.ID, agentapi.SendRequest{Method: method, Name: vol.Name, Parent: parent})
	if err != nil {
		return 0, err
	}
	defer body.Close()
	report := mv.reporter(what, "")
	pr := &progressReader{r: body, now: mv.s.Now, last: mv.s.Now(), report: func(n int64) { report(n, false) }}
	res, err := mv.dst.Receive(ctx, mv.dstID, method, vol, pr)
	if err != nil {
		return pr.n, dstErr{err}
	}
	// The trailer, where the source reports a late error, follows the body.
	io.Copy(io.Discard, body) //nolint:errcheck
	if err := check(); err != nil {
		return pr.n, err
	}
	report(res.Bytes, true)
	return res.Bytes, nil
}

// moveFailed records a failed attempt; a move that failed for good is
// rolled back (see the package comment above).
func (s *Service) moveFailed(ctx context.Context, job model.Job, err error, final bool) queue.Result {
	var pl payload
	json.Unmarshal(job.Payload, &pl) //nolint:errcheck // written by us
	m, gerr := s.Store.GetMove(ctx, pl.MoveID)
	if gerr != nil {
		return queue.Result{}
	}
	if !final {
		// Kept when a later attempt succeeds: the record says what went
		// wrong on the way (so no "will retry" in it).
		m.Error = fmt.Sprintf("attempt %d of %d failed: %v", job.Attempts, job.MaxAttempts, err)
		m.UpdatedAt = s.Now()
		s.Store.PutMove(ctx, m) //nolint:errcheck
		return queue.Result{}
	}
	m.Error = err.Error()
	s.rollback(ctx, &m)
	return queue.Result{}
}

// rollback undoes a move or clone that did not take effect; one that did
// (the placement switched) stays done.
func (s *Service) rollback(ctx context.Context, m *model.Move) {
	p, perr := s.Store.GetProject(ctx, m.ProjectID)
	if m.Kind == model.MoveKindMove && perr == nil && p.HostID == m.ToHost {
		return
	}
	var problems []string
	note := func(err error) {
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if from, err := s.Store.GetHost(ctx, m.FromHost); err == nil {
		if src, err := s.client(ctx, from); err == nil {
			if m.Kind == model.MoveKindClone {
				note(src.DropTransferVolume(ctx, m.ProjectID, storage.TransferPrefix+m.ID[:8]+"-clone"))
			} else {
				note(src.DropTransfer(ctx, m.ProjectID))
				if m.Stopped && perr == nil {
					note(s.startOn(ctx, src, from, &p))
					if p.State == model.ProjectRunning {
						p.UpdatedAt = s.Now()
						note(s.Store.UpdateProject(ctx, p))
					}
				}
			}
		} else {
			note(err)
		}
	}
	dstID := m.ProjectID
	if m.Kind == model.MoveKindClone {
		dstID = m.CloneID
	}
	if to, err := s.Store.GetHost(ctx, m.ToHost); err == nil {
		if dst, err := s.client(ctx, to); err == nil {
			note(dst.DropTransfer(ctx, dstID))
			if m.Kind == model.MoveKindClone {
				note(dst.DeleteProject(ctx, dstID))
			}
		} else {
			note(err)
		}
	}
	if m.Kind == model.MoveKindClone {
		note(s.Store.PurgeProject(ctx, m.CloneID))
	}
	m.Phase = model.MoveFailed
	if len(problems) > 0 {
		m.Error += "; rolling back also met: " + strings.Join(problems, "; ")
	}
	now := s.Now()
	m.FinishedAt, m.UpdatedAt = &now, now
	s.Store.PutMove(ctx, *m) //nolint:errcheck
}

// CleanupDueMoves queues deleting the old copies that have been kept for
// moves.keep_source (a worker duty; the jobs are not queued ahead of time,
// since a job waiting a day would keep `worker --drain` waiting too). It
// returns how many it queued.
func (s *Service) CleanupDueMoves(ctx context.Context) (int, error) {
	due, err := s.Store.DueMoves(ctx, s.Now())
	if err != nil {
		return 0, err
	}
	for i, m := range due {
		if err := s.queueCleanup(ctx, m); err != nil {
			return i, err
		}
	}
	return len(due), nil
}

// queueCleanup queues deleting a done move's old copy now.
func (s *Service) queueCleanup(ctx context.Context, m model.Move) error {
	now := s.Now()
	b, _ := json.Marshal(payload{MoveID: m.ID})
	_, _, err := s.Store.EnqueueJob(ctx, model.Job{
		ID: uuid.NewString(), Subject: model.Subject{Kind: model.SubjectMove, ID: m.ID}, Action: model.ActionMoveCleanup,
		Payload: b, MaxAttempts: s.MaxAttempts, RunAfter: now, CreatedAt: now,
	})
	var busy *store.BusyError
	if errors.As(err, &busy) {
		return nil // queued already
	}
	return err
}

// MoveCleanupHandler runs "move.*" jobs: deleting a move's old copy.
type MoveCleanupHandler struct{ S *Service }

var _ queue.Handler = MoveCleanupHandler{}

func (h MoveCleanupHandler) Run(ctx context.Context, job model.Job, progress func(string)) (queue.Result, error) {
	var pl payload
	json.Unmarshal(job.Payload, &pl) //nolint:errcheck // written by us
	m, err := h.S.Store.GetMove(ctx, pl.MoveID)
	if err != nil {
		return queue.Result{}, err
	}
	_, err = h.S.cleanup(ctx, m, progress)
	return queue.Result{}, err
}

func (h MoveCleanupHandler) Failed(context.Context, model.Job, error, bool) queue.Result {
	return queue.Result{}
}

// cleanup deletes the copy a done move left on its old host, unless the
// project has come back there since.
func (s *Service) cleanup(ctx context.Context, m model.Move, progress func(string)) (model.Move, error) {
	if m.Phase != model.MoveDone || m.Kind != model.MoveKindMove {
		return m, nil
	}
	p, err := s.Store.GetProject(ctx, m.ProjectID)
	if err != nil && !errkind.Is(err, errkind.NotFound) {
		return m, err
	}
	if err == nil && p.HostID != m.FromHost {
		from, err := s.Store.GetHost(ctx, m.FromHost)
		if err != nil {
			return m, err
		}
		if from.DeletedAt == nil && from.Status != model.StatusDeprovisioned {
			src, err := s.client(ctx, from)
			if err != nil {
				return m, classify(from, err)
			}
			progress(fmt.Sprintf("deleting the old copy of project %s on %s", m.ProjectID, from.Name))
			if err := src.DeleteProject(ctx, m.ProjectID); err != nil {
				return m, classify(from, err)
			}
		}
	}
	m.Phase, m.UpdatedAt = model.MoveCleaned, s.Now()
	return m, s.Store.PutMove(ctx, m)
}

// CleanupMove deletes now the old copy of project id's last move, instead
// of when moves.keep_source has passed.
func (s *Service) CleanupMove(ctx context.Context, c Caller, id string, progress func(string)) (model.Move, error) {
	_, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return model.Move{}, err
	}
	moves, err := s.Store.ListMoves(ctx, p.ID)
	if err != nil {
		return model.Move{}, err
	}
	for _, m := range moves {
		if m.Kind == model.MoveKindMove && m.Phase == model.MoveDone {
			return s.cleanup(ctx, m, progress)
		}
	}
	return model.Move{}, errkind.Errorf(errkind.NotFound, "project %s has no move whose old copy is still kept (see `cocalc-hosts project show %s`)", p.ID, p.ID)
}

// LastMove returns project id's newest move or clone, if any.
func (s *Service) LastMove(ctx context.Context, id string) (*model.Move, error) {
	moves, err := s.Store.ListMoves(ctx, id)
	if err != nil || len(moves) == 0 {
		return nil, err
	}
	return &moves[0], nil
}
