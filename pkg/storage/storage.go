// Package storage keeps projects' files on a host's pool: one btrfs
// subvolume per project for its home, a quota that covers the home and
// its snapshots together, read-only snapshots, restore from them, and a
// scratch subvolume per project that is never snapshotted or backed up.
//
// Where the pool is a plain directory (no btrfs), homes and scratch are
// plain directories: nothing is snapshotted and nothing is limited, and
// every answer says so (Capabilities, ErrUnsupported).
//
// Layout under the pool:
//
//	projects/<id>            the home (a subvolume on btrfs)
//	snapshots/<id>/<name>    read-only snapshots of the home; the runtime
//	                         shows them to the project as ~/.snapshots
//	scratch/<id>             scratch (a subvolume on btrfs)
//
// Snapshots live outside the home, not in a .snapshots directory inside it,
// so that the project (which owns its home) can never swap that directory
// for a symlink and make the root-run snapshot command write elsewhere.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/runcmd"
)

// Kinds of pool.
const (
	KindBtrfs     = "btrfs"
	KindDirectory = "directory"
)

// DirectoryNote says what a plain-directory pool lacks.
const DirectoryNote = "plain directory: no snapshots or quotas"

// Errors callers decide on (match with errors.Is).
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrUnsupported = errors.New("not supported on a plain-directory pool (" + DirectoryNote + ")")
	ErrInvalid     = errors.New("invalid")
)

// ValidID reports whether id is a canonical lowercase UUID: a project id
// becomes a path component under the pool, so nothing else may pass.
func ValidID(id string) bool { return model.CanonicalUUID(id) }

// CheckID returns an error naming id unless it is a canonical UUID.
func CheckID(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("project id %q: %w: only UUIDs such as 3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13 are accepted", id, ErrInvalid)
	}
	return nil
}

// snapshotNameRE keeps snapshot names one safe path component; the
// length (at most 64) is checked apart (validSnapshotName): a counted
// repetition compiles into that many copies at every start-up.
var snapshotNameRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func validSnapshotName(name string) bool {
	return len(name) <= 64 && snapshotNameRE().MatchString(name)
}

// CheckSnapshotName returns an error unless name is a valid snapshot name.
func CheckSnapshotName(name string) error {
	if !validSnapshotName(name) {
		return fmt.Errorf("snapshot name %q: %w: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name, ErrInvalid)
	}
	return nil
}

// Owner is who owns a project's files (the user inside its container).
type Owner struct{ UID, GID int }

// Capabilities says what the pool can do.
type Capabilities struct {
	Kind      string `json:"kind"`
	Snapshots bool   `json:"snapshots"`
	Quotas    bool   `json:"quotas"`
	Note      string `json:"note,omitempty"`
}

// Usage is a project's disk use.
type Usage struct {
	// UsedBytes counts the home and its snapshots together (data shared
	// between them once): what the quota limits.
	UsedBytes int64 `json:"used_bytes"`
	// QuotaBytes is the limit on UsedBytes; 0 means none.
	QuotaBytes int64 `json:"quota_bytes"`
	// ScratchBytes is the scratch space in use; ScratchQuotaBytes its
	// limit (0: none).
	ScratchBytes      int64 `json:"scratch_bytes"`
	ScratchQuotaBytes int64 `json:"scratch_quota_bytes"`
	Snapshots         int   `json:"snapshots"`
	// Note explains numbers that are estimates (plain directory).
	Note string `json:"note,omitempty"`
}

// Snapshot is a read-only copy of a project's home.
type Snapshot struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Auto marks snapshots made by the schedule (retention may delete
	// them); others are kept until deleted.
	Auto bool `json:"auto"`
}

// AutoPrefix starts the names of scheduled snapshots.
const AutoPrefix = "auto-"

// Manager manages the projects on one pool.
type Manager struct {
	pool  string
	kind  string
	owner Owner

	// quotas is the quota last set on each project's volumes, so that
	// setting the same one again (every start does) costs no btrfs
	// command. Removing a project's home or scratch forgets it.
	qmu    sync.Mutex
	quotas map[string]int64
}

// New returns a manager for the pool at path, of the given kind.
func New(pool, kind string, owner Owner) (*Manager, error) {
	if kind != KindBtrfs && kind != KindDirectory {
		return nil, fmt.Errorf("storage kind %q is not %q or %q", kind, KindBtrfs, KindDirectory)
	}
	abs, err := filepath.Abs(pool)
	if err != nil {
		return nil, fmt.Errorf("storage pool %s: %w", pool, err)
	}
	return &Manager{pool: abs, kind: kind, owner: owner, quotas: map[string]int64{}}, nil
}

// Capabilities reports what the pool supports.
func (m *Manager) Capabilities() Capabilities {
	if m.kind == KindBtrfs {
		return Capabilities{Kind: KindBtrfs, Snapshots: true, Quotas: true}
	}
	return Capabilities{Kind: KindDirectory, Note: DirectoryNote}
}

// HomePath is where project id's home is.
func (m *Manager) HomePath(id string) string { return filepath.Join(m.pool, "projects", id) }

// ScratchPath is where project id's scratch space is.
func (m *Manager) ScratchPath(id string) string { return filepath.Join(m.pool, "scratch", id) }

// SnapshotDir holds project id's snapshots.
func (m *Manager) SnapshotDir(id string) string { return filepath.Join(m.pool, "snapshots", id) }

func (m *Manager) btrfs() bool { return m.kind == KindBtrfs }

// Exists reports whether project id has a home on this pool.
func (m *Manager) Exists(id string) (bool, error) {
	if err := CheckID(id); err != nil {
		return false, err
	}
	_, err := os.Lstat(m.HomePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("project %s: %w", id, err)
	}
	return true, nil
}

// List returns the ids of the projects that have a home on this pool.
func (m *Manager) List() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(m.pool, "projects"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if ValidID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Create makes project id's home and scratch with a quota of quotaBytes
// (0: none) covering the home and its snapshots; scratch gets a limit of
// its own of the same size. It completes a half-made project, and on
// failure removes what this call made, so a failed create leaves nothing.
func (m *Manager) Create(ctx context.Context, id string, quotaBytes int64) (err error) {
	if err := CheckID(id); err != nil {
		return err
	}
	if quotaBytes < 0 {
		return fmt.Errorf("create project %s: quota %d: %w: must not be negative", id, quotaBytes, ErrInvalid)
	}
	if quotaBytes > 0 && !m.btrfs() {
		// The caller decides whether a quota is required; here it is
		// simply not enforced, and Usage says so.
		quotaBytes = 0
	}
	existed, err := m.Exists(id)
	if err != nil {
		return err
	}
	scratchExisted := exists(m.ScratchPath(id))
	defer func() {
		if err == nil {
			return
		}
		// Undo only what this call made: a project that was there
		// before keeps its data.
		cctx := context.WithoutCancel(ctx)
		if !existed {
			m.removeVolume(cctx, m.HomePath(id))
			os.Remove(m.SnapshotDir(id))
		}
		if !scratchExisted {
			m.removeVolume(cctx, m.ScratchPath(id))
		}
		if m.btrfs() {
			// The project's group, if ensureGroup made it before the
			// failure (or a cancelled request), is left of the home.
			m.pruneQgroups(cctx) //nolint:errcheck // only tidiness
		}
	}()
	for _, dir := range []string{"projects", "scratch", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(m.pool, dir), 0o711); err != nil {
			return fmt.Errorf("create project %s: %w", id, err)
		}
	}
	if err := m.makeVolume(ctx, m.HomePath(id)); err != nil {
		return fmt.Errorf("create project %s home: %w", id, err)
	}
	if err := m.makeVolume(ctx, m.ScratchPath(id)); err != nil {
		return fmt.Errorf("create project %s scratch: %w", id, err)
	}
	// The project reads its snapshots (mounted read-only) but must not
	// change the directory that holds them.
	if err := os.MkdirAll(m.SnapshotDir(id), 0o755); err != nil {
		return fmt.Errorf("create project %s: %w", id, err)
	}
	if err := m.giveToOwner(id); err != nil {
		return fmt.Errorf("create project %s: %w", id, err)
	}
	if m.btrfs() {
		if err := m.ensureGroup(ctx, id); err != nil {
			return fmt.Errorf("create project %s: %w", id, err)
		}
		if err := m.SetQuota(ctx, id, quotaBytes); err != nil {
			return err
		}
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// makeVolume makes a subvolume (btrfs) or directory at path unless one is
// there.
func (m *Manager) makeVolume(ctx context.Context, path string) error {
	if st, err := os.Lstat(path); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", path)
		}
		return nil
	}
	if !m.btrfs() {
		return os.Mkdir(path, 0o700)
	}
	_, err := runcmd.Output(ctx, "btrfs", "subvolume", "create", path)
	return err
}

// removeVolume deletes a subvolume (and its qgroup) or a directory tree.
// A missing path is not an error.
func (m *Manager) removeVolume(ctx context.Context, path string) error {
	// A project's volume made again has a new qgroup, without the limit.
	if dir := filepath.Dir(path); dir == filepath.Join(m.pool, "projects") || dir == filepath.Join(m.pool, "scratch") {
		m.qmu.Lock()
		delete(m.quotas, filepath.Base(path))
		m.qmu.Unlock()
	}
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return os.Remove(path)
	}
	if !m.btrfs() {
		return os.RemoveAll(path)
	}
	id, idErr := subvolumeID(ctx, path)
	if idErr != nil || !isSubvolumeRoot(path) {
		// A plain directory left by a crash before the subvolume was made.
		return os.RemoveAll(path)
	}
	// Read-only snapshots cannot be deleted by unprivileged means, but
	// root may delete them like any subvolume.
	if _, err := runcmd.Output(ctx, "btrfs", "subvolume", "delete", "--commit-after", path); err != nil {
		return err
	}
	// btrfs-progs 6.2 leaves the level-0 qgroup of a deleted subvolume;
	// removing it keeps `qgroup show` (and its parent's member list) clean.
	// The kernel refuses while the qgroup still counts bytes, which it does
	// until its cleaner has dropped the subvolume: wait for that first.
	sid := strconv.FormatUint(id, 10)
	runcmd.Output(ctx, "btrfs", "subvolume", "sync", m.pool, sid)      //nolint:errcheck // only tidiness
	runcmd.Output(ctx, "btrfs", "qgroup", "destroy", "0/"+sid, m.pool) //nolint:errcheck
	return nil
}

// isSubvolumeRoot reports whether path is the root of a btrfs subvolume
// (inode 256), not a plain directory inside one.
func isSubvolumeRoot(path string) bool {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return false
	}
	return st.Ino == 256
}

// subvolumeID returns the id of the subvolume at path.
func subvolumeID(ctx context.Context, path string) (uint64, error) {
	out, err := runcmd.Output(ctx, "btrfs", "inspect-internal", "rootid", path)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("btrfs inspect-internal rootid %s: unexpected output %q", path, out)
	}
	return id, nil
}

// groupID is the level-1 qgroup that holds a project's home and its
// snapshots: "1/<home subvolume id>". Subvolume ids are never reused on a
// filesystem, so neither are these.
func (m *Manager) groupID(ctx context.Context, id string) (string, uint64, error) {
	sub, err := subvolumeID(ctx, m.HomePath(id))
	if err != nil {
		return "", 0, err
	}
	return "1/" + strconv.FormatUint(sub, 10), sub, nil
}

// ensureGroup makes the project's level-1 qgroup and puts the home (and
// any snapshot) in it.
func (m *Manager) ensureGroup(ctx context.Context, id string) error {
	group, sub, err := m.groupID(ctx, id)
	if err != nil {
		return err
	}
	rows, err := m.qgroups(ctx)
	if err != nil {
		return err
	}
	if _, ok := rows[group]; !ok {
		if _, err := runcmd.Output(ctx, "btrfs", "qgroup", "create", group, m.pool); err != nil {
			return err
		}
	}
	members := []uint64{sub}
	snaps, err := m.snapshotVolumes(id)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		sid, err := subvolumeID(ctx, s)
		if err != nil {
			return err
		}
		members = append(members, sid)
	}
	parents, err := m.qgroupParents(ctx)
	if err != nil {
		return err
	}
	assigned := false
	for _, member := range members {
		child := "0/" + strconv.FormatUint(member, 10)
		if containsString(parents[child], group) {
			continue
		}
		// Assigning a member that already holds data leaves the numbers
		// inconsistent until a rescan: one rescan after all assignments
		// (a rescan per assignment would find the previous one running).
		if _, err := runcmd.Output(ctx, "btrfs", "qgroup", "assign", "--no-rescan", child, group, m.pool); err != nil {
			return err
		}
		assigned = true
	}
	if assigned {
		return rescan(ctx, m.pool)
	}
	return nil
}

// rescan recounts the pool's qgroups and waits for it; a rescan that is
// already running is waited for and then started again, so that what was
// assigned since counts.
func rescan(ctx context.Context, pool string) error {
	_, err := runcmd.Output(ctx, "btrfs", "quota", "rescan", "-w", pool)
	if err != nil && strings.Contains(err.Error(), "in progress") {
		if _, err = runcmd.Output(ctx, "btrfs", "quota", "rescan", "-W", pool); err == nil {
			_, err = runcmd.Output(ctx, "btrfs", "quota", "rescan", "-w", pool)
		}
	}
	return err
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SetQuota limits project id's home and snapshots together to bytes, and
// its scratch separately to the same size; 0 removes the limits. The
// limit this manager set last is not set again.
func (m *Manager) SetQuota(ctx context.Context, id string, bytes int64) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if bytes < 0 {
		return fmt.Errorf("quota of project %s: %d: %w: must not be negative", id, bytes, ErrInvalid)
	}
	if !m.btrfs() {
		if bytes == 0 {
			return nil
		}
		return fmt.Errorf("quota of project %s: %w", id, ErrUnsupported)
	}
	if ok, err := m.Exists(id); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("project %s: %w on this host", id, ErrNotFound)
	}
	m.qmu.Lock()
	set, ok := m.quotas[id]
	m.qmu.Unlock()
	if ok && set == bytes {
		return nil
	}
	group, _, err := m.groupID(ctx, id)
	if err != nil {
		return fmt.Errorf("quota of project %s: %w", id, err)
	}
	limit := "none"
	if bytes > 0 {
		limit = strconv.FormatInt(bytes, 10)
	}
	if _, err := runcmd.Output(ctx, "btrfs", "qgroup", "limit", limit, group, m.pool); err != nil {
		return fmt.Errorf("quota of project %s: %w", id, err)
	}
	if exists(m.ScratchPath(id)) {
		if _, err := runcmd.Output(ctx, "btrfs", "qgroup", "limit", limit, m.ScratchPath(id)); err != nil {
			return fmt.Errorf("scratch quota of project %s: %w", id, err)
		}
	}
	m.qmu.Lock()
	m.quotas[id] = bytes
	m.qmu.Unlock()
	return nil
}

// Delete removes project id's snapshots, home and scratch. Deleting a
// project that is not there succeeds.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	var group string
	if m.btrfs() && isSubvolumeRoot(m.HomePath(id)) {
		group, _, _ = m.groupID(ctx, id)
	}
	snaps, err := m.snapshotVolumes(id)
	if err != nil {
		return fmt.Errorf("delete project %s: %w", id, err)
	}
	for _, s := range snaps {
		if err := m.removeVolume(ctx, s); err != nil {
			return fmt.Errorf("delete project %s: snapshot %s: %w", id, filepath.Base(s), err)
		}
	}
	if err := os.RemoveAll(m.SnapshotDir(id)); err != nil {
		return fmt.Errorf("delete project %s: %w", id, err)
	}
	if err := m.removeVolume(ctx, m.HomePath(id)); err != nil {
		return fmt.Errorf("delete project %s: home: %w", id, err)
	}
	if err := m.removeVolume(ctx, m.ScratchPath(id)); err != nil {
		return fmt.Errorf("delete project %s: scratch: %w", id, err)
	}
	if group != "" {
		runcmd.Output(ctx, "btrfs", "qgroup", "destroy", group, m.pool) //nolint:errcheck // only tidiness
	}
	if m.btrfs() {
		// A delete cut short (the agent killed between a subvolume's
		// delete and its qgroup's) leaves qgroups that its retry, finding
		// no subvolume, cannot name: remove every qgroup left of a
		// subvolume that is gone.
		if err := m.pruneQgroups(ctx); err != nil {
			return fmt.Errorf("delete project %s: %w", id, err)
		}
	}
	return nil
}

// pruneQgroups destroys the qgroups of subvolumes that no longer exist: the
// level-0 qgroup of a deleted subvolume (btrfs-progs 6.2 leaves it) and a
// project's level-1 group ("1/<home subvolume id>") whose home is deleted.
// Subvolume ids are never reused, so neither can belong to anything again.
func (m *Manager) pruneQgroups(ctx context.Context) error {
	// The kernel refuses to destroy a qgroup that still counts bytes, as
	// it does until its cleaner has dropped the subvolume.
	if _, err := runcmd.Output(ctx, "btrfs", "subvolume", "sync", m.pool); err != nil {
		return err
	}
	// Qgroups first: a subvolume made after this read is not among them,
	// so the list of subvolumes read next holds every one they name.
	rows, err := m.qgroups(ctx)
	if err != nil {
		return err
	}
	out, err := runcmd.Output(ctx, "btrfs", "subvolume", "list", m.pool)
	if err != nil {
		return err
	}
	live := parseSubvolumeIDs(out)
	live["5"] = true // the top level, which is not listed
	for id := range rows {
		level, sub, _ := strings.Cut(id, "/")
		if (level == "0" || level == "1") && !live[sub] {
			runcmd.Output(ctx, "btrfs", "qgroup", "destroy", id, m.pool) //nolint:errcheck // only tidiness
		}
	}
	return nil
}

// parseSubvolumeIDs reads the ids in the output of `btrfs subvolume list`
// ("ID 257 gen 9 top level 5 path projects/…" per line).
func parseSubvolumeIDs(out string) map[string]bool {
	ids := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "ID" && strings.Trim(f[1], "0123456789") == "" {
			ids[f[1]] = true
		}
	}
	return ids
}

// snapshotVolumes lists the paths of project id's snapshots.
func (m *Manager) snapshotVolumes(id string) ([]string, error) {
	entries, err := os.ReadDir(m.SnapshotDir(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && validSnapshotName(e.Name()) {
			out = append(out, filepath.Join(m.SnapshotDir(id), e.Name()))
		}
	}
	return out, nil
}

// Snapshot makes a read-only snapshot of project id's home named name,
// counted in the project's quota.
func (m *Manager) Snapshot(ctx context.Context, id, name string) (Snapshot, error) {
	if err := CheckID(id); err != nil {
		return Snapshot{}, err
	}
	if err := CheckSnapshotName(name); err != nil {
		return Snapshot{}, err
	}
	if !m.btrfs() {
		return Snapshot{}, fmt.Errorf("snapshot of project %s: %w", id, ErrUnsupported)
	}
	if ok, err := m.Exists(id); err != nil {
		return Snapshot{}, err
	} else if !ok {
		return Snapshot{}, fmt.Errorf("project %s: %w on this host", id, ErrNotFound)
	}
	dst := filepath.Join(m.SnapshotDir(id), name)
	if exists(dst) {
		return Snapshot{}, fmt.Errorf("snapshot %s of project %s: %w", name, id, ErrExists)
	}
	if err := os.MkdirAll(m.SnapshotDir(id), 0o755); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot of project %s: %w", id, err)
	}
	group, _, err := m.groupID(ctx, id)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot of project %s: %w", id, err)
	}
	// -i puts the snapshot into the project's qgroup at once, so the
	// quota covers it from the first byte.
	if _, err := runcmd.Output(ctx, "btrfs", "subvolume", "snapshot", "-r", "-i", group, m.HomePath(id), dst); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot of project %s: %w", id, err)
	}
	return m.snapshotInfo(ctx, dst)
}

// Snapshots lists project id's snapshots, oldest first. A plain-directory
// pool has none.
func (m *Manager) Snapshots(ctx context.Context, id string) ([]Snapshot, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	if ok, err := m.Exists(id); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("project %s: %w on this host", id, ErrNotFound)
	}
	if !m.btrfs() {
		return []Snapshot{}, nil
	}
	vols, err := m.snapshotVolumes(id)
	if err != nil {
		return nil, fmt.Errorf("snapshots of project %s: %w", id, err)
	}
	out := []Snapshot{}
	for _, v := range vols {
		s, err := m.snapshotInfo(ctx, v)
		if err != nil {
			return nil, fmt.Errorf("snapshots of project %s: %w", id, err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// snapshotInfo reads a snapshot's creation time. The snapshot's root
// directory carries the times of the home it was taken from, so the time
// comes from the subvolume's own record.
func (m *Manager) snapshotInfo(ctx context.Context, path string) (Snapshot, error) {
	out, err := runcmd.Output(ctx, "btrfs", "subvolume", "show", path)
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{Name: filepath.Base(path), Auto: strings.HasPrefix(filepath.Base(path), AutoPrefix)}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || strings.TrimSpace(k) != "Creation time" {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05 -0700", strings.TrimSpace(v))
		if err != nil {
			return Snapshot{}, fmt.Errorf("btrfs subvolume show %s: creation time %q: %w", path, strings.TrimSpace(v), err)
		}
		s.CreatedAt = t.UTC()
	}
	if s.CreatedAt.IsZero() {
		return Snapshot{}, fmt.Errorf("btrfs subvolume show %s: no creation time in %q", path, truncateOut(out))
	}
	return s, nil
}

// DeleteSnapshot deletes one snapshot of project id.
func (m *Manager) DeleteSnapshot(ctx context.Context, id, name string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if err := CheckSnapshotName(name); err != nil {
		return err
	}
	if !m.btrfs() {
		return fmt.Errorf("snapshots of project %s: %w", id, ErrUnsupported)
	}
	p := filepath.Join(m.SnapshotDir(id), name)
	if !exists(p) {
		return fmt.Errorf("snapshot %s of project %s: %w", name, id, ErrNotFound)
	}
	if err := m.removeVolume(ctx, p); err != nil {
		return fmt.Errorf("delete snapshot %s of project %s: %w", name, id, err)
	}
	return nil
}

// Usage reports project id's disk use.
func (m *Manager) Usage(ctx context.Context, id string) (Usage, error) {
	if err := CheckID(id); err != nil {
		return Usage{}, err
	}
	if ok, err := m.Exists(id); err != nil {
		return Usage{}, err
	} else if !ok {
		return Usage{}, fmt.Errorf("project %s: %w on this host", id, ErrNotFound)
	}
	if !m.btrfs() {
		home, err := duBytes(m.HomePath(id))
		if err != nil {
			return Usage{}, fmt.Errorf("usage of project %s: %w", id, err)
		}
		scratch, err := duBytes(m.ScratchPath(id))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return Usage{}, fmt.Errorf("usage of project %s: %w", id, err)
		}
		return Usage{UsedBytes: home, ScratchBytes: scratch, Note: DirectoryNote}, nil
	}
	// Quota numbers are updated when a transaction commits; commit now so
	// that recent writes count.
	if _, err := runcmd.Output(ctx, "btrfs", "filesystem", "sync", m.pool); err != nil {
		return Usage{}, fmt.Errorf("usage of project %s: %w", id, err)
	}
	group, _, err := m.groupID(ctx, id)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of project %s: %w", id, err)
	}
	rows, err := m.qgroups(ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of project %s: %w", id, err)
	}
	g, ok := rows[group]
	if !ok {
		return Usage{}, fmt.Errorf("usage of project %s: qgroup %s is missing; recreate it by setting the quota again", id, group)
	}
	u := Usage{UsedBytes: g.Referenced, QuotaBytes: max(g.MaxReferenced, 0)}
	if sid, err := subvolumeID(ctx, m.ScratchPath(id)); err == nil {
		if s, ok := rows["0/"+strconv.FormatUint(sid, 10)]; ok {
			u.ScratchBytes, u.ScratchQuotaBytes = s.Referenced, max(s.MaxReferenced, 0)
		}
	}
	snaps, err := m.snapshotVolumes(id)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of project %s: %w", id, err)
	}
	u.Snapshots = len(snaps)
	return u, nil
}

// qgroups reads every qgroup of the pool.
func (m *Manager) qgroups(ctx context.Context) (map[string]qgroup, error) {
	out, err := runcmd.Output(ctx, "btrfs", "qgroup", "show", "-re", "--raw", m.pool)
	if err != nil {
		return nil, err
	}
	return parseQgroupShow(out)
}

// qgroupParents maps each qgroup to its parents.
func (m *Manager) qgroupParents(ctx context.Context) (map[string][]string, error) {
	out, err := runcmd.Output(ctx, "btrfs", "qgroup", "show", "-p", "--raw", m.pool)
	if err != nil {
		return nil, err
	}
	return parseQgroupParents(out)
}

// parseQgroupParents reads the Parent column of `btrfs qgroup show -p`,
// found by name in the header like the other columns.
func parseQgroupParents(out string) (map[string][]string, error) {
	lines := strings.Split(out, "\n")
	parentCol := -1
	start := 0
	for i, line := range lines {
		f := headerFields(line)
		if len(f) > 0 && f[0] == "qgroupid" {
			for j, name := range f {
				if name == "parent" {
					parentCol = j
				}
			}
			start = i + 1
			break
		}
	}
	if parentCol < 0 {
		return nil, fmt.Errorf("btrfs qgroup show -p: no parent column in %q", truncateOut(out))
	}
	res := map[string][]string{}
	for _, line := range lines[start:] {
		f := strings.Fields(line)
		if len(f) <= parentCol || !qgroupIDRE().MatchString(f[0]) {
			continue
		}
		if f[parentCol] != "-" {
			res[f[0]] = strings.Split(f[parentCol], ",")
		}
	}
	return res, nil
}

// duBytes sums the disk blocks used under path, counting hard links once.
func duBytes(path string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p != path {
				return nil // removed while we walked
			}
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil
		}
		key := [2]uint64{uint64(st.Dev), st.Ino} //nolint:unconvert // Dev is int32 on darwin
		if st.Nlink > 1 {
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		total += int64(st.Blocks) * 512
		return nil
	})
	return total, err
}

// giveToOwner makes a project's home and scratch the project user's, and
// only theirs: on create and when a moved home arrives.
func (m *Manager) giveToOwner(id string) error {
	for _, p := range []string{m.HomePath(id), m.ScratchPath(id)} {
		if err := os.Lchown(p, m.owner.UID, m.owner.GID); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o700); err != nil {
			return err
		}
	}
	return nil
}
