package server

import (
	"context"
	_ "embed"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/accounts"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

//go:embed openapi.json
var openapiDoc []byte

// route is one operation of the API.
type route struct {
	method, path string
	// public routes need no key: health, readiness, the API document.
	public bool
	// in and out are the types of the JSON body and answer (nil: none,
	// or not JSON), for the API document (openapi.go).
	in, out reflect.Type
	run     func(r *request) (any, error)
	// stream, instead of run, writes a streamed answer itself.
	stream func(w http.ResponseWriter, r *request) error
}

// Route is a method and path pattern the server answers ({name} is a path
// parameter), for the test that checks the OpenAPI document against them.
type Route struct{ Method, Path string }

// Routes lists every route.
func Routes() []Route {
	var out []Route
	for _, rt := range (&Server{}).routes() {
		out = append(out, Route{rt.method, rt.path})
	}
	return out
}

var streams = sync.OnceValue(func() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range (&Server{}).routes() {
		if rt.stream != nil {
			mux.Handle(rt.method+" "+rt.path, http.NotFoundHandler())
		}
	}
	return mux
})

// IsStream reports whether r asks for a streamed answer (events, exec,
// tunnels, image builds) rather than one JSON value: a proxy or checker
// in front of the server must pass those through unbuffered.
func IsStream(r *http.Request) bool {
	_, pattern := streams().Handler(r)
	return pattern != ""
}

const (
	get  = "GET"
	post = "POST"
	del  = "DELETE"
)

func (s *Server) routes() []route {
	p := Prefix
	return append([]route{
		{method: get, path: "/healthz", out: typeOf[map[string]string](), public: true, run: func(*request) (any, error) { return map[string]string{"status": "ok"}, nil }},
		{method: get, path: "/readyz", out: typeOf[map[string]string](), public: true, run: s.ready},
		{method: get, path: p + "/openapi.json", public: true, run: func(*request) (any, error) {
			doc, err := openapiServed()
			return rawJSON(doc), err
		}},
		{method: get, path: p + "/whoami", out: typeOf[Whoami](), run: s.whoami},
		{method: get, path: p + "/tunnel", public: true, stream: s.hostTunnel},
		{method: get, path: p + "/hosts/{host}/relay/{target}", public: true, stream: s.relayIngress},

		{method: get, path: p + "/hosts", out: typeOf[[]model.Host](), run: s.listHosts},
		{method: post, path: p + "/hosts", in: typeOf[hosts.CreateRequest](), out: typeOf[hosts.Submitted](), run: s.createHost},
		{method: post, path: p + "/plan", in: typeOf[hosts.CreateRequest](), out: typeOf[hosts.Plan](), run: s.planHost},
		{method: get, path: p + "/hosts/{host}", out: typeOf[model.Host](), run: func(r *request) (any, error) { return s.visibleHost(r, r.PathValue("host")) }},
		{method: get, path: p + "/hosts/{host}/bootstrapped", out: typeOf[bool](), run: s.bootstrapped},
		{method: get, path: p + "/hosts/{host}/detail", out: typeOf[hosts.Detail](), run: func(r *request) (any, error) {
			h, err := s.visibleHost(r, r.PathValue("host"))
			if err != nil {
				return nil, err
			}
			return s.Hosts.Detail(r.Context(), h.ID)
		}},
		{method: get, path: p + "/hosts/{host}/agent-metrics", out: typeOf[hosts.AgentMetrics](), run: func(r *request) (any, error) {
			h, err := s.visibleHost(r, r.PathValue("host"))
			if err != nil {
				return nil, err
			}
			return s.Hosts.AgentMetrics(r.Context(), h.ID)
		}},
		{method: get, path: p + "/hosts/{host}/log", out: typeOf[[]model.LogEntry](), run: s.hostLog},
		{method: post, path: p + "/hosts/{host}/start", out: typeOf[hosts.Submitted](), run: s.hostAction(func(ctx context.Context, h string, _ *request) (hosts.Submitted, error) { return s.Hosts.Start(ctx, h) })},
		{method: post, path: p + "/hosts/{host}/stop", in: typeOf[hosts.StopOptions](), out: typeOf[hosts.Submitted](), run: s.hostAction(func(ctx context.Context, h string, r *request) (hosts.Submitted, error) {
			var o hosts.StopOptions
			if err := r.decode(&o); err != nil {
				return hosts.Submitted{}, err
			}
			return s.Hosts.Stop(ctx, h, o)
		})},
		{method: post, path: p + "/hosts/{host}/delete", in: typeOf[hosts.DeleteOptions](), out: typeOf[hosts.Submitted](), run: s.hostAction(func(ctx context.Context, h string, r *request) (hosts.Submitted, error) {
			var o hosts.DeleteOptions
			if err := r.decode(&o); err != nil {
				return hosts.Submitted{}, err
			}
			return s.Hosts.Delete(ctx, h, o)
		})},
		{method: post, path: p + "/hosts/{host}/upgrade", out: typeOf[hosts.Submitted](), run: s.hostAction(func(ctx context.Context, h string, _ *request) (hosts.Submitted, error) {
			return s.Hosts.Upgrade(ctx, h)
		})},
		{method: get, path: p + "/hosts/{host}/collaborators", out: typeOf[HostAccounts](), run: func(r *request) (any, error) {
			h, c, err := s.Projects.Collaborators(r.Context(), r.id.caller(), r.PathValue("host"))
			return HostAccounts{Host: h, Accounts: c}, err
		}},
		{method: post, path: p + "/hosts/{host}/collaborators/{account}", out: typeOf[model.Host](), run: func(r *request) (any, error) {
			return s.Projects.AddCollaborator(r.Context(), r.id.caller(), r.PathValue("host"), r.PathValue("account"))
		}},
		{method: del, path: p + "/hosts/{host}/collaborators/{account}", out: typeOf[model.Host](), run: func(r *request) (any, error) {
			return s.Projects.RemoveCollaborator(r.Context(), r.id.caller(), r.PathValue("host"), r.PathValue("account"))
		}},
		{method: post, path: p + "/hosts/{host}/shared", in: typeOf[SharedRequest](), out: typeOf[model.Host](), run: func(r *request) (any, error) {
			var b SharedRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Projects.SetShared(r.Context(), r.id.caller(), r.PathValue("host"), b.Shared)
		}},

		{method: get, path: p + "/jobs", out: typeOf[[]model.Job](), run: s.activeJobs},
		{method: get, path: p + "/jobs/{job}", out: typeOf[model.Job](), run: s.waitJob},
		{method: get, path: p + "/jobs/{job}/events", stream: s.followJob},
		{method: get, path: p + "/events", stream: s.streamEvents},

		{method: get, path: p + "/projects", out: typeOf[[]model.Project](), run: s.listProjects},
		{method: post, path: p + "/projects", in: typeOf[projects.CreateRequest](), out: typeOf[projects.Submitted](), run: func(r *request) (any, error) {
			var req projects.CreateRequest
			if err := r.decode(&req); err != nil {
				return nil, err
			}
			return s.Projects.Create(r.Context(), r.id.caller(), req)
		}},
		{method: get, path: p + "/projects/resolve", out: typeOf[ResolvedProject](), run: func(r *request) (any, error) {
			id, err := s.Projects.Resolve(r.Context(), r.id.caller(), r.URL.Query().Get("ref"))
			return ResolvedProject{ID: id}, err
		}},
		{method: get, path: p + "/projects/{project}", out: typeOf[projects.Detail](), run: func(r *request) (any, error) {
			return s.Projects.Show(r.Context(), r.id.caller(), r.PathValue("project"))
		}},
		{method: get, path: p + "/projects/{project}/record", out: typeOf[model.Project](), run: func(r *request) (any, error) {
			return s.Projects.Get(r.Context(), r.id.caller(), r.PathValue("project"))
		}},
		{method: post, path: p + "/projects/{project}/start", out: typeOf[projects.Submitted](), run: s.projectAction(s.Projects.Start)},
		{method: post, path: p + "/projects/{project}/stop", out: typeOf[projects.Submitted](), run: s.projectAction(s.Projects.Stop)},
		{method: post, path: p + "/projects/{project}/restart", out: typeOf[projects.Submitted](), run: s.projectAction(s.Projects.Restart)},
		{method: post, path: p + "/projects/{project}/delete", in: typeOf[DeleteProject](), out: typeOf[projects.Submitted](), run: func(r *request) (any, error) {
			var b DeleteProject
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Projects.Delete(r.Context(), r.id.caller(), r.PathValue("project"), b.Purge)
		}},
		{method: get, path: p + "/projects/{project}/snapshots", out: typeOf[[]agentapi.Snapshot](), run: func(r *request) (any, error) {
			return s.Projects.Snapshots(r.Context(), r.id.caller(), r.PathValue("project"))
		}},
		{method: post, path: p + "/projects/{project}/snapshots", in: typeOf[SnapshotRequest](), out: typeOf[SnapshotResult](), run: func(r *request) (any, error) {
			var b SnapshotRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			sub, name, err := s.Projects.Snapshot(r.Context(), r.id.caller(), r.PathValue("project"), b.Name)
			return SnapshotResult{Submitted: sub, Name: name}, err
		}},
		{method: post, path: p + "/projects/{project}/restore", in: typeOf[RestoreRequest](), out: typeOf[projects.Submitted](), run: func(r *request) (any, error) {
			var b RestoreRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Projects.Restore(r.Context(), r.id.caller(), r.PathValue("project"), b.Snapshot, b.Path)
		}},
		{method: post, path: p + "/projects/{project}/move", in: typeOf[MoveRequest](), out: typeOf[projects.Submitted](), run: func(r *request) (any, error) {
			var b MoveRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			sub, _, err := s.Projects.Move(r.Context(), r.id.caller(), projects.MoveRequest{Project: r.PathValue("project"), To: b.To})
			return sub, err
		}},
		{method: post, path: p + "/projects/{project}/move/cleanup", out: typeOf[model.Move](), run: func(r *request) (any, error) {
			return s.Projects.CleanupMove(r.Context(), r.id.caller(), r.PathValue("project"), func(string) {})
		}},
		{method: post, path: p + "/projects/{project}/clone", in: typeOf[CloneRequest](), out: typeOf[projects.Submitted](), run: func(r *request) (any, error) {
			var b CloneRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			sub, _, err := s.Projects.Clone(r.Context(), r.id.caller(), projects.CloneRequest{Project: r.PathValue("project"), To: b.To, Title: b.Name})
			return sub, err
		}},
		{method: get, path: p + "/projects/{project}/collaborators", out: typeOf[[]string](), run: func(r *request) (any, error) {
			return s.Projects.ProjectCollaborators(r.Context(), r.id.caller(), r.PathValue("project"))
		}},
		{method: post, path: p + "/projects/{project}/collaborators/{account}", out: typeOf[string](), run: func(r *request) (any, error) {
			return s.Projects.AddProjectCollaborator(r.Context(), r.id.caller(), r.PathValue("project"), r.PathValue("account"))
		}},
		{method: del, path: p + "/projects/{project}/collaborators/{account}", out: typeOf[string](), run: func(r *request) (any, error) {
			return s.Projects.RemoveProjectCollaborator(r.Context(), r.id.caller(), r.PathValue("project"), r.PathValue("account"))
		}},
		{method: post, path: p + "/projects/{project}/exec", stream: s.execProject},
		{method: post, path: p + "/projects/{project}/open", in: typeOf[OpenRequest](), out: typeOf[projects.Opened](), run: func(r *request) (any, error) {
			var b OpenRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Projects.Open(r.Context(), r.id.caller(), r.PathValue("project"), b.Port)
		}},
		{method: post, path: p + "/projects/{project}/ssh-cert", in: typeOf[SSHCertRequest](), out: typeOf[projects.SSHAccess](), run: func(r *request) (any, error) {
			var b SSHCertRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(b.PublicKey))
			if err != nil {
				return nil, errkind.Errorf(errkind.Invalid, "public_key: not an SSH public key: %v", err)
			}
			return s.Projects.SSHCertificate(r.Context(), r.id.caller(), r.PathValue("project"), pub)
		}},

		{method: get, path: p + "/ssh-keys", out: typeOf[[]model.SSHKey](), run: func(r *request) (any, error) { return s.Projects.SSHKeys(r.Context(), r.id.caller()) }},
		{method: post, path: p + "/ssh-keys", in: typeOf[SSHKeyRequest](), out: typeOf[SSHKeyResult](), run: func(r *request) (any, error) {
			var b SSHKeyRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			k, warn, err := s.Projects.AddSSHKey(r.Context(), r.id.caller(), b.Line)
			return SSHKeyResult{Key: k, Warnings: warn}, err
		}},
		{method: del, path: p + "/ssh-keys/{fingerprint}", out: typeOf[SSHKeyResult](), run: func(r *request) (any, error) {
			warn, err := s.Projects.RemoveSSHKey(r.Context(), r.id.caller(), r.PathValue("fingerprint"))
			return SSHKeyResult{Warnings: warn}, err
		}},

		{method: get, path: p + "/admins", out: typeOf[[]string](), run: func(r *request) (any, error) { return s.Projects.Admins(r.Context()) }},
		{method: post, path: p + "/admins/{account}", in: typeOf[AdminRequest](), out: typeOf[struct{}](), run: func(r *request) (any, error) {
			var b AdminRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return struct{}{}, s.Projects.SetAdmin(r.Context(), r.id.caller(), r.PathValue("account"), b.Admin)
		}},
		{method: get, path: p + "/accounts", out: typeOf[[]model.Account](), run: func(r *request) (any, error) { return s.Accounts.List(r.Context(), r.id.caller()) }},
		{method: post, path: p + "/accounts", in: typeOf[AccountRequest](), out: typeOf[model.Account](), run: func(r *request) (any, error) {
			var b AccountRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Accounts.Create(r.Context(), r.id.caller(), b.ID, b.Admin)
		}},
		{method: post, path: p + "/accounts/{account}/disable", out: typeOf[model.Account](), run: func(r *request) (any, error) {
			return s.Accounts.SetDisabled(r.Context(), r.id.caller(), r.PathValue("account"), true)
		}},
		{method: post, path: p + "/accounts/{account}/enable", out: typeOf[model.Account](), run: func(r *request) (any, error) {
			return s.Accounts.SetDisabled(r.Context(), r.id.caller(), r.PathValue("account"), false)
		}},
		{method: get, path: p + "/api-keys", out: typeOf[[]model.APIKey](), run: func(r *request) (any, error) {
			return s.Accounts.Keys(r.Context(), r.id.caller(), r.URL.Query().Get("all") == "true")
		}},
		{method: post, path: p + "/api-keys", in: typeOf[KeyRequest](), out: typeOf[accounts.NewKey](), run: func(r *request) (any, error) {
			var b KeyRequest
			if err := r.decode(&b); err != nil {
				return nil, err
			}
			return s.Accounts.CreateKey(r.Context(), r.id.caller(), b.Name, b.ExpiresAt)
		}},
		{method: post, path: p + "/api-keys/{id}/revoke", out: typeOf[struct{}](), run: func(r *request) (any, error) {
			return struct{}{}, s.Accounts.RevokeKey(r.Context(), r.id.caller(), r.PathValue("id"))
		}},
		{method: get, path: p + "/audit", out: typeOf[[]model.AuditEntry](), run: s.auditLog},
	}, s.opsRoutes()...)
}

// Bodies and results of the routes that are not a domain type.
type (
	HostAccounts struct {
		Host     model.Host `json:"host"`
		Accounts []string   `json:"accounts"`
	}
	SharedRequest struct {
		Shared bool `json:"shared"`
	}
	ResolvedProject struct {
		ID string `json:"id"`
	}
	DeleteProject struct {
		Purge bool `json:"purge"`
	}
	SnapshotRequest struct {
		Name string `json:"name"`
	}
	SnapshotResult struct {
		Submitted projects.Submitted `json:"submitted"`
		Name      string             `json:"name"`
	}
	RestoreRequest struct {
		Snapshot string `json:"snapshot"`
		Path     string `json:"path"`
	}
	MoveRequest struct {
		To string `json:"to"`
	}
	CloneRequest struct {
		To   string `json:"to"`
		Name string `json:"name"`
	}
	OpenRequest struct {
		Port int `json:"port"`
	}
	SSHCertRequest struct {
		// PublicKey is in authorized_keys format.
		PublicKey string `json:"public_key"`
	}
	SSHKeyRequest struct {
		Line string `json:"line"`
	}
	SSHKeyResult struct {
		Key      model.SSHKey `json:"key"`
		Warnings []string     `json:"warnings"`
	}
	AdminRequest struct {
		Admin bool `json:"admin"`
	}
	AccountRequest struct {
		ID    string `json:"id"`
		Admin bool   `json:"admin"`
	}
	KeyRequest struct {
		Name      string     `json:"name"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	// Whoami is who the server takes the caller for.
	Whoami struct {
		Account string `json:"account"`
		Admin   bool   `json:"admin"`
		KeyID   string `json:"key_id"`
		As      string `json:"as,omitempty"`
	}
)

func (s *Server) ready(r *request) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	// A query, not a cached value: the database must answer now.
	if _, err := s.Store.ListAdmins(ctx); err != nil {
		return nil, errkind.Errorf(errkind.Unavailable, "state database: %v", err)
	}
	return map[string]string{"status": "ready", "db": s.Store.Backend()}, nil
}

func (s *Server) whoami(r *request) (any, error) {
	return Whoami{Account: r.id.account.ID, Admin: r.id.account.Admin, KeyID: r.id.key.ID, As: r.id.as}, nil
}

// actor is the account whose rights apply to r and whether it is an admin.
func (s *Server) actor(r *request) (string, bool, error) {
	return s.Projects.Actor(r.Context(), r.id.caller())
}

// mayUse reports whether account may see host h: its owner, a
// collaborator, anyone for a host in the shared pool, and admins.
func (s *Server) mayUse(ctx context.Context, account string, admin bool, h model.Host) (bool, error) {
	if admin || h.Owner == account || h.Shared {
		return true, nil
	}
	c, err := s.Store.ListCollaborators(ctx, h.ID)
	return slices.Contains(c, account), err
}

func (s *Server) visibleHost(r *request, idOrName string) (model.Host, error) {
	account, admin, err := s.actor(r)
	if err != nil {
		return model.Host{}, err
	}
	h, err := s.Hosts.Get(r.Context(), idOrName)
	if err != nil {
		return h, err
	}
	return h, s.refuseUnless(r.Context(), account, admin, h)
}

// refuseUnless is a Forbidden error unless account may see host h.
func (s *Server) refuseUnless(ctx context.Context, account string, admin bool, h model.Host) error {
	ok, err := s.mayUse(ctx, account, admin, h)
	if err != nil {
		return err
	}
	if !ok {
		return errkind.Errorf(errkind.Forbidden, "host %s belongs to %s; %s may not use it", h.Name, h.Owner, account)
	}
	return nil
}

func (s *Server) listHosts(r *request) (any, error) {
	account, admin, err := s.actor(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	f := store.HostFilter{Provider: q.Get("cloud"), Owner: q.Get("owner"), IncludeDeleted: q.Get("all") == "true"}
	if v := q.Get("since"); v != "" {
		if f.UpdatedSince, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, errkind.Errorf(errkind.Invalid, "since=%q: want an RFC 3339 time, e.g. 2026-01-02T15:04:05.000Z", v)
		}
	}
	// Encoded as read, with no list of hosts in between: most of a large
	// listing's cost was holding and reflecting on it.
	// mayUse's rule, with the collaborations read first: the listing
	// holds the store's connection while it runs.
	collab := map[string]bool{}
	if !admin {
		ids, err := s.Store.CollaboratingOn(r.Context(), account)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			collab[id] = true
		}
	}
	out := []byte{'['}
	err = s.Hosts.Each(r.Context(), f, func(h *model.Host) error {
		if !admin && h.Owner != account && !h.Shared && !collab[h.ID] {
			return nil
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out, err = model.AppendHostJSON(out, h, "", "")
		return err
	})
	if err != nil {
		return nil, err
	}
	return rawJSON(append(out, "]\n"...)), nil
}

// activeJobs are the queued and running jobs of the hosts the caller may
// use.
func (s *Server) activeJobs(r *request) (any, error) {
	account, admin, err := s.actor(r)
	if err != nil {
		return nil, err
	}
	jobs, err := s.Hosts.ActiveJobs(r.Context())
	if err != nil {
		return nil, err
	}
	hs, err := s.Hosts.List(r.Context(), store.HostFilter{IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	byID := make(map[string]model.Host, len(hs))
	for _, h := range hs {
		byID[h.ID] = h
	}
	out := []model.Job{}
	for _, j := range jobs {
		h, found := byID[j.Subject.ID]
		if !found {
			continue
		}
		ok, err := s.mayUse(r.Context(), account, admin, h)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, j)
		}
	}
	return out, nil
}

// ownedRequest fills in req's owner: the caller's account. Admins may
// create hosts for another account.
func (s *Server) ownedRequest(r *request) (hosts.CreateRequest, error) {
	var req hosts.CreateRequest
	if err := r.decode(&req); err != nil {
		return req, err
	}
	account, admin, err := s.actor(r)
	if err != nil {
		return req, err
	}
	switch {
	case req.Owner == "":
		req.Owner = account
	case req.Owner != account && !admin:
		return req, errkind.Errorf(errkind.Forbidden, "only admins may create hosts for another account (%s); %s is not an admin", req.Owner, account)
	}
	return req, nil
}

func (s *Server) createHost(r *request) (any, error) {
	req, err := s.ownedRequest(r)
	if err != nil {
		return nil, err
	}
	return s.Hosts.Create(r.Context(), req)
}

func (s *Server) planHost(r *request) (any, error) {
	req, err := s.ownedRequest(r)
	if err != nil {
		return nil, err
	}
	return s.Hosts.Plan(r.Context(), req)
}

// hostLog answers one page of a host's VM log. Unlike the host's other
// routes it finds a deleted host by name too, as the command does
// directly: the log is the host's audit trail and outlives it.
func (s *Server) hostLog(r *request) (any, error) {
	account, admin, err := s.actor(r)
	if err != nil {
		return nil, err
	}
	after, limit, err := afterLimit(r.URL.Query())
	if err != nil {
		return nil, err
	}
	h, es, err := s.Hosts.Log(r.Context(), r.PathValue("host"), after, limit)
	if err != nil {
		return nil, err
	}
	return es, s.refuseUnless(r.Context(), account, admin, h)
}

// hostPage answers one page (?after=ID&limit=N) of a log of a host the
// caller may see: the VM log or the boot log.
func hostPage[T any](s *Server, r *request, page func(ctx context.Context, id string, after int64, limit int) (model.Host, T, error)) (any, error) {
	h, err := s.visibleHost(r, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	after, limit, err := afterLimit(r.URL.Query())
	if err != nil {
		return nil, err
	}
	_, out, err := page(r.Context(), h.ID, after, limit)
	return out, err
}

func (s *Server) bootstrapped(r *request) (any, error) {
	h, err := s.visibleHost(r, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	return s.Hosts.IsBootstrapped(r.Context(), h)
}

// hostAction runs act on the host named in the path, which only its owner
// (or an admin) may change.
func (s *Server) hostAction(act func(context.Context, string, *request) (hosts.Submitted, error)) func(*request) (any, error) {
	return func(r *request) (any, error) {
		h, err := s.visibleHost(r, r.PathValue("host"))
		if err != nil {
			return nil, err
		}
		account, admin, err := s.actor(r)
		if err != nil {
			return nil, err
		}
		if h.Owner != account && !admin {
			return nil, errkind.Errorf(errkind.Forbidden, "host %s belongs to %s; only its owner or an admin may change it", h.Name, h.Owner)
		}
		return act(r.Context(), h.ID, r)
	}
}

// projectAction runs act on the project named in the path; the project
// service checks the caller's rights.
func (s *Server) projectAction(act func(context.Context, projects.Caller, string) (projects.Submitted, error)) func(*request) (any, error) {
	return func(r *request) (any, error) { return act(r.Context(), r.id.caller(), r.PathValue("project")) }
}

func (s *Server) listProjects(r *request) (any, error) {
	q := r.URL.Query()
	return s.Projects.List(r.Context(), r.id.caller(), projects.ListRequest{Host: q.Get("host"),
		All: q.Get("all") == "true", Deleted: q.Get("deleted") == "true", Refresh: q.Get("refresh") == "true"})
}

// waitJob returns a job the caller may see; with ?wait=DURATION it first
// waits (up to MaxWait) for the job to end, woken by the store's change
// notifications rather than polling.
func (s *Server) waitJob(r *request) (any, error) {
	wait, err := durationParam(r.URL.Query(), "wait")
	if err != nil {
		return nil, err
	}
	wait = min(wait, s.MaxWait)
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	changes := s.Store.Subscribe(ctx, store.TopicJobs)
	id := r.PathValue("job")
	j, err := s.Store.GetJob(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if err := s.mayUseJob(r, j); err != nil {
		return nil, err
	}
	for j.Active() {
		select {
		case <-ctx.Done():
			return j, nil
		case <-changes:
		}
		if j, err = s.Store.GetJob(r.Context(), id); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// mayUseJob allows a job to those who may use its subject.
func (s *Server) mayUseJob(r *request, j model.Job) error {
	switch j.Subject.Kind {
	case model.SubjectHost:
		_, err := s.visibleHost(r, j.Subject.ID)
		if errkind.Is(err, errkind.NotFound) {
			// A host deleted since (its job was the delete).
			account, admin, aerr := s.actor(r)
			if aerr != nil {
				return aerr
			}
			h, herr := s.Store.GetHost(r.Context(), j.Subject.ID)
			if herr == nil && (h.Owner == account || admin) {
				return nil
			}
		}
		return err
	case model.SubjectProject:
		_, err := s.Projects.Get(r.Context(), r.id.caller(), j.Subject.ID)
		return err
	}
	_, admin, err := s.actor(r)
	if err == nil && !admin {
		err = errkind.Errorf(errkind.Forbidden, "job %s is not about a host or project of yours", j.ID)
	}
	return err
}

func (s *Server) auditLog(r *request) (any, error) {
	q := r.URL.Query()
	f := store.AuditFilter{Account: q.Get("account")}
	var err error
	if v := q.Get("after"); v != "" {
		if f.AfterID, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, errkind.Errorf(errkind.Invalid, "after=%q: want an entry id", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 0 {
			return nil, errkind.Errorf(errkind.Invalid, "limit=%q: want a count", v)
		}
	}
	return s.Accounts.Audit(r.Context(), r.id.caller(), f)
}

func durationParam(q url.Values, name string) (time.Duration, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errkind.Errorf(errkind.Invalid, "%s=%q: want a duration such as 30s", name, v)
	}
	return d, nil
}
