package client

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
)

// Ops are the deployment's operations on a server.
type Ops struct{ C *Client }

var _ server.Ops = Ops{}

// Cost asks for the report of the hosts the key's account may see (o.Include
// is the server's to decide).
func (o Ops) Cost(ctx context.Context, r cost.ReportOptions) (cost.Report, error) {
	q := url.Values{}
	if r.Host != "" {
		q.Set("host", r.Host)
	}
	if !r.From.IsZero() {
		q.Set("from", r.From.UTC().Format(time.RFC3339Nano))
	}
	return get[cost.Report](ctx, o.C, "/cost", q, "")
}

func (o Ops) SearchCatalog(ctx context.Context, s catalog.Search) (catalog.SearchResult, error) {
	return post[catalog.SearchResult](ctx, o.C, "/catalog/search", "", s)
}

func (o Ops) RefreshCatalog(ctx context.Context, clouds []string) (catalog.RefreshResult, error) {
	return post[catalog.RefreshResult](ctx, o.C, "/catalog/refresh", "", server.CatalogRefresh{Clouds: clouds})
}

func (o Ops) Providers(ctx context.Context) ([]provider.Info, error) {
	return get[[]provider.Info](ctx, o.C, "/providers", nil, "")
}

func (o Ops) Status(ctx context.Context, r model.HealthRequest) (model.Health, error) {
	q := url.Values{}
	if r.MinFreePercent != 0 {
		q.Set("min_free", strconv.FormatFloat(r.MinFreePercent, 'g', -1, 64))
	}
	if !r.FailedSince.IsZero() {
		q.Set("failed_since", r.FailedSince.UTC().Format(time.RFC3339Nano))
	}
	return get[model.Health](ctx, o.C, "/status", q, "")
}

func (o Ops) Reconcile(ctx context.Context, p reconcile.Pass) (reconcile.Report, error) {
	return post[reconcile.Report](ctx, o.C, "/reconcile", "", p)
}

func (h Hosts) BootLog(ctx context.Context, idOrName string, afterID int64, limit int) (model.Host, hosts.BootLog, error) {
	host, err := h.Get(ctx, idOrName)
	if err != nil {
		return host, hosts.BootLog{}, err
	}
	bl, err := get[hosts.BootLog](ctx, h.C, "/hosts/"+seg(host.ID)+"/boot-log", afterLimitQ(afterID, limit), "")
	return host, bl, err
}

func afterLimitQ(afterID int64, limit int) url.Values {
	q := url.Values{}
	if afterID > 0 {
		q.Set("after", fmt.Sprint(afterID))
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	return q
}

// Backups.

func (p Projects) SetBackupConfig(ctx context.Context, c projects.Caller, repository string, credentials map[string]string) (projects.BackupConfigView, error) {
	return post[projects.BackupConfigView](ctx, p.C, "/backup-config", c.As, server.BackupConfigRequest{Repository: repository, Credentials: credentials})
}

func (p Projects) GetBackupConfig(ctx context.Context) (projects.BackupConfigView, error) {
	return get[projects.BackupConfigView](ctx, p.C, "/backup-config", nil, "")
}

func (p Projects) StartBackup(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, ppath(id, "backups"), c.As, nil)
}

func (p Projects) Backups(ctx context.Context, c projects.Caller, id string) ([]projects.BackupInfo, error) {
	return get[[]projects.BackupInfo](ctx, p.C, ppath(id, "backups"), nil, c.As)
}

func (p Projects) RestoreBackup(ctx context.Context, c projects.Caller, id string, r projects.RestoreBackupRequest) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, ppath(id, "backups", "restore"), c.As,
		server.BackupRestoreRequest{Backup: r.Backup, Path: r.Path, ToScratch: r.ToScratch, ToHost: r.ToHost})
}

func (p Projects) StaleBackups(ctx context.Context, c projects.Caller, all bool, age time.Duration) ([]projects.StaleBackup, error) {
	q := url.Values{"age": {age.String()}}
	boolQ(q, "all", all)
	return get[[]projects.StaleBackup](ctx, p.C, "/backups/stale", q, c.As)
}

// Idle stop and images.

func (p Projects) SetHostIdle(ctx context.Context, c projects.Caller, host string, after time.Duration) (agentapi.IdlePolicy, error) {
	return post[agentapi.IdlePolicy](ctx, p.C, hpath(host, "idle"), c.As, server.IdleRequest{StopAfterSeconds: int64(after / time.Second)})
}

func (p Projects) HostIdle(ctx context.Context, c projects.Caller, host string) (model.Host, agentapi.IdlePolicy, error) {
	r, err := get[server.HostIdle](ctx, p.C, hpath(host, "idle"), nil, c.As)
	return r.Host, r.Policy, err
}

func (p Projects) Images(ctx context.Context, c projects.Caller, host string) (model.Host, []projects.ImageStatus, error) {
	r, err := get[server.HostImages](ctx, p.C, hpath(host, "images"), nil, c.As)
	return r.Host, r.Images, err
}

func (p Projects) BuildImage(ctx context.Context, c projects.Caller, r projects.BuildImageRequest, progress func(string)) (model.Host, bool, error) {
	b, err := p.C.BuildImage(ctx, c.As, r.Host, server.ImageBuildRequest{Name: r.Name, Suite: r.Suite, Include: r.Include, Mirror: r.Mirror, Rebuild: r.Rebuild}, progress)
	return b.Host, b.Cached, err
}
