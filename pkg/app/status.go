package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Status is the deployment's health at a glance (`status`): the queue,
// the workers seen holding leases, the hosts, and the problems — failed
// jobs, hosts in error or missing, running hosts whose agent does not
// answer or has little disk or memory free, projects whose backups are
// stale. It asks each running host's agent, at most eight at once, each
// for at most 10 s.
func (o Ops) Status(ctx context.Context, r model.HealthRequest) (model.Health, error) {
	st, err := o.a.Store(ctx)
	if err != nil {
		return model.Health{}, err
	}
	now := o.a.now().UTC()
	minFree := r.MinFreePercent
	if minFree == 0 {
		minFree = 10
	}
	if minFree < 0 || minFree > 100 {
		return model.Health{}, errkind.Errorf(errkind.Invalid, "--min-free %g: want a percentage from 0 to 100", minFree)
	}
	since := r.FailedSince
	if since.IsZero() {
		since = now.Add(-24 * time.Hour)
	}
	stats, err := st.Stats(ctx, now)
	if err != nil {
		return model.Health{}, err
	}
	h := model.Health{Backend: st.Backend(), At: now, OldestDue: stats.OldestDue, Workers: []model.WorkerSeen{},
		Hosts: map[model.Status]int{}, Problems: []model.Problem{}}
	for _, c := range stats.Active {
		if c.State == model.JobQueued {
			h.Queued += c.Count
		} else {
			h.Running += c.Count
		}
	}
	if h.OldestDue != nil {
		h.OldestWait = max(now.Sub(h.OldestDue.RunAfter).Seconds(), 0)
	}
	for _, l := range stats.Leases {
		h.Workers = append(h.Workers, model.WorkerSeen{Worker: l.Worker, Jobs: l.Jobs})
	}
	for _, c := range stats.Hosts {
		h.Hosts[c.Status] += c.Count
	}
	if h.Leader, err = st.LeaderExists(ctx); err != nil {
		return h, err
	}
	if h.Failed, h.FailedJobs, err = st.FailedJobs(ctx, since, 5); err != nil {
		return h, err
	}
	if h.FailedJobs > 0 {
		problem(&h, "failed_jobs", "", "%d job(s) failed since %s; see `cocalc-hosts logs HOST` or `cocalc-hosts project show PROJECT` for why", h.FailedJobs, since.Format(time.RFC3339))
	}
	hosts, err := st.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return h, err
	}
	if err := o.headroom(ctx, &h, hosts, minFree); err != nil {
		return h, err
	}
	if err := o.staleBackups(ctx, st, &h, now); err != nil {
		return h, err
	}
	h.Healthy = len(h.Problems) == 0
	return h, nil
}

func problem(h *model.Health, kind, subject, format string, args ...any) {
	h.Problems = append(h.Problems, model.Problem{Kind: kind, Subject: subject, Message: fmt.Sprintf(format, args...)})
}

// headroom reports hosts in error or missing at their provider, and asks
// each running host with an agent for its free disk and memory.
func (o Ops) headroom(ctx context.Context, h *model.Health, hosts []model.Host, minFree float64) error {
	svc, err := o.a.Hosts(ctx)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, 8)
	for _, host := range hosts {
		switch {
		case host.Status == model.StatusError:
			problem(h, "host_error", host.Name, "host %s is in error: %s; see `cocalc-hosts show %s`", host.Name, host.LastError, host.Name)
			continue
		case host.MissingCount > 0:
			problem(h, "host_missing", host.Name, "host %s was not found at %s by the last %d reconcile pass(es); see `cocalc-hosts reconcile --dry-run`", host.Name, host.Provider, host.MissingCount)
			continue
		case host.Status != model.StatusRunning || !host.HasAgent():
			continue // no agent to ask (stopped, or simulated)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			var found []model.Problem
			add := func(kind, format string, args ...any) {
				found = append(found, model.Problem{Kind: kind, Subject: host.Name, Message: fmt.Sprintf(format, args...)})
			}
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c, err := svc.AgentClient(actx, host)
			if err == nil {
				res, rerr := c.Resources(actx)
				err = rerr
				if err == nil {
					if free, total := int64(res.Storage.FreeBytes), int64(res.Storage.TotalBytes); total > 0 && pct(free, total) < minFree {
						add("low_disk", "host %s has %s of %s disk free (%.1f%%, under %g%%); purge projects or move some away (`cocalc-hosts project move`)",
							host.Name, projects.FormatBytes(free), projects.FormatBytes(total), pct(free, total), minFree)
					}
					if free, total := res.MemoryAvailableBytes, res.MemoryTotalBytes; total > 0 && pct(free, total) < minFree {
						add("low_memory", "host %s has %s of %s memory available (%.1f%%, under %g%%); stop projects or move some away",
							host.Name, projects.FormatBytes(free), projects.FormatBytes(total), pct(free, total), minFree)
					}
				}
			}
			if err != nil {
				add("agent_unreachable", "host %s is running but its agent does not answer: %v; see `cocalc-hosts show %s`", host.Name, err, host.Name)
			}
			mu.Lock()
			h.Problems = append(h.Problems, found...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return nil
}

func pct(part, whole int64) float64 { return 100 * float64(part) / float64(whole) }

// staleBackups reports the live projects without a backup for two backup
// periods, when backups are configured and scheduled.
func (o Ops) staleBackups(ctx context.Context, st store.Store, h *model.Health, now time.Time) error {
	every := o.a.cfg.Backup.Schedule
	if every <= 0 {
		return nil
	}
	if _, err := st.GetBackupConfig(ctx); errkind.Is(err, errkind.NotFound) {
		return nil
	} else if err != nil {
		return err
	}
	ps, err := st.ListProjects(ctx, store.ProjectFilter{})
	if err != nil {
		return err
	}
	latest, err := st.LatestBackups(ctx)
	if err != nil {
		return err
	}
	var stale int
	for _, p := range ps {
		if t, ok := latest[p.ID]; !ok || t.Before(now.Add(-2*every)) {
			stale++
		}
	}
	if stale > 0 {
		problem(h, "stale_backups", "", "%d project(s) have no backup from the last %s; see `cocalc-hosts project list --stale-backups %s --all`", stale, 2*every, 2*every)
	}
	return nil
}
