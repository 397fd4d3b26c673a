package server

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Ops are the operations on the deployment as a whole: cost, the machine
// catalog, the providers and reconcile (pkg/app.Ops in `serve`). The
// command layer calls the same interface in both modes.
type Ops interface {
	Cost(ctx context.Context, o cost.ReportOptions) (cost.Report, error)
	SearchCatalog(ctx context.Context, s catalog.Search) (catalog.SearchResult, error)
	RefreshCatalog(ctx context.Context, clouds []string) (catalog.RefreshResult, error)
	Providers(ctx context.Context) ([]provider.Info, error)
	Reconcile(ctx context.Context, p reconcile.Pass) (reconcile.Report, error)
	// Status is the deployment's health at a glance (`status`).
	Status(ctx context.Context, r model.HealthRequest) (model.Health, error)
}

// Bodies and results of the routes of ops.go.
type (
	// CatalogRefresh names the clouds to refresh (none: every configured
	// one).
	CatalogRefresh struct {
		Clouds []string `json:"clouds"`
	}
	// BackupConfigRequest sets the backup repository; Credentials are
	// secrets, never answered, logged or audited.
	BackupConfigRequest struct {
		Repository  string            `json:"repository"`
		Credentials map[string]string `json:"credentials"`
	}
	BackupRestoreRequest struct {
		Backup    string `json:"backup"`
		Path      string `json:"path"`
		ToScratch bool   `json:"to_scratch"`
		ToHost    string `json:"to_host"`
	}
	IdleRequest struct {
		StopAfterSeconds int64 `json:"stop_after_seconds"`
	}
	HostIdle struct {
		Host   model.Host          `json:"host"`
		Policy agentapi.IdlePolicy `json:"policy"`
	}
	HostImages struct {
		Host   model.Host             `json:"host"`
		Images []projects.ImageStatus `json:"images"`
	}
)

func (s *Server) opsRoutes() []route {
	p := Prefix
	return []route{
		{method: get, path: p + "/hosts/{host}/boot-log", out: typeOf[hosts.BootLog](), run: s.bootLog},
		{method: get, path: p + "/cost", out: typeOf[cost.Report](), run: s.cost},
		{method: post, path: p + "/catalog/search", in: typeOf[catalog.Search](), out: typeOf[catalog.SearchResult](), run: func(r *request) (any, error) {
			var b catalog.Search
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Ops.SearchCatalog(r.Context(), b)
		}},
		{method: post, path: p + "/catalog/refresh", in: typeOf[CatalogRefresh](), out: typeOf[catalog.RefreshResult](), run: func(r *request) (any, error) {
			var b CatalogRefresh
			if err := s.adminDecode(r, "refresh the catalog", &b); err != nil {
				return nil, err
			}
			return s.Ops.RefreshCatalog(r.Context(), b.Clouds)
		}},
		{method: get, path: p + "/providers", out: typeOf[[]provider.Info](), run: func(r *request) (any, error) { return s.Ops.Providers(r.Context()) }},
		{method: get, path: p + "/status", out: typeOf[model.Health](), run: s.status},
		{method: post, path: p + "/reconcile", in: typeOf[reconcile.Pass](), out: typeOf[reconcile.Report](), run: func(r *request) (any, error) {
			var b reconcile.Pass
			if err := s.adminDecode(r, "reconcile", &b); err != nil {
				return nil, err
			}
			return s.Ops.Reconcile(r.Context(), b)
		}},

		{method: get, path: p + "/backup-config", out: typeOf[projects.BackupConfigView](), run: func(r *request) (any, error) {
			if err := s.adminDecode(r, "see the backup configuration", nil); err != nil {
				return nil, err
			}
			return s.Projects.GetBackupConfig(r.Context())
		}},
		{method: post, path: p + "/backup-config", in: typeOf[BackupConfigRequest](), out: typeOf[projects.BackupConfigView](), run: func(r *request) (any, error) {
			var b BackupConfigRequest
			if err := s.adminDecode(r, "configure backups", &b); err != nil {
				return nil, err
			}
			return s.Projects.SetBackupConfig(r.Context(), r.id.caller(), b.Repository, b.Credentials)
		}},
		{method: get, path: p + "/backups/stale", out: typeOf[[]projects.StaleBackup](), run: func(r *request) (any, error) {
			age, err := durationParam(r.URL.Query(), "age")
			if err != nil {
				return nil, err
			}
			return s.Projects.StaleBackups(r.Context(), r.id.caller(), r.URL.Query().Get("all") == "true", age)
		}},
		{method: get, path: p + "/projects/{project}/backups", out: typeOf[[]projects.BackupInfo](), run: func(r *request) (any, error) {
			return s.Projects.Backups(r.Context(), r.id.caller(), r.PathValue("project"))
		}},
		{method: post, path: p + "/projects/{project}/backups", out: typeOf[projects.Submitted](), run: s.projectAction(s.Projects.StartBackup)},
		{method: post, path: p + "/projects/{project}/backups/restore", in: typeOf[BackupRestoreRequest](), out: typeOf[projects.Submitted](), run: func(r *request) (any, error) {
			var b BackupRestoreRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Projects.RestoreBackup(r.Context(), r.id.caller(), r.PathValue("project"),
				projects.RestoreBackupRequest{Backup: b.Backup, Path: b.Path, ToScratch: b.ToScratch, ToHost: b.ToHost})
		}},

		{method: get, path: p + "/hosts/{host}/idle", out: typeOf[HostIdle](), run: func(r *request) (any, error) {
			h, pol, err := s.Projects.HostIdle(r.Context(), r.id.caller(), r.PathValue("host"))
			return HostIdle{Host: h, Policy: pol}, err
		}},
		{method: post, path: p + "/hosts/{host}/idle", in: typeOf[IdleRequest](), out: typeOf[agentapi.IdlePolicy](), run: func(r *request) (any, error) {
			var b IdleRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Projects.SetHostIdle(r.Context(), r.id.caller(), r.PathValue("host"), time.Duration(b.StopAfterSeconds)*time.Second)
		}},
		{method: post, path: p + "/hosts/{host}/images/build", in: typeOf[ImageBuildRequest](), stream: s.buildImage},
		{method: get, path: p + "/hosts/{host}/images", out: typeOf[HostImages](), run: func(r *request) (any, error) {
			h, is, err := s.Projects.Images(r.Context(), r.id.caller(), r.PathValue("host"))
			return HostImages{Host: h, Images: is}, err
		}},
	}
}

// adminDecode refuses a caller who is not an admin (what names the
// action) and decodes the body into v (nil: no body).
func (s *Server) adminDecode(r *request, what string, v any) error {
	account, admin, err := s.actor(r)
	if err != nil {
		return err
	}
	if !admin {
		return errkind.Errorf(errkind.Forbidden, "only admins may %s through the server; %s is not an admin", what, account)
	}
	if v == nil {
		return nil
	}
	return r.decode(v)
}

func (s *Server) bootLog(r *request) (any, error) {
	return hostPage(s, r, s.Hosts.BootLog)
}

// cost reports the hosts the caller may see: an admin all of them.
// status is an admin's: it names every account's hosts and failed jobs.
func (s *Server) status(r *request) (any, error) {
	if err := s.adminDecode(r, "see the deployment's status", nil); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var hr model.HealthRequest
	if v := q.Get("min_free"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, errkind.Errorf(errkind.Invalid, "min_free=%q: want a percentage", v)
		}
		hr.MinFreePercent = f
	}
	if v := q.Get("failed_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, errkind.Errorf(errkind.Invalid, "failed_since=%q: want an RFC 3339 time", v)
		}
		hr.FailedSince = t
	}
	return s.Ops.Status(r.Context(), hr)
}

func (s *Server) cost(r *request) (any, error) {
	q := r.URL.Query()
	o := cost.ReportOptions{Host: q.Get("host")}
	if v := q.Get("from"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, errkind.Errorf(errkind.Invalid, "from=%q: want an RFC 3339 time", v)
		}
		o.From = t
	}
	if o.Host != "" {
		h, err := s.visibleHost(r, o.Host)
		if err != nil {
			return nil, err
		}
		o.Host = h.ID
	}
	account, admin, err := s.actor(r)
	if err != nil {
		return nil, err
	}
	if !admin {
		// Decided before the report, with errors, so the filter is a lookup.
		hs, err := s.Store.ListHosts(r.Context(), store.HostFilter{IncludeDeleted: true})
		if err != nil {
			return nil, err
		}
		visible := map[string]bool{}
		for _, h := range hs {
			ok, err := s.mayUse(r.Context(), account, false, h)
			if err != nil {
				return nil, err
			}
			visible[h.ID] = ok
		}
		o.Include = func(h model.Host) bool { return visible[h.ID] }
	}
	return s.Ops.Cost(r.Context(), o)
}

// afterLimit reads ?after=ID&limit=N of a log.
func afterLimit(q url.Values) (after int64, limit int, err error) {
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, 0, errkind.Errorf(errkind.Invalid, "after=%q: want a log entry id", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return 0, 0, errkind.Errorf(errkind.Invalid, "limit=%q: want a count", v)
		}
	}
	return after, limit, nil
}
