package podman

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
)

// CDIDirs are where container tools look for CDI specs.
var CDIDirs = []string{"/etc/cdi", "/var/run/cdi"}

var nvidiaDevRE = lazyre.New(`^nvidia[0-9]+$`)

// NvidiaGPUs returns the NVIDIA GPU device nodes under devDir (normally
// /dev): one per GPU, named nvidia0, nvidia1, ...
func NvidiaGPUs(devDir string) []string {
	entries, err := os.ReadDir(devDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if nvidiaDevRE().MatchString(e.Name()) {
			out = append(out, filepath.Join(devDir, e.Name()))
		}
	}
	return out
}

// HasNvidiaCDI reports whether a CDI spec in dirs declares the
// nvidia.com/gpu devices (made by `nvidia-ctk cdi generate`).
func HasNvidiaCDI(dirs []string) bool {
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if ext != ".yaml" && ext != ".yml" && ext != ".json" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err == nil && strings.Contains(string(b), "nvidia.com/gpu") {
				return true
			}
		}
	}
	return false
}

// ErrNoCDI is a host with NVIDIA GPUs but no CDI spec for them.
var ErrNoCDI = errors.New("this host has NVIDIA GPUs but no CDI spec for them; run `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` (from nvidia-container-toolkit)")

// GPUPassthrough decides whether project containers get the host's GPUs:
// true when there are NVIDIA GPUs and a CDI spec, ErrNoCDI when there are
// GPUs without one, false when there are none.
func GPUPassthrough(devDir string, cdiDirs []string) (bool, int, error) {
	n := len(NvidiaGPUs(devDir))
	if n == 0 {
		return false, 0, nil
	}
	if !HasNvidiaCDI(cdiDirs) {
		return false, n, ErrNoCDI
	}
	return true, n, nil
}
