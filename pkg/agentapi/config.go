package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// Config is the agent's configuration file: what the control plane (the
// local provider, the SSH bootstrap) writes for a host's agent, and what
// the agent reads when it starts. It lives here, with the rest of the
// contract between the two, so that the control plane does not link the
// agent's podman, btrfs and storage code to write it.
type Config struct {
	HostID     string `json:"host_id"`
	SocketPath string `json:"socket_path"`
	// PoolPath is where projects are stored: a mounted btrfs filesystem
	// or a plain directory, as StorageKind says.
	PoolPath    string `json:"pool_path"`
	StorageKind string `json:"storage_kind"` // StorageBtrfs or StorageDirectory
	// LogPath is where the agent writes its log; empty means no log.
	LogPath string `json:"log_path,omitempty"`

	// Project runtime settings.
	//
	// Podman says how to call podman: a containers.conf for hosts that
	// need one, and optionally a store of its own.
	Podman PodmanConfig `json:"podman,omitempty"`
	// ImageCacheDir keeps root filesystems built by `image build`, keyed
	// by their package list; empty means no cache.
	ImageCacheDir string `json:"image_cache_dir,omitempty"`
	// IdleCheckInterval is how often project activity is sampled (a Go
	// duration; default DefaultIdleCheck).
	IdleCheckInterval string `json:"idle_check_interval,omitempty"`
	// SnapshotInterval is how often projects that were active get a
	// scheduled snapshot (default DefaultSnapshotInterval; "0" turns it
	// off).
	SnapshotInterval string `json:"snapshot_interval,omitempty"`
	// StopProjectsOnExit stops every project when the agent shuts down
	// cleanly: on a host that is only this agent (the local provider),
	// stopping the agent is stopping the host. A killed agent never stops
	// projects, so a restarted one finds them running.
	StopProjectsOnExit bool `json:"stop_projects_on_exit,omitempty"`
	// SelfStopCommand is run (after stopping projects) when the host's
	// idle policy stops it, e.g. "systemctl poweroff" on a VM (split on
	// spaces, no shell); empty means the agent exits.
	SelfStopCommand string `json:"self_stop_command,omitempty"`
	// IdleStopByControlPlane: the control plane stops this host through
	// its cloud's API once it has been idle past its policy (on clouds
	// where powering off does not end billing, such as Hyperstack, whose
	// stop is a hibernate). The agent keeps and reports the policy, and
	// stops the projects when it is reached.
	IdleStopByControlPlane bool `json:"idle_stop_by_control_plane,omitempty"`
	// Ingress is where users reach projects directly.
	Ingress IngressConfig `json:"ingress,omitempty"`
}

// IngressConfig says where users reach projects on this host directly:
// an HTTPS listener that proxies /<project_id>/port/<n>/… into project
// containers, and an SSH listener whose users are project ids. Both check
// connect tokens and certificates against the access list the control
// plane pushes. Empty addresses leave a listener off.
type IngressConfig struct {
	HTTPSAddr string `json:"https_addr,omitempty"`
	SSHAddr   string `json:"ssh_addr,omitempty"`
	// TLSNames are the DNS names and IP addresses, comma-separated, the
	// self-signed HTTPS certificate is for (clients pin the certificate
	// anyway). A string keeps Config comparable.
	TLSNames string `json:"tls_names,omitempty"`
	// SessionTTL is how long a browser session made from a connect token
	// lasts (a Go duration; default DefaultSessionTTL). Every request is
	// still checked against the access list.
	SessionTTL string `json:"session_ttl,omitempty"`
	// InitialAccess is the access list the host was bootstrapped with;
	// a newer one pushed since takes precedence.
	InitialAccess *AccessList `json:"initial_access,omitempty"`
}

// DefaultSessionTTL is how long an ingress browser session lasts unless
// the configuration says otherwise.
const DefaultSessionTTL = 12 * time.Hour

// Sessions is how long a browser session made from a connect token lasts.
func (c IngressConfig) Sessions() (time.Duration, error) {
	return positiveDuration("ingress.session_ttl", c.SessionTTL, DefaultSessionTTL, "12h")
}

// positiveDuration parses the duration v of key, def when it is empty.
func positiveDuration(key, v string, def time.Duration, example string) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as %s", key, v, example)
	}
	return d, nil
}

// Validate checks that c can be used.
func (c IngressConfig) Validate() error {
	for _, a := range []struct{ name, addr string }{{"ingress.https_addr", c.HTTPSAddr}, {"ingress.ssh_addr", c.SSHAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: want HOST:PORT such as :443 or 127.0.0.1:0", a.name, a.addr)
		}
	}
	_, err := c.Sessions()
	return err
}

// PodmanConfig says how the agent calls podman.
type PodmanConfig struct {
	// Binary is the podman executable (default "podman" on PATH).
	Binary string `json:"binary,omitempty"`
	// ContainersConf is passed as CONTAINERS_CONF: a containers.conf that
	// replaces the system ones (see machine.md for why a host needs one).
	ContainersConf string `json:"containers_conf,omitempty"`
	// Root, RunRoot and TmpDir select a separate podman store; podman
	// needs all three to keep two stores apart, so give all or none.
	Root    string `json:"root,omitempty"`
	RunRoot string `json:"runroot,omitempty"`
	TmpDir  string `json:"tmpdir,omitempty"`
}

// MaxPodmanRunRoot is the longest runroot podman accepts.
const MaxPodmanRunRoot = 50

// Defaults of the project runtime settings.
const (
	DefaultIdleCheck        = 30 * time.Second
	DefaultSnapshotInterval = time.Hour
)

// maxSocketPath is the longest path a unix socket address can hold
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Validate checks that c can be used.
func (c Config) Validate() error {
	switch {
	case c.HostID == "":
		return errors.New("host_id is empty")
	case c.SocketPath == "":
		return errors.New("socket_path is empty")
	case len(c.SocketPath) > maxSocketPath:
		return fmt.Errorf("socket_path %s is longer than %d bytes, the limit for unix sockets", c.SocketPath, maxSocketPath)
	case c.PoolPath == "":
		return errors.New("pool_path is empty")
	}
	switch c.StorageKind {
	case StorageBtrfs, StorageDirectory:
	default:
		return fmt.Errorf("storage_kind %q is not %q or %q", c.StorageKind, StorageBtrfs, StorageDirectory)
	}
	if _, err := c.IdleCheck(); err != nil {
		return err
	}
	if _, err := c.Snapshots(); err != nil {
		return err
	}
	if err := c.Ingress.Validate(); err != nil {
		return err
	}
	return c.Podman.Validate()
}

// IdleCheck is how often project activity is sampled.
func (c Config) IdleCheck() (time.Duration, error) {
	return positiveDuration("idle_check_interval", c.IdleCheckInterval, DefaultIdleCheck, "30s")
}

// Snapshots is how often active projects get a scheduled snapshot; 0
// turns the schedule off.
func (c Config) Snapshots() (time.Duration, error) {
	if c.SnapshotInterval == "" {
		return DefaultSnapshotInterval, nil
	}
	d, err := time.ParseDuration(c.SnapshotInterval)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("snapshot_interval %q: want a duration such as 1h, or 0 to turn scheduled snapshots off", c.SnapshotInterval)
	}
	return d, nil
}

// IdleStopper says who stops this host once it is idle past its policy
// (IdleStopByHost or IdleStopByControlPlane), or "" when nobody can: an
// adopted machine, or a cloud that cannot stop VMs.
func (c Config) IdleStopper() string {
	switch {
	case c.SelfStopCommand != "" || c.StopProjectsOnExit:
		return IdleStopByHost
	case c.IdleStopByControlPlane:
		return IdleStopByControlPlane
	}
	return ""
}

// Validate checks that c can be used.
func (c PodmanConfig) Validate() error {
	set := 0
	for _, s := range []string{c.Root, c.RunRoot, c.TmpDir} {
		if s != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return errors.New("podman root, runroot and tmpdir must be given together (a separate store needs all three)")
	}
	if len(c.RunRoot) > MaxPodmanRunRoot {
		return fmt.Errorf("podman runroot %s is longer than %d characters, which podman refuses; choose a shorter one", c.RunRoot, MaxPodmanRunRoot)
	}
	if c.ContainersConf != "" {
		if _, err := os.Stat(c.ContainersConf); err != nil {
			return fmt.Errorf("podman containers.conf: %w", err)
		}
	}
	return nil
}

// LoadConfig reads and validates a config file, refusing one that others
// may read or write.
func LoadConfig(path string) (Config, error) {
	b, err := secrets.Read(path)
	if err != nil {
		return Config{}, fmt.Errorf("agent config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("agent config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("agent config %s: %w", path, err)
	}
	return c, nil
}

// WriteConfig writes c to path with mode 0600, atomically, so the agent
// never reads a half-written file.
func WriteConfig(path string, c Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("write agent config %s: %w", path, err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("write agent config %s: %w", path, err)
	}
	if err := secrets.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write agent config %s: %w", path, err)
	}
	return nil
}
