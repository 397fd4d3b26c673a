package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/runcmd"
)

// Moving a project between pools.
//
// On btrfs a project travels as read-only subvolumes with btrfs send and
// receive, so its snapshots travel with it and a later move only sends
// what changed. Every snapshot has an identity that is the same on every
// pool it reached: its received UUID where it was received, else its own
// UUID. The destination says which identities it holds; the source sends
// the missing snapshots oldest first, each incremental against its
// predecessor, then a transfer snapshot of the live home (repeatedly while
// the project runs, each against the one before).
//
// Layout under the pool, next to projects/, snapshots/ and scratch/:
//
//	transfer/<id>/out/<name>   transfer snapshots of the live home (source)
//	transfer/<id>/in/<name>    received, not yet committed (destination)
//
// Nothing outside transfer/<id> changes until Commit, so a transfer that
// stops at any point is undone by DropTransfer on both sides.

// TransferPrefix starts the names of transfer snapshots of the live home;
// snapshot names cannot start with it, so they never collide.
const TransferPrefix = ".xfer-"

// HomeTarName is what a home sent as a tar archive is called in staging.
const HomeTarName = ".home-tar"

// Volume is a read-only subvolume a transfer deals with: a snapshot, a
// transfer snapshot, or one received into staging.
type Volume struct {
	Name string `json:"name"`
	// Identity is the same for a snapshot and every copy received from it.
	Identity  string    `json:"identity"`
	CreatedAt time.Time `json:"created_at"`
	// Transfer marks a transfer snapshot of the live home (sending side);
	// Staged a volume received but not yet committed.
	Transfer bool `json:"transfer,omitempty"`
	Staged   bool `json:"staged,omitempty"`
}

// Step is one send: Name, incremental against Parent ("" for a full send).
type Step struct {
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"`
}

func (m *Manager) transferDir(id string) string { return filepath.Join(m.pool, "transfer", id) }
func (m *Manager) outDir(id string) string      { return filepath.Join(m.transferDir(id), "out") }
func (m *Manager) inDir(id string) string       { return filepath.Join(m.transferDir(id), "in") }

// committedDir holds what a commit was made from until DropTransfer.
func (m *Manager) committedDir(id string) string {
	return filepath.Join(m.transferDir(id), "committed")
}

// volumePath is where the named volume of project id is on the sending
// side: a transfer snapshot or a snapshot.
func (m *Manager) volumePath(id, name string) (string, error) {
	if strings.HasPrefix(name, TransferPrefix) {
		if err := CheckSnapshotName(strings.TrimPrefix(name, TransferPrefix)); err != nil {
			return "", err
		}
		return filepath.Join(m.outDir(id), name), nil
	}
	if err := CheckSnapshotName(name); err != nil {
		return "", err
	}
	return filepath.Join(m.SnapshotDir(id), name), nil
}

// Volumes lists project id's snapshots (oldest first), then its transfer
// snapshots and what is staged for it, with their identities: what the other side of a transfer needs
// to know. A pool without the project (or a plain directory) holds none.
func (m *Manager) Volumes(ctx context.Context, id string) ([]Volume, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	out := []Volume{}
	if !m.btrfs() {
		return out, nil
	}
	snaps, err := m.snapshotVolumes(id)
	if err != nil {
		return nil, fmt.Errorf("snapshots of project %s: %w", id, err)
	}
	for _, p := range snaps {
		v, err := m.volumeInfo(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("snapshots of project %s: %w", id, err)
		}
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Name < out[j].Name
	})
	for _, dir := range []string{m.outDir(id), m.inDir(id)} {
		vols, err := subdirs(dir)
		if err != nil {
			return nil, fmt.Errorf("transfer volumes of project %s: %w", id, err)
		}
		for _, p := range vols {
			v, err := m.volumeInfo(ctx, p)
			if err != nil {
				return nil, fmt.Errorf("transfer volumes of project %s: %w", id, err)
			}
			if v.Identity == "" {
				continue // half received: not held
			}
			v.Transfer, v.Staged = dir == m.outDir(id), dir == m.inDir(id)
			out = append(out, v)
		}
	}
	return out, nil
}

func subdirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// volumeInfo reads a subvolume's identity. A staged subvolume that is not
// read-only or has no received UUID was not received completely; its
// identity is "".
func (m *Manager) volumeInfo(ctx context.Context, path string) (Volume, error) {
	out, err := runcmd.Output(ctx, "btrfs", "subvolume", "show", path)
	if err != nil {
		return Volume{}, err
	}
	v := Volume{Name: filepath.Base(path)}
	var uuid, received string
	readonly := false
	for _, line := range strings.Split(out, "\n") {
		k, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(k) {
		case "UUID":
			uuid = val
		case "Received UUID":
			if val != "-" {
				received = val
			}
		case "Flags":
			readonly = strings.Contains(val, "readonly")
		case "Creation time":
			t, err := time.Parse("2006-01-02 15:04:05 -0700", val)
			if err != nil {
				return Volume{}, fmt.Errorf("btrfs subvolume show %s: creation time %q: %w", path, val, err)
			}
			v.CreatedAt = t.UTC()
		}
	}
	switch {
	case !readonly:
	case received != "":
		v.Identity = received
	case !strings.HasPrefix(path, m.pool+"/transfer/") || strings.Contains(path, "/out/"):
		v.Identity = uuid
	}
	return v, nil
}

// PlanSend returns the sends that give a destination holding held what
// src (the source's volumes; only its snapshots count) has: each missing snapshot,
// incremental against its predecessor.
func PlanSend(src, held []Volume) []Step {
	have := map[string]bool{}
	for _, v := range held {
		have[v.Identity] = true
	}
	var snaps []Volume
	for _, v := range src {
		if !v.Transfer && !v.Staged {
			snaps = append(snaps, v)
		}
	}
	steps := []Step{}
	for i, v := range snaps {
		if have[v.Identity] {
			continue
		}
		s := Step{Name: v.Name}
		if i > 0 {
			s.Parent = snaps[i-1].Name
		}
		steps = append(steps, s)
	}
	return steps
}

// TransferSnapshot makes a read-only snapshot of project id's live home
// named TransferPrefix+tag, for sending. It replaces one of that name
// left by an earlier attempt.
func (m *Manager) TransferSnapshot(ctx context.Context, id, tag string) (Volume, error) {
	if err := CheckID(id); err != nil {
		return Volume{}, err
	}
	if !m.btrfs() {
		return Volume{}, fmt.Errorf("transfer snapshot of project %s: %w", id, ErrUnsupported)
	}
	name := TransferPrefix + tag
	dst, err := m.volumePath(id, name)
	if err != nil {
		return Volume{}, err
	}
	if ok, err := m.Exists(id); err != nil {
		return Volume{}, err
	} else if !ok {
		return Volume{}, fmt.Errorf("project %s: %w on this host", id, ErrNotFound)
	}
	if err := m.removeVolume(ctx, dst); err != nil {
		return Volume{}, fmt.Errorf("transfer snapshot of project %s: %w", id, err)
	}
	if err := os.MkdirAll(m.outDir(id), 0o700); err != nil {
		return Volume{}, fmt.Errorf("transfer snapshot of project %s: %w", id, err)
	}
	if _, err := runcmd.Output(ctx, "btrfs", "subvolume", "snapshot", "-r", m.HomePath(id), dst); err != nil {
		return Volume{}, fmt.Errorf("transfer snapshot of project %s: %w", id, err)
	}
	return m.volumeInfo(ctx, dst)
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Send writes the btrfs send stream of project id's volume step.Name
// (incremental against step.Parent) to w and returns its length.
func (m *Manager) Send(ctx context.Context, id string, step Step, w io.Writer) (int64, error) {
	if err := CheckID(id); err != nil {
		return 0, err
	}
	if !m.btrfs() {
		return 0, fmt.Errorf("send project %s: %w", id, ErrUnsupported)
	}
	path, err := m.volumePath(id, step.Name)
	if err != nil {
		return 0, err
	}
	if !exists(path) {
		return 0, fmt.Errorf("send project %s: volume %s: %w", id, step.Name, ErrNotFound)
	}
	args := []string{"send", "-q"}
	if step.Parent != "" {
		parent, err := m.volumePath(id, step.Parent)
		if err != nil {
			return 0, err
		}
		if !exists(parent) {
			return 0, fmt.Errorf("send project %s: parent %s: %w", id, step.Parent, ErrNotFound)
		}
		args = append(args, "-p", parent)
	}
	cw := &countWriter{w: w}
	err = stream(ctx, nil, cw, "btrfs", append(args, path)...)
	if err != nil {
		return cw.n, fmt.Errorf("send %s of project %s: %w", step.Name, id, err)
	}
	return cw.n, nil
}

// SendTar writes project id's files as a tar archive to w: the transfer
// snapshot name (btrfs) or, for "" or HomeTarName, the live home (which
// the caller has stopped). Snapshots are not carried.
func (m *Manager) SendTar(ctx context.Context, id, name string, w io.Writer) (int64, error) {
	if err := CheckID(id); err != nil {
		return 0, err
	}
	dir := m.HomePath(id)
	if name != "" && name != HomeTarName {
		p, err := m.volumePath(id, name)
		if err != nil {
			return 0, err
		}
		dir = p
	}
	if !exists(dir) {
		return 0, fmt.Errorf("send project %s: %s: %w", id, dir, ErrNotFound)
	}
	cw := &countWriter{w: w}
	if err := stream(ctx, nil, cw, "tar", "-C", dir, "--numeric-owner", "--xattrs", "-cf", "-", "."); err != nil {
		return cw.n, fmt.Errorf("send project %s as tar: %w", id, err)
	}
	return cw.n, nil
}

// Receive reads a btrfs send stream for project id into staging and checks
// that what arrived is want (read-only, with want's identity). On failure
// the half-received subvolume is removed.
func (m *Manager) Receive(ctx context.Context, id string, want Volume, r io.Reader) (int64, error) {
	if err := CheckID(id); err != nil {
		return 0, err
	}
	if !m.btrfs() {
		return 0, fmt.Errorf("receive project %s: %w", id, ErrUnsupported)
	}
	if err := checkStagedName(want.Name); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(m.inDir(id), 0o700); err != nil {
		return 0, fmt.Errorf("receive project %s: %w", id, err)
	}
	dst := filepath.Join(m.inDir(id), want.Name)
	if err := m.removeVolume(ctx, dst); err != nil {
		return 0, fmt.Errorf("receive project %s: %w", id, err)
	}
	cr := receiveCounter(r, m.inDir(id))
	err := stream(ctx, cr, nil, "btrfs", "receive", m.inDir(id))
	cr.close()
	if err == nil {
		var v Volume
		if v, err = m.volumeInfo(ctx, dst); err == nil && v.Identity != want.Identity {
			err = fmt.Errorf("received %s has identity %q, want %q", want.Name, v.Identity, want.Identity)
		}
	}
	if err != nil {
		m.removeVolume(context.WithoutCancel(ctx), dst) //nolint:errcheck // the receive error is what matters
		return cr.n, fmt.Errorf("receive %s of project %s: %w", want.Name, id, err)
	}
	return cr.n, nil
}

func checkStagedName(name string) error {
	if name == HomeTarName {
		return nil
	}
	return CheckSnapshotName(strings.TrimPrefix(name, TransferPrefix))
}

// ReceiveTar unpacks a tar archive of project id's home into staging.
func (m *Manager) ReceiveTar(ctx context.Context, id string, r io.Reader) (int64, error) {
	if err := CheckID(id); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(m.inDir(id), 0o700); err != nil {
		return 0, fmt.Errorf("receive project %s: %w", id, err)
	}
	dst := filepath.Join(m.inDir(id), HomeTarName)
	if err := m.removeVolume(ctx, dst); err != nil {
		return 0, fmt.Errorf("receive project %s: %w", id, err)
	}
	if err := m.makeVolume(ctx, dst); err != nil {
		return 0, fmt.Errorf("receive project %s: %w", id, err)
	}
	// A plain directory's commit is a rename, which waits for no
	// writeback: only a btrfs pool's (a snapshot) does.
	wb := ""
	if m.btrfs() {
		wb = dst
	}
	cr := receiveCounter(r, wb)
	err := stream(ctx, cr, nil, "tar", "-C", dst, "--numeric-owner", "--xattrs", "-xpf", "-")
	cr.close()
	if err != nil {
		m.removeVolume(context.WithoutCancel(ctx), dst) //nolint:errcheck // the receive error is what matters
		return cr.n, fmt.Errorf("receive project %s as tar: %w", id, err)
	}
	return cr.n, nil
}

// CommitRequest says what a committed transfer is made of.
type CommitRequest struct {
	// Home is the staged volume that becomes the home: a received
	// transfer snapshot or HomeTarName.
	Home string `json:"home"`
	// Snapshots are the names the project's snapshots must be after the
	// commit (the source's); any other snapshot here is deleted.
	Snapshots []string `json:"snapshots"`
	// QuotaBytes is the project's quota (0: none).
	QuotaBytes int64 `json:"quota_bytes"`
}

// Commit makes what was received project id's: staged snapshots take
// their places, snapshots the source no longer has go, the staged home
// becomes the (writable) home, scratch is made empty and the quota
// applied. A copy of the project that was here before is replaced.
// Staging is set aside, not removed: removing subvolumes waits for btrfs
// to free them, which would lengthen a move's downtime; DropTransfer
// removes it once the project runs here. Commit can be repeated after a
// failure: once staging is set aside, the home was made from it.
func (m *Manager) Commit(ctx context.Context, id string, req CommitRequest) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if err := checkStagedName(req.Home); err != nil {
		return err
	}
	staged := filepath.Join(m.inDir(id), req.Home)
	if !exists(staged) {
		if ok, _ := m.Exists(id); ok && !exists(m.inDir(id)) {
			return nil // committed by an earlier attempt
		}
		if ok, _ := m.Exists(id); ok {
			return m.finishCommit(ctx, id, req)
		}
		return fmt.Errorf("commit project %s: staged home %s: %w", id, req.Home, ErrNotFound)
	}
	for _, dir := range []string{"projects", "scratch", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(m.pool, dir), 0o711); err != nil {
			return fmt.Errorf("commit project %s: %w", id, err)
		}
	}
	if err := os.MkdirAll(m.SnapshotDir(id), 0o755); err != nil {
		return fmt.Errorf("commit project %s: %w", id, err)
	}
	keep := map[string]bool{}
	for _, name := range req.Snapshots {
		if err := CheckSnapshotName(name); err != nil {
			return err
		}
		keep[name] = true
		in := filepath.Join(m.inDir(id), name)
		if !exists(in) {
			continue
		}
		dst := filepath.Join(m.SnapshotDir(id), name)
		if err := m.removeVolume(ctx, dst); err != nil {
			return fmt.Errorf("commit project %s: replace snapshot %s: %w", id, name, err)
		}
		// A read-only subvolume cannot be renamed into another directory
		// (its ".." would change); a read-only snapshot of it is instant
		// and keeps its received UUID, so its identity.
		if _, err := runcmd.Output(ctx, "btrfs", "subvolume", "snapshot", "-r", in, dst); err != nil {
			return fmt.Errorf("commit project %s: snapshot %s: %w", id, name, err)
		}
	}
	snaps, err := m.snapshotVolumes(id)
	if err != nil {
		return fmt.Errorf("commit project %s: %w", id, err)
	}
	for _, s := range snaps {
		if !keep[filepath.Base(s)] {
			if err := m.removeVolume(ctx, s); err != nil {
				return fmt.Errorf("commit project %s: drop snapshot %s: %w", id, filepath.Base(s), err)
			}
		}
	}
	if err := m.removeVolume(ctx, m.HomePath(id)); err != nil {
		return fmt.Errorf("commit project %s: replace home: %w", id, err)
	}
	if m.btrfs() {
		// A writable snapshot of the received one: instant, and later
		// transfer snapshots of it send incrementally.
		if _, err := runcmd.Output(ctx, "btrfs", "subvolume", "snapshot", staged, m.HomePath(id)); err != nil {
			return fmt.Errorf("commit project %s: home: %w", id, err)
		}
	} else if err := os.Rename(staged, m.HomePath(id)); err != nil {
		return fmt.Errorf("commit project %s: home: %w", id, err)
	}
	return m.finishCommit(ctx, id, req)
}

// finishCommit does what follows the home's arrival: a fresh scratch, the
// owner and mode, the quota, and staging set aside.
func (m *Manager) finishCommit(ctx context.Context, id string, req CommitRequest) error {
	// Scratch is not moved: a fresh, empty one.
	if err := m.removeVolume(ctx, m.ScratchPath(id)); err != nil {
		return fmt.Errorf("commit project %s: scratch: %w", id, err)
	}
	if err := m.makeVolume(ctx, m.ScratchPath(id)); err != nil {
		return fmt.Errorf("commit project %s: scratch: %w", id, err)
	}
	if err := m.giveToOwner(id); err != nil {
		return fmt.Errorf("commit project %s: %w", id, err)
	}
	if m.btrfs() {
		if err := m.ensureGroup(ctx, id); err != nil {
			return fmt.Errorf("commit project %s: %w", id, err)
		}
		if err := m.SetQuota(ctx, id, req.QuotaBytes); err != nil {
			return err
		}
	}
	// What an earlier commit set aside (a commit repeated after its move
	// was cut short) makes room.
	if err := m.dropVolumes(ctx, m.committedDir(id)); err != nil {
		return fmt.Errorf("commit project %s: %w", id, err)
	}
	if err := os.Rename(m.inDir(id), m.committedDir(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("commit project %s: %w", id, err)
	}
	return nil
}

// DropTransfer removes everything of project id's transfers on this pool:
// transfer snapshots and what was staged, also half-received subvolumes.
// The project's home and snapshots are never touched.
func (m *Manager) DropTransfer(ctx context.Context, id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	for _, dir := range []string{m.outDir(id), m.inDir(id), m.committedDir(id)} {
		if err := m.dropVolumes(ctx, dir); err != nil {
			return fmt.Errorf("drop transfer of project %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(m.transferDir(id)); err != nil {
		return fmt.Errorf("drop transfer of project %s: %w", id, err)
	}
	return nil
}

// dropVolumes removes the volumes in dir and dir itself.
func (m *Manager) dropVolumes(ctx context.Context, dir string) error {
	vols, err := subdirs(dir)
	if err != nil {
		return err
	}
	for _, v := range vols {
		if err := m.removeVolume(ctx, v); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(v), err)
		}
	}
	return os.RemoveAll(dir)
}

// DropTransferVolume removes one transfer snapshot or staged volume (an
// earlier pre-copy round's, once the next one arrived).
func (m *Manager) DropTransferVolume(ctx context.Context, id, name string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if !strings.HasPrefix(name, TransferPrefix) {
		return fmt.Errorf("transfer volume %q: %w: it must start with %q", name, ErrInvalid, TransferPrefix)
	}
	if err := checkStagedName(name); err != nil {
		return err
	}
	for _, dir := range []string{m.outDir(id), m.inDir(id)} {
		if err := m.removeVolume(ctx, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("drop transfer volume %s of project %s: %w", name, id, err)
		}
	}
	return nil
}

// Freeze makes project id's home read-only (frozen) or writable again:
// the copy a move leaves behind must not change. A plain-directory pool
// has no such flag; there it does nothing.
func (m *Manager) Freeze(ctx context.Context, id string, frozen bool) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if !m.btrfs() {
		return nil
	}
	if ok, err := m.Exists(id); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("project %s: %w on this host", id, ErrNotFound)
	}
	if _, err := runcmd.Output(ctx, "btrfs", "property", "set", "-ts", m.HomePath(id), "ro", fmt.Sprint(frozen)); err != nil {
		return fmt.Errorf("freeze project %s: %w", id, err)
	}
	return nil
}
