// Package agentapi holds the types the host agent serves and a client for
// them. The agent listens only on a unix socket (access is controlled by
// the socket's file mode), so the client dials that socket and speaks plain
// HTTP over it; nothing here ever touches the network.
package agentapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// StatusPath is the endpoint that reports the agent's Status.
const StatusPath = "/v1/status"

// Storage kinds a host's pool can have.
const (
	StorageBtrfs     = "btrfs"
	StorageDirectory = "directory"
)

// DirectoryNote explains what a plain-directory pool lacks.
const DirectoryNote = "plain directory: no snapshots or quotas"

// Storage describes the pool that holds the host's projects.
type Storage struct {
	Kind       string `json:"kind"` // StorageBtrfs or StorageDirectory
	Path       string `json:"path"`
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
	Note       string `json:"note,omitempty"`
}

// Status is what GET /v1/status returns.
type Status struct {
	Version       string    `json:"version"`
	HostID        string    `json:"host_id"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Storage       Storage   `json:"storage"`
	PID           int       `json:"pid"`
	// Podman is how the agent runs containers on this machine.
	Podman *PodmanRuntime `json:"podman,omitempty"`
}

// Where the agent's podman settings come from.
const (
	PodmanFromProbe          = "probe"
	PodmanFromContainersConf = "containers_conf"
)

// PodmanRuntime are the podman settings the agent found to run a
// container on its machine (probed once at start with a tiny container),
// or that a containers.conf override imposes.
type PodmanRuntime struct {
	Source string `json:"source"` // PodmanFromProbe or PodmanFromContainersConf
	// Runtime and CgroupManager are podman's --runtime and
	// --cgroup-manager; empty means podman's own default.
	Runtime       string `json:"runtime,omitempty"`
	CgroupManager string `json:"cgroup_manager,omitempty"`
	// Ulimits are the --ulimit values every project container gets:
	// podman's defaults clamped to the agent's own hard limits.
	Ulimits []string `json:"ulimits,omitempty"`
	// Error says why no setting ran a container (projects cannot start).
	Error string `json:"error,omitempty"`
}

func (r PodmanRuntime) String() string {
	if r.Source == PodmanFromContainersConf {
		return "settings from providers.local.containers_conf"
	}
	if r.Error != "" {
		return "no working settings found: " + r.Error
	}
	or := func(s string) string {
		if s == "" {
			return "default"
		}
		return s
	}
	return fmt.Sprintf("runtime %s, cgroup manager %s, ulimits %s (probed)", or(r.Runtime), or(r.CgroupManager), strings.Join(r.Ulimits, " "))
}

// DialTimeout bounds connecting to the socket. A local socket either
// accepts at once or not at all, so waiting long only hides a dead agent.
const DialTimeout = 2 * time.Second

// Client talks to one agent over its unix socket.
type Client struct {
	socketPath string
	http       *http.Client
}

// NewClient returns a client for the agent listening on socketPath.
func NewClient(socketPath string) *Client {
	d := net.Dialer{Timeout: DialTimeout}
	c := NewClientDialer(func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", socketPath)
	})
	c.socketPath = socketPath
	return c
}

// NewClientDialer returns a client whose connections come from dial, for
// agents reached another way (a unix socket forwarded over SSH).
func NewClientDialer(dial func(ctx context.Context) (net.Conn, error)) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		// Callers make a client per check; pooled idle connections would
		// only keep file descriptors (and the agent's shutdown) waiting.
		DisableKeepAlives: true,
	}
	return &Client{
		// A safety net for callers whose context has no deadline.
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}
}

// SocketPath returns the socket this client dials.
func (c *Client) SocketPath() string { return c.socketPath }

// Status asks the agent for its status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	if err := c.get(ctx, StatusPath, &s); err != nil {
		return Status{}, err
	}
	return s, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	body, err := c.open(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(io.LimitReader(body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("agent at %s: GET %s: decode: %w", c.socketPath, path, err)
	}
	return nil
}

// open GETs path and returns the body of a 200 answer.
func (c *Client) open(ctx context.Context, path string) (io.ReadCloser, error) {
	// The host part is ignored by our dialer; it only has to be valid.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: GET %s: %w", c.socketPath, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("agent at %s: GET %s: %s: %s", c.socketPath, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp.Body, nil
}

// MetricsPath serves the agent's Prometheus metrics (text format).
const MetricsPath = "/v1/metrics"

// Metrics returns the agent's Prometheus metrics in the text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	body, err := c.open(ctx, MetricsPath)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("agent at %s: GET %s: %w", c.socketPath, MetricsPath, err)
	}
	return b, nil
}
