package hosts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// AgentHealth is what a running host's agent says of itself, or why it
// could not be asked.
type AgentHealth struct {
	Reachable bool             `json:"reachable"`
	Error     string           `json:"error,omitempty"`
	Status    *agentapi.Status `json:"status,omitempty"`
	// LastContact is the last successful SSH contact with a remote host.
	LastContact *time.Time `json:"last_contact,omitempty"`
}

// Detail is a host with what is known about it: its pending job, its
// collaborators, its newest log entries, its agent's health (when it
// runs) and its ingress.
type Detail struct {
	model.Host
	PendingJob    *model.Job       `json:"pending_job,omitempty"`
	Collaborators []string         `json:"collaborators"`
	RecentLog     []model.LogEntry `json:"recent_log"`
	Agent         *AgentHealth     `json:"agent,omitempty"`
	// Ingress is what the host's agent said about its ingress when it was
	// last given its access list.
	Ingress *model.HostIngress `json:"ingress,omitempty"`
	// Tunnel says which server holds a reverse-connected host's tunnel.
	Tunnel *model.HostTunnel `json:"tunnel,omitempty"`
}

// Detail returns host idOrName in detail.
func (s *Service) Detail(ctx context.Context, idOrName string) (Detail, error) {
	h, err := s.Store.GetHost(ctx, idOrName)
	if err != nil {
		return Detail{}, err
	}
	d := Detail{Host: h, Collaborators: []string{}, RecentLog: []model.LogEntry{}}
	if jobs, err := s.Store.ListJobs(ctx, store.JobFilter{Subject: model.HostSubject(h.ID), ActiveOnly: true}); err != nil {
		return d, err
	} else if len(jobs) > 0 {
		d.PendingJob = &jobs[0]
	}
	if c, err := s.Store.ListCollaborators(ctx, h.ID); err != nil {
		return d, err
	} else if c != nil {
		d.Collaborators = c
	}
	if l, err := s.Store.ListLog(ctx, store.LogFilter{HostID: h.ID, Limit: 5}); err != nil {
		return d, err
	} else if l != nil {
		d.RecentLog = l
	}
	if h.Status == model.StatusRunning {
		d.Agent = s.Health(ctx, h)
	}
	if in, err := s.Store.GetHostIngress(ctx, h.ID); err == nil {
		d.Ingress = &in
	}
	if t, err := s.Store.HostTunnel(ctx, h.ID); err == nil && h.Spec.Reverse {
		d.Tunnel = &t
	}
	return d, nil
}

// Health asks h's agent for its status (directly for local hosts, over
// the host's SSH connection for remote ones, with the time of the last
// successful contact). Hosts without an agent this process can reach
// (sim) have none: nil.
func (s *Service) Health(ctx context.Context, h model.Host) *AgentHealth {
	if !h.HasAgent() {
		return nil
	}
	remote := h.Runtime.SSHHost != ""
	health := &AgentHealth{}
	if remote {
		defer func() {
			if pin, err := s.Store.GetHostKey(ctx, h.ID); err == nil {
				health.LastContact = pin.LastContactAt
			}
		}()
	}
	c, err := s.AgentClient(ctx, h)
	if err != nil {
		health.Error = err.Error()
		return health
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := c.Status(sctx)
	if err != nil {
		health.Error = err.Error()
		return health
	}
	health.Reachable, health.Status = true, &st
	return health
}

// Log returns host idOrName's cloud_vm_log entries after afterID (at most
// limit, 0: all), oldest first, with the host.
func (s *Service) Log(ctx context.Context, idOrName string, afterID int64, limit int) (model.Host, []model.LogEntry, error) {
	h, err := s.getIncludingDeleted(ctx, idOrName)
	if err != nil {
		return h, nil, err
	}
	es, err := s.Store.ListLog(ctx, store.LogFilter{HostID: h.ID, AfterID: afterID, Limit: limit})
	if es == nil {
		es = []model.LogEntry{}
	}
	return h, es, err
}

// getIncludingDeleted is GetHost that also finds a deleted host by name
// (by id the store finds it anyway), as long as one deleted host carries
// that name: a host's log is its audit trail and outlives it.
func (s *Service) getIncludingDeleted(ctx context.Context, idOrName string) (model.Host, error) {
	h, err := s.Store.GetHost(ctx, idOrName)
	if !errkind.Is(err, errkind.NotFound) {
		return h, err
	}
	all, lerr := s.Store.ListHosts(ctx, store.HostFilter{IncludeDeleted: true})
	if lerr != nil {
		return h, lerr
	}
	var found []model.Host
	for _, d := range all {
		if d.Name == idOrName && d.DeletedAt != nil {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return h, err
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, d := range found {
		ids[i] = d.ID
	}
	return h, invalid("%d deleted hosts were named %q; give one of their ids: %s", len(found), idOrName, strings.Join(ids, ", "))
}

// BootLog is a host's newest bootstrap (or upgrade) run and its output
// (`logs --boot`).
type BootLog struct {
	Run   *store.BootRun   `json:"run"`
	Lines []store.BootLine `json:"lines"`
}

// BootLog returns host idOrName's newest bootstrap run with its lines (at
// most limit, 0: all). With afterID it returns instead the lines of any
// run after that line, for following the log as it grows.
func (s *Service) BootLog(ctx context.Context, idOrName string, afterID int64, limit int) (model.Host, BootLog, error) {
	out := BootLog{Lines: []store.BootLine{}}
	h, err := s.Store.GetHost(ctx, idOrName)
	if err != nil {
		return h, out, err
	}
	f := store.BootLogFilter{HostID: h.ID, AfterID: afterID, Limit: limit}
	if afterID == 0 {
		runs, err := s.Store.ListBootRuns(ctx, h.ID, 1)
		if err != nil || len(runs) == 0 {
			return h, out, err
		}
		out.Run, f.RunID = &runs[0], runs[0].ID
	}
	lines, err := s.Store.ListBootLog(ctx, f)
	if lines != nil {
		out.Lines = lines
	}
	return h, out, err
}

// ActiveJobs are the queued and running jobs of every host, oldest first
// (the dashboard marks each host with its pending action).
func (s *Service) ActiveJobs(ctx context.Context) ([]model.Job, error) {
	jobs, err := s.Store.ListJobs(ctx, store.JobFilter{Subject: model.Subject{Kind: model.SubjectHost}, ActiveOnly: true})
	if jobs == nil {
		jobs = []model.Job{}
	}
	return jobs, err
}

// AgentMetrics are a host's agent's Prometheus metrics (`agent-metrics`).
type AgentMetrics struct {
	Host string `json:"host"`
	// Text is the agent's GET /v1/metrics, in Prometheus's text format.
	Text string `json:"text"`
}

// AgentMetrics asks host idOrName's agent for its Prometheus metrics
// (projects running, disk and memory headroom, podman errors).
func (s *Service) AgentMetrics(ctx context.Context, idOrName string) (AgentMetrics, error) {
	h, err := s.Store.GetHost(ctx, idOrName)
	if err != nil {
		return AgentMetrics{}, err
	}
	c, err := s.AgentClient(ctx, h)
	if err != nil {
		return AgentMetrics{}, err
	}
	mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b, err := c.Metrics(mctx)
	if err != nil {
		return AgentMetrics{}, errkind.Wrap(errkind.Unavailable, fmt.Errorf("host %s: its agent does not answer: %w; see `cocalc-hosts show %s`", h.Name, err, h.Name))
	}
	return AgentMetrics{Host: h.Name, Text: string(b)}, nil
}
