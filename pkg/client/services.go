package client

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/accounts"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Hosts is the host service of a server.
type Hosts struct{ C *Client }

func (h Hosts) Get(ctx context.Context, idOrName string) (model.Host, error) {
	return get[model.Host](ctx, h.C, "/hosts/"+seg(idOrName), nil, "")
}

// hostQuery is f as the list route's query.
func hostQuery(f store.HostFilter) url.Values {
	q := url.Values{}
	if f.Provider != "" {
		q.Set("cloud", f.Provider)
	}
	if f.Owner != "" {
		q.Set("owner", f.Owner)
	}
	boolQ(q, "all", f.IncludeDeleted)
	if !f.UpdatedSince.IsZero() {
		q.Set("since", f.UpdatedSince.UTC().Format(time.RFC3339Nano))
	}
	return q
}

func (h Hosts) List(ctx context.Context, f store.HostFilter) ([]model.Host, error) {
	return get[[]model.Host](ctx, h.C, "/hosts", hostQuery(f), "")
}

// Each decodes the server's listing host by host as it arrives.
func (h Hosts) Each(ctx context.Context, f store.HostFilter, fn func(*model.Host) error) error {
	return each(ctx, h.C, "/hosts", hostQuery(f), "", fn)
}

func (h Hosts) Plan(ctx context.Context, req hosts.CreateRequest) (hosts.Plan, error) {
	return post[hosts.Plan](ctx, h.C, "/plan", "", req)
}

func (h Hosts) Create(ctx context.Context, req hosts.CreateRequest) (hosts.Submitted, error) {
	return post[hosts.Submitted](ctx, h.C, "/hosts", "", req)
}

func (h Hosts) Start(ctx context.Context, idOrName string) (hosts.Submitted, error) {
	return post[hosts.Submitted](ctx, h.C, "/hosts/"+seg(idOrName)+"/start", "", nil)
}

func (h Hosts) Stop(ctx context.Context, idOrName string, o hosts.StopOptions) (hosts.Submitted, error) {
	return post[hosts.Submitted](ctx, h.C, "/hosts/"+seg(idOrName)+"/stop", "", o)
}

func (h Hosts) Delete(ctx context.Context, idOrName string, o hosts.DeleteOptions) (hosts.Submitted, error) {
	return post[hosts.Submitted](ctx, h.C, "/hosts/"+seg(idOrName)+"/delete", "", o)
}

func (h Hosts) Upgrade(ctx context.Context, idOrName string) (hosts.Submitted, error) {
	return post[hosts.Submitted](ctx, h.C, "/hosts/"+seg(idOrName)+"/upgrade", "", nil)
}

func (h Hosts) IsBootstrapped(ctx context.Context, host model.Host) (bool, error) {
	return get[bool](ctx, h.C, "/hosts/"+seg(host.ID)+"/bootstrapped", nil, "")
}

func (h Hosts) ActiveJobs(ctx context.Context) ([]model.Job, error) {
	return get[[]model.Job](ctx, h.C, "/jobs", nil, "")
}

func (h Hosts) Detail(ctx context.Context, idOrName string) (hosts.Detail, error) {
	return get[hosts.Detail](ctx, h.C, "/hosts/"+seg(idOrName)+"/detail", nil, "")
}

func (h Hosts) AgentMetrics(ctx context.Context, idOrName string) (hosts.AgentMetrics, error) {
	return get[hosts.AgentMetrics](ctx, h.C, "/hosts/"+seg(idOrName)+"/agent-metrics", nil, "")
}

func (h Hosts) Log(ctx context.Context, idOrName string, afterID int64, limit int) (model.Host, []model.LogEntry, error) {
	host, err := h.Get(ctx, idOrName)
	if errkind.Is(err, errkind.NotFound) {
		// A deleted host by name: its log route finds it (the log
		// outlives the host), and its entries name it by id, by which
		// the host itself is found.
		es, lerr := get[[]model.LogEntry](ctx, h.C, "/hosts/"+seg(idOrName)+"/log", afterLimitQ(afterID, limit), "")
		if lerr != nil {
			return host, nil, lerr
		}
		if len(es) == 0 {
			return host, nil, err
		}
		host, err = h.Get(ctx, es[0].HostID)
		return host, es, err
	}
	if err != nil {
		return host, nil, err
	}
	es, err := get[[]model.LogEntry](ctx, h.C, "/hosts/"+seg(host.ID)+"/log", afterLimitQ(afterID, limit), "")
	return host, es, err
}

// Jobs waits for jobs on the server, whose workers run them.
type Jobs struct{ C *Client }

// RunJob follows job until it ends, as the server's stream of its events
// tells (the events of a job the server's own worker runs reach onEvent
// as they would from a worker in this process). When the stream ends
// early (the server restarts, a proxy cuts it), it waits by long polls
// that the server answers when the job changes, telling onEvent each
// change of state or attempt.
func (j Jobs) RunJob(ctx context.Context, job model.Job, onEvent func(queue.Event)) (model.Job, error) {
	if onEvent == nil {
		onEvent = func(queue.Event) {}
	}
	got, ended, err := j.C.follow(ctx, job.ID, onEvent)
	if err != nil || ended {
		return got, err
	}
	last := job
	for {
		got, err := get[model.Job](ctx, j.C, "/jobs/"+seg(job.ID), url.Values{"wait": {"25s"}}, "")
		if err != nil {
			return last, err
		}
		if got.State != last.State || got.Attempts != last.Attempts {
			onEvent(jobEvent(got))
		}
		last = got
		if !got.Active() {
			return got, nil
		}
	}
}

// jobEvent is what a change of job says, in the queue's terms.
func jobEvent(j model.Job) queue.Event {
	e := queue.Event{JobID: j.ID, Subject: j.Subject, Action: j.Action, Attempt: j.Attempts, Time: j.UpdatedAt}
	switch {
	case j.State == model.JobRunning:
		e.Kind = queue.EventClaimed
	case j.State == model.JobDone:
		e.Kind = queue.EventDone
	case j.State == model.JobFailed:
		e.Kind, e.Err = queue.EventFailed, j.LastError
	case j.State == model.JobQueued && j.LastError != "":
		retry := j.RunAfter
		e.Kind, e.Err, e.Retry = queue.EventRetry, j.LastError, &retry
	default:
		e.Kind = queue.EventProgress
	}
	return e
}

// Projects is the project service of a server. The caller's account is
// the key's; Caller.As is sent for admins acting for another account.
type Projects struct{ C *Client }

func ppath(id string, rest ...string) string {
	p := "/projects/" + seg(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

func (p Projects) Create(ctx context.Context, c projects.Caller, req projects.CreateRequest) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, "/projects", c.As, req)
}

func (p Projects) List(ctx context.Context, c projects.Caller, r projects.ListRequest) ([]model.Project, error) {
	q := url.Values{}
	if r.Host != "" {
		q.Set("host", r.Host)
	}
	boolQ(q, "all", r.All)
	boolQ(q, "deleted", r.Deleted)
	boolQ(q, "refresh", r.Refresh)
	return get[[]model.Project](ctx, p.C, "/projects", q, c.As)
}

func (p Projects) Resolve(ctx context.Context, c projects.Caller, ref string) (string, error) {
	r, err := get[server.ResolvedProject](ctx, p.C, "/projects/resolve", url.Values{"ref": {ref}}, c.As)
	return r.ID, err
}

func (p Projects) Show(ctx context.Context, c projects.Caller, id string) (projects.Detail, error) {
	return get[projects.Detail](ctx, p.C, ppath(id), nil, c.As)
}

func (p Projects) Get(ctx context.Context, c projects.Caller, id string) (model.Project, error) {
	return get[model.Project](ctx, p.C, ppath(id, "record"), nil, c.As)
}

func (p Projects) Start(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, ppath(id, "start"), c.As, nil)
}

func (p Projects) Stop(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, ppath(id, "stop"), c.As, nil)
}

func (p Projects) Restart(ctx context.Context, c projects.Caller, id string) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, ppath(id, "restart"), c.As, nil)
}

func (p Projects) Delete(ctx context.Context, c projects.Caller, id string, purge bool) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, ppath(id, "delete"), c.As, server.DeleteProject{Purge: purge})
}

func (p Projects) Exec(ctx context.Context, c projects.Caller, id string, req agentapi.ExecRequest, eio agentapi.ExecIO) (int, error) {
	return p.C.Exec(ctx, c.As, id, req, eio)
}

func (p Projects) Snapshot(ctx context.Context, c projects.Caller, id, name string) (projects.Submitted, string, error) {
	r, err := post[server.SnapshotResult](ctx, p.C, ppath(id, "snapshots"), c.As, server.SnapshotRequest{Name: name})
	return r.Submitted, r.Name, err
}

func (p Projects) Snapshots(ctx context.Context, c projects.Caller, id string) ([]agentapi.Snapshot, error) {
	return get[[]agentapi.Snapshot](ctx, p.C, ppath(id, "snapshots"), nil, c.As)
}

func (p Projects) Restore(ctx context.Context, c projects.Caller, id, snapshot, path string) (projects.Submitted, error) {
	return post[projects.Submitted](ctx, p.C, ppath(id, "restore"), c.As, server.RestoreRequest{Snapshot: snapshot, Path: path})
}

func (p Projects) Move(ctx context.Context, c projects.Caller, r projects.MoveRequest) (projects.Submitted, model.Move, error) {
	sub, err := post[projects.Submitted](ctx, p.C, ppath(r.Project, "move"), c.As, server.MoveRequest{To: r.To})
	return sub, model.Move{}, err
}

func (p Projects) Clone(ctx context.Context, c projects.Caller, r projects.CloneRequest) (projects.Submitted, model.Move, error) {
	sub, err := post[projects.Submitted](ctx, p.C, ppath(r.Project, "clone"), c.As, server.CloneRequest{To: r.To, Name: r.Title})
	return sub, model.Move{}, err
}

func (p Projects) CleanupMove(ctx context.Context, c projects.Caller, id string, _ func(string)) (model.Move, error) {
	return post[model.Move](ctx, p.C, ppath(id, "move", "cleanup"), c.As, nil)
}

func hpath(host string, rest ...string) string {
	p := "/hosts/" + seg(host)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

func (p Projects) AddCollaborator(ctx context.Context, c projects.Caller, host, account string) (model.Host, error) {
	return post[model.Host](ctx, p.C, hpath(host, "collaborators", seg(account)), c.As, nil)
}

func (p Projects) RemoveCollaborator(ctx context.Context, c projects.Caller, host, account string) (model.Host, error) {
	return del[model.Host](ctx, p.C, hpath(host, "collaborators", seg(account)), c.As)
}

func (p Projects) Collaborators(ctx context.Context, c projects.Caller, host string) (model.Host, []string, error) {
	r, err := get[server.HostAccounts](ctx, p.C, hpath(host, "collaborators"), nil, c.As)
	return r.Host, r.Accounts, err
}

func (p Projects) SetShared(ctx context.Context, c projects.Caller, host string, shared bool) (model.Host, error) {
	return post[model.Host](ctx, p.C, hpath(host, "shared"), c.As, map[string]bool{"shared": shared})
}

func (p Projects) SetAdmin(ctx context.Context, c projects.Caller, account string, admin bool) error {
	_, err := post[struct{}](ctx, p.C, "/admins/"+seg(account), c.As, server.AdminRequest{Admin: admin})
	return err
}

func (p Projects) Admins(ctx context.Context) ([]string, error) {
	return get[[]string](ctx, p.C, "/admins", nil, "")
}

func (p Projects) ProjectCollaborators(ctx context.Context, c projects.Caller, id string) ([]string, error) {
	return get[[]string](ctx, p.C, ppath(id, "collaborators"), nil, c.As)
}

func (p Projects) AddProjectCollaborator(ctx context.Context, c projects.Caller, id, account string) (string, error) {
	return post[string](ctx, p.C, ppath(id, "collaborators", seg(account)), c.As, nil)
}

func (p Projects) RemoveProjectCollaborator(ctx context.Context, c projects.Caller, id, account string) (string, error) {
	return del[string](ctx, p.C, ppath(id, "collaborators", seg(account)), c.As)
}

func (p Projects) AddSSHKey(ctx context.Context, c projects.Caller, line string) (model.SSHKey, []string, error) {
	r, err := post[server.SSHKeyResult](ctx, p.C, "/ssh-keys", c.As, server.SSHKeyRequest{Line: line})
	return r.Key, r.Warnings, err
}

func (p Projects) RemoveSSHKey(ctx context.Context, c projects.Caller, fingerprint string) ([]string, error) {
	r, err := del[server.SSHKeyResult](ctx, p.C, "/ssh-keys/"+seg(fingerprint), c.As)
	return r.Warnings, err
}

func (p Projects) SSHKeys(ctx context.Context, c projects.Caller) ([]model.SSHKey, error) {
	return get[[]model.SSHKey](ctx, p.C, "/ssh-keys", nil, c.As)
}

func (p Projects) Open(ctx context.Context, c projects.Caller, id string, port int) (projects.Opened, error) {
	return post[projects.Opened](ctx, p.C, ppath(id, "open"), c.As, server.OpenRequest{Port: port})
}

func (p Projects) SSHCertificate(ctx context.Context, c projects.Caller, id string, pub ssh.PublicKey) (projects.SSHAccess, error) {
	return post[projects.SSHAccess](ctx, p.C, ppath(id, "ssh-cert"), c.As, server.SSHCertRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
}

// Accounts is the account service of a server.
type Accounts struct{ C *Client }

func (a Accounts) Create(ctx context.Context, c projects.Caller, id string, admin bool) (model.Account, error) {
	return post[model.Account](ctx, a.C, "/accounts", c.As, server.AccountRequest{ID: id, Admin: admin})
}

func (a Accounts) List(ctx context.Context, c projects.Caller) ([]model.Account, error) {
	return get[[]model.Account](ctx, a.C, "/accounts", nil, c.As)
}

func (a Accounts) SetDisabled(ctx context.Context, c projects.Caller, id string, disabled bool) (model.Account, error) {
	verb := "enable"
	if disabled {
		verb = "disable"
	}
	return post[model.Account](ctx, a.C, "/accounts/"+seg(id)+"/"+verb, c.As, nil)
}

func (a Accounts) CreateKey(ctx context.Context, c projects.Caller, name string, expires *time.Time) (accounts.NewKey, error) {
	return post[accounts.NewKey](ctx, a.C, "/api-keys", c.As, server.KeyRequest{Name: name, ExpiresAt: expires})
}

func (a Accounts) Keys(ctx context.Context, c projects.Caller, all bool) ([]model.APIKey, error) {
	q := url.Values{}
	boolQ(q, "all", all)
	return get[[]model.APIKey](ctx, a.C, "/api-keys", q, c.As)
}

func (a Accounts) RevokeKey(ctx context.Context, c projects.Caller, id string) error {
	_, err := post[struct{}](ctx, a.C, "/api-keys/"+seg(id)+"/revoke", c.As, nil)
	return err
}

func (a Accounts) Audit(ctx context.Context, c projects.Caller, f store.AuditFilter) ([]model.AuditEntry, error) {
	q := url.Values{}
	if f.Account != "" {
		q.Set("account", f.Account)
	}
	if f.AfterID > 0 {
		q.Set("after", fmt.Sprint(f.AfterID))
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	return get[[]model.AuditEntry](ctx, a.C, "/audit", q, c.As)
}
