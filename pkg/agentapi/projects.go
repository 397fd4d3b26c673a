package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
)

// imageRE leaves the length (at most 255) to ValidImageName: a counted
// repetition such as {0,254} compiles into that many copies, ≈240 KB
// and ≈2 ms at start-up of every command.
var imageRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$`)

// ValidImageName reports whether image is a plausible image reference
// (and so can never be taken for a podman option).
func ValidImageName(image string) bool { return len(image) <= 255 && imageRE().MatchString(image) }

// PullPath pulls an image onto the host.
const PullPath = "/v1/images/pull"

// PullImageRequest asks the agent to pull an image from its registry.
type PullImageRequest struct {
	Name string `json:"name"`
}

// PullImage fetches an image from its registry onto the host (a no-op for
// an image that is already there).
func (c *Client) PullImage(ctx context.Context, name string) (ImageInfo, error) {
	var out ImageInfo
	return out, c.do(ctx, http.MethodPost, PullPath, PullImageRequest{Name: name}, &out)
}

// Paths of the project API. {id} is a project id (a UUID), {name} a
// snapshot name.
const (
	ProjectsPath  = "/v1/projects"
	ResourcesPath = "/v1/resources"
	IdlePath      = "/v1/idle"
	ImagesPath    = "/v1/images"
	BuildPath     = "/v1/images/build"
)

// Project states reported by the agent.
const (
	ProjectRunning = "running"
	ProjectStopped = "stopped" // storage exists, no running container
	ProjectAbsent  = "absent"  // nothing of the project on this host
)

// Error codes in error replies, so the control plane can tell bad input
// from a missing project without parsing messages.
const (
	CodeInvalid     = "invalid"
	CodeNotFound    = "not_found"
	CodeConflict    = "conflict"
	CodeUnsupported = "unsupported"
	CodeNotRunning  = "not_running"
	CodeInternal    = "internal"
	// CodeNoRoom: the host has no room for what was asked (memory).
	CodeNoRoom = "no_room"
)

// ErrorReply is the body of every error reply of the project API.
type ErrorReply struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Error is an error reply from the agent.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsCode reports whether err is an agent error reply with code.
func IsCode(err error, code string) bool {
	var ae *Error
	return errors.As(err, &ae) && ae.Code == code
}

// Limits are a project's resource limits. Zero means no limit.
type Limits struct {
	MemoryBytes int64   `json:"memory_bytes"`
	CPUs        float64 `json:"cpus"`
	PidsLimit   int     `json:"pids_limit"`
	DiskBytes   int64   `json:"disk_bytes"`
}

// CreateProjectRequest makes a project's storage.
type CreateProjectRequest struct {
	DiskBytes int64 `json:"disk_bytes"`
}

// StartProjectRequest runs a project's container.
type StartProjectRequest struct {
	Image    string `json:"image"`
	Limits   Limits `json:"limits"`
	Hostname string `json:"hostname,omitempty"`
	// IdleTimeoutSeconds stops the project after that long without
	// activity; 0 never does.
	IdleTimeoutSeconds int64 `json:"idle_timeout_seconds"`
	// Pull fetches the image from its registry when it is not on the
	// host; without it a missing image is an error at once.
	Pull bool `json:"pull,omitempty"`
	// MemoryCapBytes, when set, is the most the memory limits of all
	// running projects, this one included, may add up to. The agent
	// checks it in one step with the start, so concurrent starts cannot
	// both take the last room.
	MemoryCapBytes int64 `json:"memory_cap_bytes,omitempty"`
	// MemoryOvercommit, when set and MemoryCapBytes is not, makes the
	// cap that many times the host's memory, so that the caller need not
	// ask the host's size first.
	MemoryOvercommit float64 `json:"memory_overcommit,omitempty"`
}

// DiskUsage is a project's disk use.
type DiskUsage struct {
	UsedBytes         int64  `json:"used_bytes"`
	QuotaBytes        int64  `json:"quota_bytes"`
	ScratchBytes      int64  `json:"scratch_bytes"`
	ScratchQuotaBytes int64  `json:"scratch_quota_bytes"`
	Snapshots         int    `json:"snapshots"`
	Note              string `json:"note,omitempty"`
}

// ProjectStatus is what the agent knows about one project.
type ProjectStatus struct {
	ID          string     `json:"id"`
	State       string     `json:"state"`
	ContainerID string     `json:"container_id,omitempty"`
	Image       string     `json:"image,omitempty"`
	Limits      Limits     `json:"limits"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	// LastActivity is the last time the project used CPU, had a session
	// open, or was started.
	LastActivity       *time.Time `json:"last_activity,omitempty"`
	IdleTimeoutSeconds int64      `json:"idle_timeout_seconds"`
	Sessions           int        `json:"sessions"`
	CPUSeconds         float64    `json:"cpu_seconds"`
	MemoryBytes        int64      `json:"memory_bytes"`
	OOMKills           int64      `json:"oom_kills"`
	GPUs               bool       `json:"gpus"`
	// StoppedReason says why the agent stopped the project ("idle").
	StoppedReason string     `json:"stopped_reason,omitempty"`
	Disk          *DiskUsage `json:"disk,omitempty"`
}

// Snapshot is a read-only snapshot of a project's home.
type Snapshot struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Auto      bool      `json:"auto"`
}

// SnapshotRequest makes a snapshot; an empty name gets a generated one.
type SnapshotRequest struct {
	Name string `json:"name"`
}

// RestoreRequest restores a path ("" for the whole home) from a snapshot.
type RestoreRequest struct {
	Snapshot string `json:"snapshot"`
	Path     string `json:"path"`
}

// RestoreResult names the snapshot taken just before the restore.
type RestoreResult struct {
	SafetySnapshot string `json:"safety_snapshot"`
}

// QuotaRequest changes a project's disk quota.
type QuotaRequest struct {
	DiskBytes int64 `json:"disk_bytes"`
}

// Resources are what the host has and what its projects use of it.
type Resources struct {
	CPUs                 int     `json:"cpus"`
	MemoryTotalBytes     int64   `json:"memory_total_bytes"`
	MemoryAvailableBytes int64   `json:"memory_available_bytes"`
	GPUs                 int     `json:"gpus"`
	GPUPassthrough       bool    `json:"gpu_passthrough"`
	GPUNote              string  `json:"gpu_note,omitempty"`
	Storage              Storage `json:"storage"`
	Snapshots            bool    `json:"snapshots"`
	Quotas               bool    `json:"quotas"`
	RunningProjects      int     `json:"running_projects"`
	// MemoryCommittedBytes sums the memory limits of running projects.
	MemoryCommittedBytes int64   `json:"memory_committed_bytes"`
	CPUsCommitted        float64 `json:"cpus_committed"`
	ProjectsOnDisk       int     `json:"projects_on_disk"`
	// RunningMemory maps each running project to its memory limit.
	RunningMemory map[string]int64 `json:"running_memory"`
}

// IdlePolicy is the host's own idle stop: with StopAfterSeconds > 0 the
// host stops itself (its projects first) once no project has been active
// for that long.
type IdlePolicy struct {
	StopAfterSeconds int64 `json:"stop_after_seconds"`
	// Read only: when some project was last active (or the agent started),
	// and when the host will stop if nothing happens.
	LastActivity *time.Time `json:"last_activity,omitempty"`
	StopsAt      *time.Time `json:"stops_at,omitempty"`
	// StoppedBy (read only) says who stops the host when the policy is
	// reached: IdleStopByHost or IdleStopByControlPlane.
	StoppedBy string `json:"stopped_by,omitempty"`
}

// Who stops an idle host.
const (
	// IdleStopByHost: the host stops itself (a VM powers itself off; a
	// local host's agent exits).
	IdleStopByHost = "host"
	// IdleStopByControlPlane: the agent stops the projects and the
	// control plane's worker stops the host through the cloud's API.
	IdleStopByControlPlane = "control_plane"
)

// ImageInfo says whether an image is on the host.
type ImageInfo struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
}

// BuildImageRequest makes an image from Debian packages on the host.
type BuildImageRequest struct {
	Name    string   `json:"name"`
	Suite   string   `json:"suite,omitempty"`
	Variant string   `json:"variant,omitempty"`
	Include []string `json:"include,omitempty"`
	Mirror  string   `json:"mirror,omitempty"`
	// Rebuild ignores a cached root filesystem for the same packages.
	Rebuild bool `json:"rebuild,omitempty"`
}

// BuildEvent is one line of a build's progress stream; the last one has
// Done set, and Error if the build failed.
type BuildEvent struct {
	Line   string `json:"line,omitempty"`
	Done   bool   `json:"done,omitempty"`
	Error  string `json:"error,omitempty"`
	Cached bool   `json:"cached,omitempty"`
}

// ProjectPath is the path of one project, or of something below it.
func ProjectPath(id string, sub ...string) string {
	p := ProjectsPath + "/" + url.PathEscape(id)
	for _, s := range sub {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// do sends a JSON request and decodes a JSON reply into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("agent %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return fmt.Errorf("agent %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.longHTTP().Do(req)
	if err != nil {
		return fmt.Errorf("agent %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("agent %s %s: decode: %w", method, path, err)
	}
	return nil
}

// longHTTP is a client without the overall timeout: project starts that
// pull an image, exec sessions and image builds legitimately take long;
// the caller's context bounds them instead.
func (c *Client) longHTTP() *http.Client {
	return &http.Client{Transport: c.http.Transport}
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var er ErrorReply
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		return &Error{Status: resp.StatusCode, Code: er.Code, Message: er.Error}
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = resp.Status
	}
	return &Error{Status: resp.StatusCode, Code: CodeInternal, Message: "agent: " + msg}
}

// Projects lists the projects on the host: those with storage and those
// with a container.
func (c *Client) Projects(ctx context.Context) ([]ProjectStatus, error) {
	var out []ProjectStatus
	return out, c.do(ctx, http.MethodGet, ProjectsPath, nil, &out)
}

// Project returns one project's status, with its disk usage.
func (c *Client) Project(ctx context.Context, id string) (ProjectStatus, error) {
	var out ProjectStatus
	return out, c.do(ctx, http.MethodGet, ProjectPath(id), nil, &out)
}

// CreateProject makes a project's storage; it is idempotent.
func (c *Client) CreateProject(ctx context.Context, id string, r CreateProjectRequest) (ProjectStatus, error) {
	var out ProjectStatus
	return out, c.do(ctx, http.MethodPut, ProjectPath(id), r, &out)
}

// DeleteProject stops a project and deletes its storage, snapshots and
// scratch; deleting a project that is not there succeeds.
func (c *Client) DeleteProject(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, ProjectPath(id), nil, nil)
}

// StartProject runs the project's container (or returns the running one).
func (c *Client) StartProject(ctx context.Context, id string, r StartProjectRequest) (ProjectStatus, error) {
	var out ProjectStatus
	return out, c.do(ctx, http.MethodPost, ProjectPath(id, "start"), r, &out)
}

// StopProject stops the project's container; stopping a stopped project
// succeeds.
func (c *Client) StopProject(ctx context.Context, id string) (ProjectStatus, error) {
	var out ProjectStatus
	return out, c.do(ctx, http.MethodPost, ProjectPath(id, "stop"), nil, &out)
}

// HaltProject ends every process of the project at once and returns when
// none is left; its container stays, exited, until StopProject removes
// it. Halting a stopped project succeeds.
func (c *Client) HaltProject(ctx context.Context, id string) (ProjectStatus, error) {
	var out ProjectStatus
	return out, c.do(ctx, http.MethodPost, ProjectPath(id, "halt"), nil, &out)
}

// SetQuota changes a project's disk quota.
func (c *Client) SetQuota(ctx context.Context, id string, diskBytes int64) error {
	return c.do(ctx, http.MethodPut, ProjectPath(id, "quota"), QuotaRequest{DiskBytes: diskBytes}, nil)
}

// Snapshots lists a project's snapshots, oldest first.
func (c *Client) Snapshots(ctx context.Context, id string) ([]Snapshot, error) {
	var out []Snapshot
	return out, c.do(ctx, http.MethodGet, ProjectPath(id, "snapshots"), nil, &out)
}

// CreateSnapshot snapshots a project's home.
func (c *Client) CreateSnapshot(ctx context.Context, id, name string) (Snapshot, error) {
	var out Snapshot
	return out, c.do(ctx, http.MethodPost, ProjectPath(id, "snapshots"), SnapshotRequest{Name: name}, &out)
}

// DeleteSnapshot deletes one snapshot.
func (c *Client) DeleteSnapshot(ctx context.Context, id, name string) error {
	return c.do(ctx, http.MethodDelete, ProjectPath(id, "snapshots", name), nil, nil)
}

// Restore restores a path of a project's home from a snapshot.
func (c *Client) Restore(ctx context.Context, id string, r RestoreRequest) (RestoreResult, error) {
	var out RestoreResult
	return out, c.do(ctx, http.MethodPost, ProjectPath(id, "restore"), r, &out)
}

// Resources reports the host's capacity and its projects' use of it.
func (c *Client) Resources(ctx context.Context) (Resources, error) {
	var out Resources
	return out, c.do(ctx, http.MethodGet, ResourcesPath, nil, &out)
}

// KnownResources is Resources with the running projects as the agent
// knows them, which asks podman nothing (fast) but may count a project
// whose container exited by itself since: a caller that would refuse on
// its answer asks Resources again. (An agent older than this answers as
// Resources.)
func (c *Client) KnownResources(ctx context.Context) (Resources, error) {
	var out Resources
	return out, c.do(ctx, http.MethodGet, ResourcesPath+"?known=1", nil, &out)
}

// Idle returns the host's idle-stop policy.
func (c *Client) Idle(ctx context.Context) (IdlePolicy, error) {
	var out IdlePolicy
	return out, c.do(ctx, http.MethodGet, IdlePath, nil, &out)
}

// SetIdle sets the host's idle-stop policy.
func (c *Client) SetIdle(ctx context.Context, p IdlePolicy) (IdlePolicy, error) {
	var out IdlePolicy
	return out, c.do(ctx, http.MethodPut, IdlePath, p, &out)
}

// Image says whether image is on the host (without contacting a registry).
func (c *Client) Image(ctx context.Context, name string) (ImageInfo, error) {
	var out ImageInfo
	return out, c.do(ctx, http.MethodGet, ImagesPath+"?name="+url.QueryEscape(name), nil, &out)
}

// BuildImage builds an image on the host, calling progress with each line
// of output. It returns whether the root filesystem came from the host's
// cache.
func (c *Client) BuildImage(ctx context.Context, r BuildImageRequest, progress func(string)) (bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+BuildPath, bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.longHTTP().Do(req)
	if err != nil {
		return false, fmt.Errorf("agent build image: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return false, readError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev BuildEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return false, fmt.Errorf("agent build image: bad progress line %q", sc.Text())
		}
		if ev.Done {
			if ev.Error != "" {
				return ev.Cached, &Error{Status: http.StatusOK, Code: CodeInternal, Message: ev.Error}
			}
			return ev.Cached, nil
		}
		if progress != nil {
			progress(ev.Line)
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("agent build image: %w", err)
	}
	return false, errors.New("agent build image: the agent closed the stream before the build finished (see its log)")
}
