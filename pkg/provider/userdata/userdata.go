// Package userdata builds the cloud-init user data the REST providers
// (Hyperstack, Lambda) send with a new instance.
package userdata

import (
	"encoding/json"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// CloudConfig is the cloud-init user data for a new instance: the SSH host
// key the control plane generated (so the bootstrap runner knows the key
// before first contact) and, when the login user is not the image's
// default, that user with the fleet key. It is empty when there is
// nothing to say, and then no user_data is sent.
func CloudConfig(user, defaultUser, authorizedKey string, hostKey *provider.HostKey) string {
	var b strings.Builder
	if hostKey != nil && hostKey.PrivatePEM != "" && hostKey.Public != "" {
		if kind := hostKeyKind(hostKey.Public); kind != "" {
			b.WriteString("ssh_keys:\n")
			b.WriteString("  " + kind + "_private: |\n")
			for _, line := range strings.Split(strings.TrimRight(hostKey.PrivatePEM, "\n"), "\n") {
				b.WriteString("    " + line + "\n")
			}
			b.WriteString("  " + kind + "_public: " + yamlString(strings.TrimSpace(hostKey.Public)) + "\n")
		}
	}
	if user != "" && user != defaultUser {
		b.WriteString("users:\n  - default\n")
		b.WriteString("  - name: " + yamlString(user) + "\n")
		b.WriteString("    shell: /bin/bash\n")
		b.WriteString("    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n")
		b.WriteString("    ssh_authorized_keys:\n      - " + yamlString(strings.TrimSpace(authorizedKey)) + "\n")
	}
	if b.Len() == 0 {
		return ""
	}
	return "#cloud-config\n" + b.String()
}

// hostKeyKind is cloud-init's name for the key type of an authorized_keys
// line, or "" for a type cloud-init cannot install.
func hostKeyKind(pub string) string {
	switch f := strings.Fields(pub); {
	case len(f) == 0:
		return ""
	case f[0] == "ssh-ed25519":
		return "ed25519"
	case strings.HasPrefix(f[0], "ecdsa-sha2-"):
		return "ecdsa"
	case f[0] == "ssh-rsa":
		return "rsa"
	}
	return ""
}

// yamlString quotes s as a YAML double-quoted scalar (a JSON string is
// one), so comments and special characters cannot change the document.
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
