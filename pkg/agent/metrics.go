package agent

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// metrics are the agent's Prometheus metrics (GET /v1/metrics): the
// host's headroom and projects, read at each scrape as /v1/resources
// reads them, and the podman commands that failed since the agent
// started.
type metrics struct {
	reg          *prometheus.Registry
	podmanErrors *prometheus.CounterVec
}

var (
	agentInfoDesc = prometheus.NewDesc("cocalc_agent_info",
		"1, labelled with the agent's version and host id.", []string{"version", "host_id"}, nil)
	resourcesUpDesc = prometheus.NewDesc("cocalc_agent_resources_up",
		"1 if this scrape read the host's resources (memory, podman's containers, the pool), else 0 (the agent's log says why).", nil, nil)
	runningDesc = prometheus.NewDesc("cocalc_agent_projects_running",
		"Projects whose container runs.", nil, nil)
	onDiskDesc = prometheus.NewDesc("cocalc_agent_projects_on_disk",
		"Projects with storage in the pool.", nil, nil)
	diskTotalDesc = prometheus.NewDesc("cocalc_agent_disk_total_bytes",
		"Size of the storage pool.", nil, nil)
	diskFreeDesc = prometheus.NewDesc("cocalc_agent_disk_free_bytes",
		"Free space in the storage pool.", nil, nil)
	memTotalDesc = prometheus.NewDesc("cocalc_agent_memory_total_bytes",
		"The host's memory (MemTotal).", nil, nil)
	memAvailDesc = prometheus.NewDesc("cocalc_agent_memory_available_bytes",
		"The host's memory available (MemAvailable).", nil, nil)
	memCommittedDesc = prometheus.NewDesc("cocalc_agent_memory_committed_bytes",
		"The memory limits of the running projects, added up.", nil, nil)
	cpusDesc = prometheus.NewDesc("cocalc_agent_cpus",
		"The host's CPUs.", nil, nil)
	cpusCommittedDesc = prometheus.NewDesc("cocalc_agent_cpus_committed",
		"The CPU limits of the running projects, added up.", nil, nil)
)

func newMetrics(s *server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		podmanErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocalc_agent_podman_errors_total",
			Help: "podman commands that failed since the agent started, by subcommand (run, rm, ps, pull, …); a missing container is not counted.",
		}, []string{"command"}),
	}
	// The subcommands the agent runs start at 0, so that rate() sees
	// their first failure.
	for _, c := range []string{"run", "rm", "ps", "exec", "pull", "import"} {
		m.podmanErrors.WithLabelValues(c)
	}
	m.reg.MustRegister(m.podmanErrors, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), resourceCollector{s})
	return m
}

func (m *metrics) podmanFailed(command string) { m.podmanErrors.WithLabelValues(command).Inc() }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// resourceCollector reads the host's resources at each scrape.
type resourceCollector struct{ s *server }

func (c resourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{agentInfoDesc, resourcesUpDesc, runningDesc, onDiskDesc, diskTotalDesc, diskFreeDesc,
		memTotalDesc, memAvailDesc, memCommittedDesc, cpusDesc, cpusCommittedDesc} {
		ch <- d
	}
}

func (c resourceCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(agentInfoDesc, 1, Version, c.s.cfg.HostID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.s.resources(ctx, false)
	if err != nil {
		c.s.log.Warn("metrics: read resources", "err", err)
		gauge(resourcesUpDesc, 0)
		return
	}
	gauge(resourcesUpDesc, 1)
	gauge(runningDesc, float64(res.RunningProjects))
	gauge(onDiskDesc, float64(res.ProjectsOnDisk))
	gauge(diskTotalDesc, float64(res.Storage.TotalBytes))
	gauge(diskFreeDesc, float64(res.Storage.FreeBytes))
	gauge(memTotalDesc, float64(res.MemoryTotalBytes))
	gauge(memAvailDesc, float64(res.MemoryAvailableBytes))
	gauge(memCommittedDesc, float64(res.MemoryCommittedBytes))
	gauge(cpusDesc, float64(res.CPUs))
	gauge(cpusCommittedDesc, res.CPUsCommitted)
}

// resources is what GET /v1/resources answers (see runtime.Resources).
func (s *server) resources(ctx context.Context, known bool) (agentapi.Resources, error) {
	st, err := storageStatus(s.cfg)
	if err != nil {
		return agentapi.Resources{}, err
	}
	return s.proj.Resources(ctx, st, known)
}
