package projects

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/backup"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// BackupSettings are the backup.* settings.
type BackupSettings struct {
	// ConfigTTL is how long a host may keep a project's backup
	// configuration before it must get it again.
	ConfigTTL time.Duration
	// Schedule is how often the worker backs up each live project (0:
	// never).
	Schedule time.Duration
	// Keep is the retention applied after each scheduled backup (zero:
	// keep every backup).
	Keep agentapi.BackupForgetRequest
}

// DefaultBackupConfigTTL is used when the settings leave it zero.
const DefaultBackupConfigTTL = time.Hour

// configTTL is how long a handed-out configuration lasts.
func (b BackupSettings) configTTL() time.Duration {
	if b.ConfigTTL <= 0 {
		return DefaultBackupConfigTTL
	}
	return b.ConfigTTL
}

// BackupConfigView is the backup configuration as shown: never with
// secrets.
type BackupConfigView struct {
	model.BackupConfig
	Kind string `json:"kind"`
	// TTL is how long hosts keep a project's configuration.
	TTL string `json:"config_ttl"`
}

func (s *Service) view(c model.BackupConfig) BackupConfigView {
	return BackupConfigView{BackupConfig: c, Kind: backup.KindOf(c.Repository), TTL: s.Backup.configTTL().String()}
}

// SetBackupConfig sets (or replaces: rotating credentials is setting them
// again) where projects are backed up. While the deployment has no admin,
// anyone with its database may; after that only admins.
func (s *Service) SetBackupConfig(ctx context.Context, c Caller, repository string, credentials map[string]string) (BackupConfigView, error) {
	if err := backup.CheckURL(repository); err != nil {
		return BackupConfigView{}, invalid("--repository: %s", strings.TrimSuffix(err.Error(), ": "+backup.ErrInvalid.Error()))
	}
	kind := backup.KindOf(repository)
	want := backup.CredentialKeys[kind]
	if len(want) == 0 && len(credentials) > 0 {
		return BackupConfigView{}, invalid("--credentials: a local repository needs none; leave --credentials out")
	}
	for _, k := range want {
		if credentials[k] == "" {
			return BackupConfigView{}, invalid("--credentials: a %s repository needs %s in the credentials file (lines KEY=VALUE: %s)", kind, k, strings.Join(want, ", "))
		}
	}
	for k := range credentials {
		if !contains(want, k) {
			return BackupConfigView{}, invalid("--credentials: unknown key %q for a %s repository (want %s)", k, kind, strings.Join(want, ", "))
		}
	}
	a, err := s.who(ctx, c)
	if err != nil {
		return BackupConfigView{}, err
	}
	if !a.Admin {
		admins, err := s.Store.ListAdmins(ctx)
		if err != nil {
			return BackupConfigView{}, err
		}
		if len(admins) > 0 {
			return BackupConfigView{}, refused("only admins may configure backups; %s is not an admin", a.ID)
		}
	}
	cfg, err := s.Store.PutBackupConfig(ctx, repository, credentials, s.Now())
	if err != nil {
		return BackupConfigView{}, err
	}
	return s.view(cfg), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// GetBackupConfig returns the backup configuration without secrets.
func (s *Service) GetBackupConfig(ctx context.Context) (BackupConfigView, error) {
	cfg, err := s.backupConfig(ctx)
	if err != nil {
		return BackupConfigView{}, err
	}
	return s.view(cfg), nil
}

func (s *Service) backupConfig(ctx context.Context) (model.BackupConfig, error) {
	cfg, err := s.Store.GetBackupConfig(ctx)
	if errkind.Is(err, errkind.NotFound) {
		return cfg, errkind.Errorf(errkind.NotFound, "no backup repository is configured: set one with `cocalc-hosts backup config --repository PATH|URL`")
	}
	return cfg, err
}

// agentBackupConfig is what project p's host gets: p's repository under
// the configured location, with p's own password, valid for the TTL.
func (s *Service) agentBackupConfig(ctx context.Context, p model.Project) (agentapi.BackupConfig, error) {
	cfg, err := s.backupConfig(ctx)
	if err != nil {
		return agentapi.BackupConfig{}, err
	}
	pw, err := s.Store.BackupKey(ctx, p.ID, newBackupKey, s.Now())
	if err != nil {
		return agentapi.BackupConfig{}, err
	}
	return agentapi.BackupConfig{
		Repository: backup.Sub(cfg.Repository, p.ID), Credentials: cfg.Credentials, Password: pw,
		Version: cfg.Version, ExpiresAt: s.Now().Add(s.Backup.configTTL()).UTC(),
	}, nil
}

func newBackupKey() string {
	b := make([]byte, 32)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// withBackupConfig calls fn on host h's agent; when the agent has no
// usable configuration for p (none yet, expired, or refused by the
// repository) it hands it a fresh one and calls fn once more.
func withBackupConfig[T any](ctx context.Context, s *Service, client *agentapi.Client, h model.Host, p model.Project, fn func(version int64) (T, error)) (T, error) {
	var out T
	cur, err := s.backupConfig(ctx)
	if err != nil {
		return out, err
	}
	out, err = fn(cur.Version)
	if !agentapi.IsCode(err, agentapi.CodeBackupConfig) {
		return out, backupErr(h, err)
	}
	cfg, cerr := s.agentBackupConfig(ctx, p)
	if cerr != nil {
		return out, cerr
	}
	if perr := client.PutBackupConfig(ctx, p.ID, cfg); perr != nil {
		return out, hostErr(h, perr)
	}
	out, err = fn(cfg.Version)
	if agentapi.IsCode(err, agentapi.CodeBackupConfig) {
		var ae *agentapi.Error
		errors.As(err, &ae)
		return out, errkind.Errorf(errkind.Auth, "backup repository refused the credentials (%s): set working ones with `cocalc-hosts backup config --repository URL --credentials FILE`", ae.Message)
	}
	return out, backupErr(h, err)
}

// backupErr explains an agent's backup error.
func backupErr(h model.Host, err error) error {
	if err == nil {
		return nil
	}
	var ae *agentapi.Error
	if errors.As(err, &ae) && ae.Code == agentapi.CodeUnavailable {
		return errkind.Errorf(errkind.Failed, "backup repository does not answer (%s): check that its server runs and host %s can reach it, or point backups elsewhere with `cocalc-hosts backup config --repository URL`", ae.Message, h.Name)
	}
	return hostErr(h, err)
}

// BackupInfo is one backup of a project.
type BackupInfo struct {
	model.BackupRecord
	HostName string `json:"host_name"`
}

// StartBackup queues a backup of a project's home.
func (s *Service) StartBackup(ctx context.Context, c Caller, id string) (Submitted, error) {
	a, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return Submitted{}, err
	}
	if _, err := s.backupConfig(ctx); err != nil {
		return Submitted{}, err
	}
	if _, err := s.hostOf(ctx, p, "back up"); err != nil {
		return Submitted{}, err
	}
	return s.enqueue(ctx, p, model.ActionBackupCreate, payload{By: a.By})
}

// Backups lists a project's backups, oldest first: asked of its host's
// repository when the host runs (and recorded), else as last recorded.
func (s *Service) Backups(ctx context.Context, c Caller, id string) ([]BackupInfo, error) {
	_, p, err := s.projectFor(ctx, c, id)
	if err != nil {
		return nil, err
	}
	if _, err := s.backupConfig(ctx); err != nil {
		return nil, err
	}
	if h, err := s.hostOf(ctx, p, "list backups of"); err == nil {
		if _, err := s.syncBackups(ctx, h, p); err != nil {
			return nil, err
		}
	}
	return s.backupInfos(ctx, p.ID)
}

func (s *Service) backupInfos(ctx context.Context, id string) ([]BackupInfo, error) {
	recs, err := s.Store.ListBackups(ctx, id)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	out := make([]BackupInfo, len(recs))
	for i, r := range recs {
		if _, ok := names[r.HostID]; !ok {
			names[r.HostID] = r.HostID
			if h, err := s.Store.GetHost(ctx, r.HostID); err == nil {
				names[r.HostID] = h.Name
			}
		}
		out[i] = BackupInfo{BackupRecord: r, HostName: names[r.HostID]}
	}
	return out, nil
}

// syncBackups asks h for p's backups and makes the record match them.
func (s *Service) syncBackups(ctx context.Context, h model.Host, p model.Project) ([]agentapi.Backup, error) {
	client, err := s.client(ctx, h)
	if err != nil {
		return nil, err
	}
	bs, err := withBackupConfig(ctx, s, client, h, p, func(v int64) ([]agentapi.Backup, error) { return client.Backups(ctx, p.ID, v) })
	if err != nil {
		return nil, err
	}
	recs := make([]model.BackupRecord, len(bs))
	keep := make([]string, len(bs))
	for i, b := range bs {
		recs[i] = model.BackupRecord{ProjectID: p.ID, ID: b.ID, ShortID: b.ShortID, HostID: b.HostID, Time: b.Time}
		keep[i] = b.ID
	}
	return bs, s.Store.RecordBackups(ctx, p.ID, recs, keep)
}

// RestoreBackupRequest asks for a restore from a backup.
type RestoreBackupRequest struct {
	// Backup is an id, a unique prefix of one, or "latest".
	Backup string
	// Path in the home; empty: all of it.
	Path string
	// ToScratch writes to /scratch/restore-ID instead of the home.
	ToScratch bool
	// ToHost restores the whole project onto another host and moves it
	// there (its old host broken or gone).
	ToHost string
}

// RestoreBackup queues restoring a project from one of its backups.
func (s *Service) RestoreBackup(ctx context.Context, c Caller, id string, r RestoreBackupRequest) (Submitted, error) {
	if r.Backup == "" {
		return Submitted{}, invalid("--backup: give a backup id or latest (see `cocalc-hosts project backups %s`)", id)
	}
	clean, err := storage.CleanRestorePath(r.Path)
	if err != nil {
		return Submitted{}, invalid("--path %s", strings.TrimPrefix(strings.ReplaceAll(err.Error(), ": "+storage.ErrInvalid.Error(), ""), "path "))
	}
	if r.ToHost != "" && (clean != "" || r.ToScratch) {
		return Submitted{}, invalid("--to restores the whole project onto another host; leave out --path and --to-scratch")
	}
	a, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return Submitted{}, err
	}
	if _, err := s.backupConfig(ctx); err != nil {
		return Submitted{}, err
	}
	// The host that will run the restore, and whose repository access
	// finds the backup.
	var target model.Host
	if r.ToHost != "" {
		if target, err = s.restoreTarget(ctx, a, p, r.ToHost); err != nil {
			return Submitted{}, err
		}
	} else if target, err = s.hostOf(ctx, p, "restore"); err != nil {
		return Submitted{}, err
	}
	bs, err := s.syncBackups(ctx, target, p)
	if err != nil {
		return Submitted{}, err
	}
	snaps := make([]backup.Snapshot, len(bs))
	for i, b := range bs {
		snaps[i] = backup.Snapshot{ID: b.ID, ShortID: b.ShortID, Time: b.Time}
	}
	found, err := backup.Pick(snaps, r.Backup)
	switch {
	case errors.Is(err, backup.ErrNotFound) && r.Backup == "latest":
		return Submitted{}, errkind.Errorf(errkind.NotFound, "project %s has no backups yet: make one with `cocalc-hosts project backup %s`", id, id)
	case errors.Is(err, backup.ErrNotFound):
		return Submitted{}, errkind.Errorf(errkind.NotFound, "project %s has no backup %q (see `cocalc-hosts project backups %s`)", id, r.Backup, id)
	case err != nil:
		return Submitted{}, invalid("--backup: %s (see `cocalc-hosts project backups %s`)", strings.TrimSuffix(err.Error(), ": "+backup.ErrInvalid.Error()), id)
	}
	// The id is fixed now, so a retry restores the same backup even if a
	// newer one appears meanwhile.
	return s.enqueue(ctx, p, model.ActionBackupRestore, payload{Snapshot: found.ID, Path: clean, ToScratch: r.ToScratch, ToHost: target.ID, By: a.By})
}

// restoreTarget checks that a may restore p onto host name.
func (s *Service) restoreTarget(ctx context.Context, a actor, p model.Project, name string) (model.Host, error) {
	h, err := s.liveHost(ctx, name)
	if err != nil {
		return h, err
	}
	if h.ID == p.HostID {
		return h, invalid("--to %s: project %s is on %s already; leave out --to to restore it in place", name, p.ID, h.Name)
	}
	ok, err := s.mayPlace(ctx, a, h)
	if err != nil {
		return h, err
	}
	if !ok {
		return h, refused("%s may not place projects on host %s (owned by %s): ask its owner to run `cocalc-hosts collaborators add %s %s`",
			a.ID, h.Name, h.Owner, h.Name, a.ID)
	}
	if h.Status != model.StatusRunning {
		return h, refused("cannot restore onto host %s: it is %s; start it with `cocalc-hosts start %s`", h.Name, h.Status, h.Name)
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return h, err
	}
	if _, err := s.checkHeadroom(ctx, client, h, p, true); err != nil {
		return h, err
	}
	return h, nil
}

// DeleteBackupsResult says what purging a project removed of its backups.
type DeleteBackupsResult struct {
	Removed           int  `json:"removed"`
	RepositoryRemoved bool `json:"repository_removed"`
	KeyDestroyed      bool `json:"key_destroyed"`
	// Error says why the backups could not be removed (the key is
	// destroyed all the same, so they cannot be read).
	Error string `json:"error,omitempty"`
}

func (r DeleteBackupsResult) String() string {
	if !r.KeyDestroyed {
		return "it had no backups"
	}
	var parts []string
	switch {
	case r.Error != "":
		parts = append(parts, "could not remove its backups ("+r.Error+")")
	case r.RepositoryRemoved:
		parts = append(parts, fmt.Sprintf("removed its %d backup(s) and its repository", r.Removed))
	default:
		parts = append(parts, fmt.Sprintf("removed its %d backup(s) (the repository keeps only its key files)", r.Removed))
	}
	parts = append(parts, "destroyed its repository key, so nothing left of its backups can be read")
	return strings.Join(parts, "; ")
}

// purgeBackups removes project p's backups through host h (nil: no host
// can run restic for it) and destroys its key either way.
func (s *Service) purgeBackups(ctx context.Context, h *model.Host, p model.Project) (DeleteBackupsResult, error) {
	var r DeleteBackupsResult
	has, err := s.Store.HasBackupKey(ctx, p.ID)
	if err != nil || !has {
		return r, err
	}
	switch {
	case h == nil:
		r.Error = "its host is gone"
	default:
		client, err := s.client(ctx, *h)
		if err != nil {
			r.Error = err.Error()
			break
		}
		res, err := withBackupConfig(ctx, s, client, *h, p, func(v int64) (agentapi.BackupPurgeResult, error) { return client.PurgeBackups(ctx, p.ID, v) })
		if err != nil {
			r.Error = err.Error()
			break
		}
		r.Removed, r.RepositoryRemoved = res.Removed, res.RepositoryRemoved
	}
	if _, err := s.Store.DestroyBackupKey(ctx, p.ID); err != nil {
		return r, err
	}
	r.KeyDestroyed = true
	return r, nil
}

// StaleBackup is a project whose newest backup is older than asked.
type StaleBackup struct {
	model.Project
	// LastBackup is nil when the project was never backed up.
	LastBackup *time.Time `json:"last_backup"`
}

// StaleBackups returns the caller's live projects (all of them, for an
// admin with all) whose newest backup is older than age, or that have
// none, oldest backup first.
func (s *Service) StaleBackups(ctx context.Context, c Caller, all bool, age time.Duration) ([]StaleBackup, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return nil, err
	}
	f := store.ProjectFilter{}
	if !(all && a.Admin) {
		f.Owner = a.ID
	}
	ps, err := s.Store.ListProjects(ctx, f)
	if err != nil {
		return nil, err
	}
	latest, err := s.Store.LatestBackups(ctx)
	if err != nil {
		return nil, err
	}
	cut := s.Now().Add(-age)
	out := []StaleBackup{}
	for _, p := range ps {
		t, ok := latest[p.ID]
		if ok && t.After(cut) {
			continue
		}
		sb := StaleBackup{Project: p}
		if ok {
			sb.LastBackup = &t
		}
		out = append(out, sb)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ti, tj := out[i].LastBackup, out[j].LastBackup
		return ti == nil && tj != nil || ti != nil && tj != nil && ti.Before(*tj)
	})
	return out, nil
}

// BackupFreshness is what `project show` says about a project's backups.
type BackupFreshness struct {
	LastBackup *time.Time        `json:"last_backup,omitempty"`
	Count      int               `json:"count"`
	StaleOn    []model.StaleCopy `json:"stale_copies,omitempty"`
}

// Freshness returns project id's newest recorded backup and stale copies.
func (s *Service) Freshness(ctx context.Context, id string) (BackupFreshness, error) {
	recs, err := s.Store.ListBackups(ctx, id)
	if err != nil {
		return BackupFreshness{}, err
	}
	f := BackupFreshness{Count: len(recs)}
	if len(recs) > 0 {
		t := recs[len(recs)-1].Time
		f.LastBackup = &t
	}
	if f.StaleOn, err = s.Store.StaleCopies(ctx, id); err != nil {
		return f, err
	}
	return f, nil
}

// ScheduleReport says what one pass of the backup schedule queued.
type ScheduleReport struct {
	Queued  int `json:"queued"`
	Skipped int `json:"skipped"`
}

// ScheduleBackups queues a backup (with retention) of every live project
// on a running host whose newest backup is older than the schedule.
func (s *Service) ScheduleBackups(ctx context.Context) (ScheduleReport, error) {
	var rep ScheduleReport
	if s.Backup.Schedule <= 0 {
		return rep, nil
	}
	if _, err := s.Store.GetBackupConfig(ctx); errkind.Is(err, errkind.NotFound) {
		return rep, nil
	} else if err != nil {
		return rep, err
	}
	ps, err := s.Store.ListProjects(ctx, store.ProjectFilter{})
	if err != nil {
		return rep, err
	}
	latest, err := s.Store.LatestBackups(ctx)
	if err != nil {
		return rep, err
	}
	due := s.Now().Add(-s.Backup.Schedule)
	for _, p := range ps {
		if t, ok := latest[p.ID]; ok && t.After(due) {
			continue
		}
		if p.State == model.ProjectCreating || p.State == model.ProjectError {
			rep.Skipped++
			continue
		}
		if _, err := s.hostOf(ctx, p, "back up"); err != nil {
			rep.Skipped++
			continue
		}
		sub, err := s.enqueue(ctx, p, model.ActionBackupCreate, payload{Scheduled: true})
		if err != nil || sub.Note != "" {
			// Other pending work, or this backup still pending: the next
			// pass looks again.
			rep.Skipped++
			continue
		}
		rep.Queued++
	}
	return rep, nil
}
