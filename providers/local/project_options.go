package local

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// Options for the projects a local host runs. The podman runtime, cgroup
// manager and ulimits are probed by the agent (podman.Probe); a
// containers.conf named here overrides them.
const (
	// OptionContainersConf is a containers.conf for the agent's podman
	// (passed as CONTAINERS_CONF).
	OptionContainersConf = "containers_conf"
	// OptionPodmanStore is a directory for a podman store of the host's own
	// (root, runroot and tmpdir go below it); empty uses the system store.
	OptionPodmanStore = "podman_store"
	// OptionImageCache keeps root filesystems built by `image build`.
	OptionImageCache = "image_cache_dir"
	// OptionIdleCheck is how often the agent samples project activity.
	OptionIdleCheck = "idle_check_interval"
	// OptionSnapshotInterval is how often active projects are snapshotted
	// ("0" turns scheduled snapshots off).
	OptionSnapshotInterval = "snapshot_interval"
)

// projectOptions are the agent settings a local host's projects get.
type projectOptions struct {
	podman           agentapi.PodmanConfig
	imageCache       string
	idleCheck        string
	snapshotInterval string
}

// PodmanStore is the podman store of option podman_store=dir: root and
// tmpdir below dir, and the runroot in runtimeDir, because podman refuses a
// runroot longer than 50 characters.
func PodmanStore(dir, runtimeDir string) agentapi.PodmanConfig {
	h := sha256.Sum256([]byte(dir))
	return agentapi.PodmanConfig{
		Root:    filepath.Join(dir, "root"),
		RunRoot: filepath.Join(runtimeDir, "podman-"+hex.EncodeToString(h[:])[:12]),
		TmpDir:  filepath.Join(dir, "tmp"),
	}
}

func parseProjectOptions(opts map[string]string, runtimeDir string) (projectOptions, error) {
	var o projectOptions
	if c := opts[OptionContainersConf]; c != "" {
		abs, err := filepath.Abs(c)
		if err != nil {
			return o, fmt.Errorf("local provider option %s: %w", OptionContainersConf, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return o, fmt.Errorf("local provider option %s=%q: %w", OptionContainersConf, c, err)
		}
		o.podman.ContainersConf = abs
	}
	if d := opts[OptionPodmanStore]; d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return o, fmt.Errorf("local provider option %s: %w", OptionPodmanStore, err)
		}
		if runtimeDir == "" {
			runtimeDir = os.TempDir()
		}
		st := PodmanStore(abs, runtimeDir)
		o.podman.Root, o.podman.RunRoot, o.podman.TmpDir = st.Root, st.RunRoot, st.TmpDir
	}
	if d := opts[OptionImageCache]; d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return o, fmt.Errorf("local provider option %s: %w", OptionImageCache, err)
		}
		o.imageCache = abs
	}
	for key, dst := range map[string]*string{OptionIdleCheck: &o.idleCheck, OptionSnapshotInterval: &o.snapshotInterval} {
		if v := opts[key]; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || (key == OptionIdleCheck && d == 0) {
				return o, fmt.Errorf("local provider option %s=%q: want a duration such as 30s", key, v)
			}
			*dst = v
		}
	}
	return o, nil
}

// apply adds the project settings to a host's agent config. A local host
// is nothing but its agent, so stopping the agent cleanly stops its
// projects (a killed agent leaves them running for the next one).
func (o projectOptions) apply(c agentapi.Config) agentapi.Config {
	c.Podman = o.podman
	c.ImageCacheDir = o.imageCache
	c.IdleCheckInterval = o.idleCheck
	c.SnapshotInterval = o.snapshotInterval
	c.StopProjectsOnExit = true
	return c
}
