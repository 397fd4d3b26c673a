// Package bootstrap holds the POSIX shell scripts that turn a plain Linux
// machine into a cocalc-hosts project host. The control plane uploads and
// runs them over SSH (see pkg/sshboot); they are embedded so that the one
// cocalc-hosts binary carries everything a bootstrap needs.
//
// Where things go on a host:
//
//	/usr/local/bin/cocalc-hosts          the agent (this same program)
//	/etc/cocalc-hosts/agent.json         agent config (root, 0600)
//	/etc/cocalc-hosts/secrets/NAME       secrets (root, 0600)
//	/etc/cocalc-hosts/bootstrap.conf     bootstrap settings (root, 0600)
//	/var/lib/cocalc-hosts/bootstrap/     these scripts
//	/usr/local/lib/cocalc-hosts/         agentctl and supervise
//	/run/cocalc-hosts/agent.sock         the agent's API (root, 0600)
//	/btrfs                               the project pool (btrfs)
package bootstrap

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
)

// Scripts, by file name.
var (
	//go:embed bootstrap.sh
	Bootstrap string
	//go:embed preflight.sh
	Preflight string
	//go:embed agentctl.sh
	AgentCtl string
	//go:embed supervise.sh
	Supervise string
	//go:embed install-agent.sh
	InstallAgent string
	//go:embed install-files.sh
	InstallFiles string
)

// Paths on a host.
const (
	AgentBinary   = "/usr/local/bin/cocalc-hosts"
	ConfigDir     = "/etc/cocalc-hosts"
	AgentConfig   = ConfigDir + "/agent.json"
	SecretsDir    = ConfigDir + "/secrets"
	BootstrapConf = ConfigDir + "/bootstrap.conf"
	ScriptDir     = "/var/lib/cocalc-hosts/bootstrap"
	AgentCtlPath  = "/usr/local/lib/cocalc-hosts/agentctl"
	AgentSocket   = "/run/cocalc-hosts/agent.sock"
	AgentLog      = "/var/log/cocalc-hosts/agent.log"
	Pool          = "/btrfs"
)

// Files are the scripts to upload to ScriptDir.
func Files() map[string]string {
	return map[string]string{
		"bootstrap.sh": Bootstrap,
		"preflight.sh": Preflight,
		"agentctl.sh":  AgentCtl,
		"supervise.sh": Supervise,
	}
}

// Digest identifies this version of the scripts.
func Digest() string {
	h := sha256.New()
	for _, s := range []string{Bootstrap, Preflight, AgentCtl, Supervise, InstallAgent, InstallFiles} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
