package server

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Metrics are a server's Prometheus metrics. The queue and the fleet are
// read from the database at each scrape (the same figures from every
// server on one database); the jobs' outcomes and times are counted as
// this process's worker reports them (sum them over the servers).
//
// They are served apart from the API (`serve --metrics-listen`), without a
// key: Prometheus would otherwise need an admin's API key, which could
// delete every host; the figures are counts and carry no secret.
type Metrics struct {
	reg      *prometheus.Registry
	attempts *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	calls    *prometheus.CounterVec
	callSecs *prometheus.HistogramVec

	mu      sync.Mutex
	started map[string]time.Time // claimed jobs by id
}

// NewMetrics counts the queue and hosts of st at each scrape. leader,
// when not nil, says whether this process holds the leader lock.
func NewMetrics(st store.Store, now func() time.Time, leader func() bool) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocalc_hosts_job_attempts_total",
			Help: "Job attempts this process's worker ended, by action, outcome (done, retry, failed, lease_lost) and error kind (pkg/errkind; empty when done).",
		}, []string{"action", "outcome", "error_kind"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cocalc_hosts_job_attempt_seconds",
			Help:    "How long job attempts ran in this process's worker, from claim to outcome, by action and outcome.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800},
		}, []string{"action", "outcome"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocalc_hosts_provider_calls_total",
			Help: "Calls this process made to cloud APIs, by provider, operation and outcome (ok, or the error's kind from pkg/errkind: transient, rate_limited, auth, …).",
		}, []string{"provider", "op", "outcome"}),
		callSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cocalc_hosts_provider_call_seconds",
			Help:    "How long calls to cloud APIs took, by provider and operation.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider", "op"}),
		started: map[string]time.Time{},
	}
	m.reg.MustRegister(m.attempts, m.seconds, m.calls, m.callSecs, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{st: st, now: now, leader: leader})
	return m
}

// Job counts a queue event (give it every event of the worker).
func (m *Metrics) Job(e queue.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.Kind {
	case queue.EventClaimed:
		m.started[e.JobID] = e.Time
	case queue.EventDone, queue.EventRetry, queue.EventFailed, queue.EventLost, queue.EventHandedBack:
		m.attempts.WithLabelValues(string(e.Action), string(e.Kind), e.ErrKind).Inc()
		if t, ok := m.started[e.JobID]; ok {
			m.seconds.WithLabelValues(string(e.Action), string(e.Kind)).Observe(e.Time.Sub(t).Seconds())
			delete(m.started, e.JobID)
		}
	}
}

// ProviderCall counts one call to a cloud's API (give it to
// app.App.ObserveProviderCalls).
func (m *Metrics) ProviderCall(provider, op string, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = errkind.Of(err).String()
	}
	m.calls.WithLabelValues(provider, op, outcome).Inc()
	m.callSecs.WithLabelValues(provider, op).Observe(took.Seconds())
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

var (
	jobsDesc = prometheus.NewDesc("cocalc_hosts_jobs",
		"Jobs queued or running, by action and state.", []string{"action", "state"}, nil)
	oldestDesc = prometheus.NewDesc("cocalc_hosts_queue_oldest_due_seconds",
		"How long the queued job due longest has waited for a worker (0: none is due).", nil, nil)
	workersDesc = prometheus.NewDesc("cocalc_hosts_workers",
		"Workers holding unexpired leases on running jobs.", nil, nil)
	hostsDesc = prometheus.NewDesc("cocalc_hosts_hosts",
		"Live hosts by provider and status.", []string{"provider", "status"}, nil)
	dbUpDesc = prometheus.NewDesc("cocalc_hosts_database_up",
		"1 if the database answered this scrape's queries, else 0.", nil, nil)
	agentAgeDesc = prometheus.NewDesc("cocalc_hosts_agent_answer_age_seconds",
		"Seconds since each running host's agent last answered the control plane (took its access list, every ingress.acl_ttl from the leader); +Inf if it never did. Hosts without an agent (simulated) are left out.",
		[]string{"host", "provider"}, nil)
	backupAgeDesc = prometheus.NewDesc("cocalc_hosts_project_backup_age_seconds",
		"Age of each live project's newest backup (projects never backed up are cocalc_hosts_projects_never_backed_up): alert on the count above a bucket, e.g. older than a day.",
		nil, nil)
	neverBackedUpDesc = prometheus.NewDesc("cocalc_hosts_projects_never_backed_up",
		"Live projects with no backup.", nil, nil)
	leaderDesc = prometheus.NewDesc("cocalc_hosts_leader",
		"1 if this process holds the leader lock (reconcile, catalog refresh), else 0.", nil, nil)
)

// stateCollector reads the queue and the fleet from the database.
type stateCollector struct {
	st     store.Store
	now    func() time.Time
	leader func() bool
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jobsDesc, oldestDesc, workersDesc, hostsDesc, dbUpDesc, leaderDesc, agentAgeDesc, backupAgeDesc, neverBackedUpDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.leader != nil {
		ch <- prometheus.MustNewConstMetric(leaderDesc, prometheus.GaugeValue, b2f(c.leader()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := c.now()
	st, err := c.st.Stats(ctx, now)
	var answers []store.AgentAnswer
	if err == nil {
		answers, err = c.st.AgentAnswers(ctx)
	}
	var backups backupAges
	if err == nil {
		backups, err = readBackupAges(ctx, c.st, now)
	}
	ch <- prometheus.MustNewConstMetric(dbUpDesc, prometheus.GaugeValue, b2f(err == nil))
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstHistogram(backupAgeDesc, backups.count, backups.sum, backups.buckets)
	ch <- prometheus.MustNewConstMetric(neverBackedUpDesc, prometheus.GaugeValue, float64(backups.never))
	for _, a := range answers {
		age := math.Inf(1)
		if a.At != nil {
			age = max(now.Sub(*a.At).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(agentAgeDesc, prometheus.GaugeValue, age, a.Host, a.Provider)
	}
	for _, j := range st.Active {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(j.Count), string(j.Action), string(j.State))
	}
	var oldest float64
	if st.OldestDue != nil {
		oldest = max(now.Sub(st.OldestDue.RunAfter).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, oldest)
	ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(len(st.Leases)))
	for _, h := range st.Hosts {
		ch <- prometheus.MustNewConstMetric(hostsDesc, prometheus.GaugeValue, float64(h.Count), h.Provider, string(h.Status))
	}
}

// backupAgeBuckets are an hour, six hours, a day, two days, a week and
// thirty days: the ages a schedule's alert is set at.
var backupAgeBuckets = []float64{3600, 6 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400}

// backupAges is a histogram of the live projects' newest backups' ages.
type backupAges struct {
	count   uint64
	sum     float64
	buckets map[float64]uint64 // cumulative, as Prometheus wants them
	never   int
}

func readBackupAges(ctx context.Context, st store.Store, now time.Time) (backupAges, error) {
	ps, err := st.ListProjects(ctx, store.ProjectFilter{})
	if err != nil {
		return backupAges{}, err
	}
	latest, err := st.LatestBackups(ctx)
	if err != nil {
		return backupAges{}, err
	}
	a := backupAges{buckets: map[float64]uint64{}}
	for _, b := range backupAgeBuckets {
		a.buckets[b] = 0
	}
	for _, p := range ps {
		t, ok := latest[p.ID]
		if !ok {
			a.never++
			continue
		}
		age := max(now.Sub(t).Seconds(), 0)
		a.count++
		a.sum += age
		for _, b := range backupAgeBuckets {
			if age <= b {
				a.buckets[b]++
			}
		}
	}
	return a, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
