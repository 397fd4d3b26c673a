package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/backup"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
)

// backupPrefix names the read-only snapshot a backup is read from; it
// lives only while restic reads it.
const backupPrefix = "backup-"

// fullIDRE is a whole restic snapshot id (64 of them: the length is
// checked apart, a counted repetition compiling into 64 copies at start-up).
var fullIDRE = lazyre.New(`^[0-9a-f]+$`)

// backups backs up this host's projects with restic, with configuration
// the control plane hands out per project (agentapi.BackupConfig).
type backups struct {
	r      *runtime
	restic *backup.Restic
	// dir keeps one 0600 file of configuration per project.
	dir string
	now func() time.Time
}

func newBackups(r *runtime, pool string) (*backups, error) {
	base := filepath.Join(pool, ".cocalc-agent")
	b := &backups{r: r, dir: filepath.Join(base, "backup"), now: time.Now,
		restic: &backup.Restic{CacheDir: filepath.Join(base, "restic-cache"), TmpDir: filepath.Join(base, "tmp")}}
	for _, d := range []string{b.dir, b.restic.CacheDir, b.restic.TmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("agent backups: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("agent backups: %w", err)
		}
	}
	return b, nil
}

func (s *server) backupRoutes(mux *http.ServeMux) {
	p := agentapi.ProjectsPath + "/{id}"
	mux.HandleFunc("PUT "+p+"/backup-config", s.reply(withBody(s.handlePutBackupConfig)))
	mux.HandleFunc("POST "+p+"/backups", s.reply(withBody(s.handleCreateBackup)))
	mux.HandleFunc("GET "+p+"/backups", s.reply(s.handleBackups))
	mux.HandleFunc("POST "+p+"/backups/restore", s.reply(withBody(s.handleRestoreBackup)))
	mux.HandleFunc("POST "+p+"/backups/forget", s.reply(withBody(s.handleForgetBackups)))
	mux.HandleFunc("DELETE "+p+"/backups", s.reply(s.handlePurgeBackups))
}

func (s *server) handlePutBackupConfig(r *http.Request, c agentapi.BackupConfig) (any, error) {
	return nil, s.backups.put(r.PathValue("id"), c)
}

func (s *server) handleCreateBackup(r *http.Request, _ struct{}) (any, error) {
	return s.backups.create(r.Context(), r.PathValue("id"), wantVersion(r))
}

func (s *server) handleBackups(r *http.Request) (any, error) {
	return s.backups.list(r.Context(), r.PathValue("id"), wantVersion(r))
}

func (s *server) handleRestoreBackup(r *http.Request, req agentapi.BackupRestoreRequest) (any, error) {
	return s.backups.restore(r.Context(), r.PathValue("id"), wantVersion(r), req)
}

func (s *server) handleForgetBackups(r *http.Request, req agentapi.BackupForgetRequest) (any, error) {
	return s.backups.forget(r.Context(), r.PathValue("id"), wantVersion(r), req)
}

func (s *server) handlePurgeBackups(r *http.Request) (any, error) {
	return s.backups.purge(r.Context(), r.PathValue("id"), wantVersion(r))
}

// wantVersion is the configuration version the control plane holds.
func wantVersion(r *http.Request) int64 {
	v, _ := strconv.ParseInt(r.URL.Query().Get(agentapi.ConfigVersionParam), 10, 64)
	return v
}

func (b *backups) configPath(id string) string { return filepath.Join(b.dir, id+".json") }

// put keeps project id's configuration until it expires.
func (b *backups) put(id string, c agentapi.BackupConfig) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return perr(agentapi.CodeInvalid, "%v", err)
	}
	if err := backup.CheckURL(c.Repository); err != nil {
		return perr(agentapi.CodeInvalid, "%v", err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := secrets.Write(b.configPath(id), data); err != nil {
		return fmt.Errorf("keep backup config of project %s: %w", id, err)
	}
	return nil
}

// drop forgets project id's configuration (the repository refused it).
func (b *backups) drop(id string) {
	os.Remove(b.configPath(id)) //nolint:errcheck // absent is as good
}

// repo returns project id's repository, or CodeBackupConfig when the
// agent has no configuration for it that is still valid.
func (b *backups) repo(id string, version int64) (backup.Repo, error) {
	if err := storage.CheckID(id); err != nil {
		return backup.Repo{}, err
	}
	data, err := secrets.Read(b.configPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return backup.Repo{}, perr(agentapi.CodeBackupConfig, "no backup configuration for project %s on this host", id)
	}
	if err != nil {
		return backup.Repo{}, err
	}
	var c agentapi.BackupConfig
	if err := json.Unmarshal(data, &c); err != nil || c.Validate() != nil {
		b.drop(id)
		return backup.Repo{}, perr(agentapi.CodeBackupConfig, "backup configuration of project %s is unreadable", id)
	}
	if c.Version < version {
		b.drop(id)
		return backup.Repo{}, perr(agentapi.CodeBackupConfig, "backup configuration of project %s is version %d; the control plane has %d", id, c.Version, version)
	}
	if !b.now().Before(c.ExpiresAt) {
		b.drop(id)
		return backup.Repo{}, perr(agentapi.CodeBackupConfig, "backup configuration of project %s expired at %s", id, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return backup.Repo{URL: c.Repository, Credentials: c.Credentials, Password: c.Password}, nil
}

// resticErr maps restic's failures to API codes. A refused credential
// drops the configuration, so the control plane hands out a fresh one.
func (b *backups) resticErr(id string, err error) error {
	switch {
	case errors.Is(err, backup.ErrAuth):
		b.drop(id)
		return perr(agentapi.CodeBackupConfig, "%v", err)
	case errors.Is(err, backup.ErrNotFound):
		return perr(agentapi.CodeNotFound, "%v", err)
	case errors.Is(err, backup.ErrInvalid):
		return perr(agentapi.CodeInvalid, "%v", err)
	case errors.Is(err, backup.ErrUnreachable):
		return perr(agentapi.CodeUnavailable, "%v", err)
	}
	return err
}

func (b *backups) tags(id string) []string {
	return []string{"project=" + id, "host=" + b.r.hostID}
}

// projectTags selects a project's backups, from whatever host made them.
func projectTags(id string) []string { return []string{"project=" + id} }

// create backs up project id's home: from a read-only snapshot where the
// pool has them, so the backup is one moment of the home.
func (b *backups) create(ctx context.Context, id string, version int64) (agentapi.BackupResult, error) {
	repo, err := b.repo(id, version)
	if err != nil {
		return agentapi.BackupResult{}, err
	}
	if ok, err := b.r.st.Exists(id); err != nil {
		return agentapi.BackupResult{}, err
	} else if !ok {
		return agentapi.BackupResult{}, perr(agentapi.CodeNotFound, "project %s has no home on this host", id)
	}
	dir, done, err := b.readOnlyView(ctx, id)
	if err != nil {
		return agentapi.BackupResult{}, err
	}
	defer done()
	// Every restic call derives the repository's key (≈0.6 s here), so
	// the repository is made only when the first backup finds none.
	sum, err := b.restic.Backup(ctx, repo, dir, b.r.hostID, b.tags(id))
	if errors.Is(err, backup.ErrNoRepository) {
		if err = b.restic.Init(ctx, repo); err == nil {
			sum, err = b.restic.Backup(ctx, repo, dir, b.r.hostID, b.tags(id))
		}
	}
	if err != nil {
		return agentapi.BackupResult{}, b.resticErr(id, err)
	}
	snap, err := b.restic.Find(ctx, repo, projectTags(id), sum.SnapshotID)
	if err != nil {
		return agentapi.BackupResult{}, b.resticErr(id, err)
	}
	b.r.log.Info("project backed up", "project", id, "backup", snap.ShortID, "bytes_added", sum.DataAdded)
	return agentapi.BackupResult{
		Backup:   apiBackup(snap),
		FilesNew: sum.FilesNew, FilesChanged: sum.FilesChanged, BytesAdded: sum.DataAdded,
		Files: sum.TotalFilesProcessed, Bytes: sum.TotalBytesProcessed, DurationSecond: sum.TotalDuration,
		FromSnapshot: b.r.st.Capabilities().Snapshots,
	}, nil
}

// readOnlyView returns a directory holding project id's home as of now:
// a read-only snapshot on btrfs (removed by done), the live home on a
// plain directory.
func (b *backups) readOnlyView(ctx context.Context, id string) (string, func(), error) {
	if !b.r.st.Capabilities().Snapshots {
		return b.r.st.HomePath(id), func() {}, nil
	}
	unlock := b.r.lock(id)
	defer unlock()
	// A backup cut short (the agent killed) leaves its snapshot; it is of
	// no use to anyone.
	if snaps, err := b.r.st.Snapshots(ctx, id); err == nil {
		for _, s := range snaps {
			if strings.HasPrefix(s.Name, backupPrefix) {
				b.r.st.DeleteSnapshot(ctx, id, s.Name) //nolint:errcheck // best effort; the new name differs
			}
		}
	}
	name := backupPrefix + b.now().UTC().Format("20060102T150405.000Z")
	if _, err := b.r.st.Snapshot(ctx, id, name); err != nil {
		return "", nil, fmt.Errorf("backup of project %s: snapshot to read from: %w", id, err)
	}
	done := func() {
		defer b.r.lock(id)()
		if err := b.r.st.DeleteSnapshot(context.WithoutCancel(ctx), id, name); err != nil {
			b.r.log.Warn("remove backup snapshot", "project", id, "snapshot", name, "err", err)
		}
	}
	return filepath.Join(b.r.st.SnapshotDir(id), name), done, nil
}

func apiBackup(s backup.Snapshot) agentapi.Backup {
	return agentapi.Backup{ID: s.ID, ShortID: s.ShortID, Time: s.Time.UTC(), HostID: s.Tag("host")}
}

// list returns project id's backups, from every host it was on.
func (b *backups) list(ctx context.Context, id string, version int64) ([]agentapi.Backup, error) {
	repo, err := b.repo(id, version)
	if err != nil {
		return nil, err
	}
	snaps, err := b.restic.Snapshots(ctx, repo, projectTags(id))
	if errors.Is(err, backup.ErrNoRepository) {
		return []agentapi.Backup{}, nil
	}
	if err != nil {
		return nil, b.resticErr(id, err)
	}
	out := make([]agentapi.Backup, len(snaps))
	for i, s := range snaps {
		out[i] = apiBackup(s)
	}
	return out, nil
}

// restore puts back the home (or a path in it) from a backup, keeping
// what was there in a safety snapshot; or writes it to the project's
// scratch, leaving the home alone.
func (b *backups) restore(ctx context.Context, id string, version int64, req agentapi.BackupRestoreRequest) (agentapi.BackupRestoreResult, error) {
	rel, err := storage.CleanRestorePath(req.Path)
	if err != nil {
		return agentapi.BackupRestoreResult{}, err
	}
	repo, err := b.repo(id, version)
	if err != nil {
		return agentapi.BackupRestoreResult{}, err
	}
	if ok, err := b.r.st.Exists(id); err != nil {
		return agentapi.BackupRestoreResult{}, err
	} else if !ok {
		return agentapi.BackupRestoreResult{}, perr(agentapi.CodeNotFound, "project %s has no home on this host", id)
	}
	var snap backup.Snapshot
	if len(req.Backup) == 64 && fullIDRE().MatchString(req.Backup) {
		// The control plane resolved it already; a lookup would cost a
		// restic call (a key derivation). restic refuses an unknown id.
		snap = backup.Snapshot{ID: req.Backup, ShortID: req.Backup[:8]}
	} else {
		snap, err = b.restic.Find(ctx, repo, projectTags(id), req.Backup)
	}
	if errors.Is(err, backup.ErrNoRepository) {
		return agentapi.BackupRestoreResult{}, perr(agentapi.CodeNotFound, "project %s has no backups", id)
	}
	if err != nil {
		return agentapi.BackupRestoreResult{}, b.resticErr(id, err)
	}
	res := agentapi.BackupRestoreResult{Backup: snap.ID}
	if req.ToScratch {
		return b.restoreToScratch(ctx, id, repo, snap, rel, res)
	}
	// Staged inside the home, so that moving it into place is a rename
	// on the same filesystem, never a half-copied tree.
	home, err := os.OpenRoot(b.r.st.HomePath(id))
	if err != nil {
		return res, err
	}
	defer home.Close()
	stage := fmt.Sprintf(".restore-%s", snap.ShortID)
	if err := home.RemoveAll(stage); err != nil {
		return res, err
	}
	defer home.RemoveAll(stage) //nolint:errcheck // emptied below on success
	if err := b.restic.Restore(ctx, repo, snap.ID, rel, filepath.Join(b.r.st.HomePath(id), stage)); err != nil {
		return res, b.resticErr(id, err)
	}
	staged, err := home.OpenRoot(stage)
	if errors.Is(err, os.ErrNotExist) {
		return res, perr(agentapi.CodeNotFound, "backup %s has no %s", snap.ShortID, orHome(rel))
	} else if err != nil {
		return res, err
	}
	defer staged.Close()
	if rel != "" {
		if _, err := staged.Lstat(rel); errors.Is(err, os.ErrNotExist) {
			return res, perr(agentapi.CodeNotFound, "backup %s has no %s", snap.ShortID, rel)
		}
	}
	defer b.r.lock(id)()
	if b.r.st.Capabilities().Snapshots {
		safety, err := b.r.st.Snapshot(ctx, id, "pre-restore-"+b.now().UTC().Format("20060102T150405.000Z"))
		if err != nil {
			return res, fmt.Errorf("restore of project %s: safety snapshot: %w", id, err)
		}
		res.SafetySnapshot = safety.Name
	}
	var names []string
	if rel == "" {
		cur, err := dirNames(home, ".")
		if err != nil {
			return res, err
		}
		for _, n := range cur {
			if n == storage.SnapshotsDirName || n == stage {
				continue
			}
			if err := home.RemoveAll(n); err != nil {
				return res, fmt.Errorf("restore of project %s: remove %s: %w", id, n, err)
			}
		}
		if names, err = dirNames(staged, "."); err != nil {
			return res, err
		}
		res.Where = "~"
	} else {
		if err := home.RemoveAll(rel); err != nil {
			return res, fmt.Errorf("restore of project %s: remove %s: %w", id, rel, err)
		}
		if dir := path.Dir(rel); dir != "." {
			if err := home.MkdirAll(dir, 0o755); err != nil {
				return res, err
			}
		}
		names = []string{rel}
		res.Where = "~/" + rel
	}
	for _, n := range names {
		if n == storage.SnapshotsDirName {
			continue
		}
		if err := home.Rename(path.Join(stage, n), n); err != nil {
			return res, fmt.Errorf("restore of project %s: %w", id, err)
		}
	}
	b.r.log.Info("project restored from backup", "project", id, "backup", snap.ShortID, "path", res.Where)
	return res, nil
}

func orHome(rel string) string {
	if rel == "" {
		return "home"
	}
	return rel
}

// restoreToScratch writes the backup under /scratch/restore-<id>.
func (b *backups) restoreToScratch(ctx context.Context, id string, repo backup.Repo, snap backup.Snapshot, rel string, res agentapi.BackupRestoreResult) (agentapi.BackupRestoreResult, error) {
	scratch := b.r.st.ScratchPath(id)
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return res, err
	}
	name := "restore-" + snap.ShortID
	root, err := os.OpenRoot(scratch)
	if err != nil {
		return res, err
	}
	defer root.Close()
	if err := root.RemoveAll(name); err != nil {
		return res, err
	}
	if err := b.restic.Restore(ctx, repo, snap.ID, rel, filepath.Join(scratch, name)); err != nil {
		root.RemoveAll(name) //nolint:errcheck // nothing half-written is left
		return res, b.resticErr(id, err)
	}
	if _, err := root.Lstat(path.Join(name, rel)); errors.Is(err, os.ErrNotExist) {
		root.RemoveAll(name) //nolint:errcheck
		return res, perr(agentapi.CodeNotFound, "backup %s has no %s", snap.ShortID, orHome(rel))
	}
	if err := root.Lchown(name, ProjectUID, ProjectGID); err != nil {
		return res, err
	}
	res.Where = "/scratch/" + name
	if rel != "" {
		res.Where += "/" + rel
	}
	return res, nil
}

func dirNames(r *os.Root, dir string) ([]string, error) {
	f, err := r.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// forget removes project id's backups that the policy does not keep.
func (b *backups) forget(ctx context.Context, id string, version int64, req agentapi.BackupForgetRequest) (agentapi.BackupForgetResult, error) {
	repo, err := b.repo(id, version)
	if err != nil {
		return agentapi.BackupForgetResult{}, err
	}
	k := backup.Keep{Last: req.KeepLast, Daily: req.KeepDaily, Weekly: req.KeepWeekly, Monthly: req.KeepMonthly}
	if k.Zero() {
		return agentapi.BackupForgetResult{}, perr(agentapi.CodeInvalid, "a retention policy must keep something")
	}
	n, err := b.restic.Forget(ctx, repo, projectTags(id), k)
	if errors.Is(err, backup.ErrNoRepository) {
		return agentapi.BackupForgetResult{}, nil
	}
	if err != nil {
		return agentapi.BackupForgetResult{}, b.resticErr(id, err)
	}
	left, err := b.restic.Snapshots(ctx, repo, projectTags(id))
	if err != nil {
		return agentapi.BackupForgetResult{}, b.resticErr(id, err)
	}
	return agentapi.BackupForgetResult{Removed: n, Kept: len(left)}, nil
}

// purge removes every backup of project id, and its configuration here.
func (b *backups) purge(ctx context.Context, id string, version int64) (agentapi.BackupPurgeResult, error) {
	repo, err := b.repo(id, version)
	if err != nil {
		return agentapi.BackupPurgeResult{}, err
	}
	n, gone, err := b.restic.Purge(ctx, repo)
	if err != nil {
		return agentapi.BackupPurgeResult{}, b.resticErr(id, err)
	}
	b.drop(id)
	return agentapi.BackupPurgeResult{Removed: n, RepositoryRemoved: gone}, nil
}
