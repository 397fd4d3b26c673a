package nebius

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// userRE is what we accept as a login user name (the portable subset of
// Unix user names), at most 32 bytes (checked apart, as a counted
// repetition compiles into that many copies at start-up).
var userRE = lazyre.New(`^[a-z_][a-z0-9_-]*$`)

// hostKeyTypes maps an OpenSSH public key algorithm to the prefix
// cloud-init's ssh_keys uses for it.
var hostKeyTypes = map[string]string{
	"ssh-ed25519":         "ed25519",
	"ecdsa-sha2-nistp256": "ecdsa",
	"ecdsa-sha2-nistp384": "ecdsa",
	"ecdsa-sha2-nistp521": "ecdsa",
	"ssh-rsa":             "rsa",
}

// cloudConfig is the part of cloud-init's #cloud-config we use.
type cloudConfig struct {
	Users         []cloudUser       `json:"users"`
	SSHDeleteKeys *bool             `json:"ssh_deletekeys,omitempty"`
	SSHKeys       map[string]string `json:"ssh_keys,omitempty"`
}

type cloudUser struct {
	Name              string   `json:"name"`
	Sudo              string   `json:"sudo"`
	Shell             string   `json:"shell"`
	LockPasswd        bool     `json:"lock_passwd"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
}

// userData builds the cloud-init user data for spec: the login user with
// passwordless sudo and the fleet's authorized key, and, when the control
// plane generated one, the SSH host key pair (ssh_keys), replacing the
// keys the image would generate (ssh_deletekeys). The document is JSON
// after the #cloud-config header: JSON is YAML, and encoding/json quotes
// every key and PEM line correctly.
func userData(user string, spec provider.CreateSpec) (string, error) {
	if len(user) > 32 || !userRE().MatchString(user) {
		return "", fmt.Errorf("ssh user %q is not a valid Unix user name", user)
	}
	u := cloudUser{Name: user, Sudo: "ALL=(ALL) NOPASSWD:ALL", Shell: "/bin/bash", LockPasswd: true}
	if k := strings.TrimSpace(spec.SSHAuthorizedKey); k != "" {
		if strings.ContainsAny(k, "\r\n") {
			return "", fmt.Errorf("the SSH authorized key must be one line")
		}
		u.SSHAuthorizedKeys = []string{k}
	}
	cc := cloudConfig{Users: []cloudUser{u}}
	if hk := spec.HostKey; hk != nil {
		pub := strings.TrimSpace(hk.Public)
		algo, _, _ := strings.Cut(pub, " ")
		prefix, ok := hostKeyTypes[algo]
		if !ok {
			return "", fmt.Errorf("host key type %q is not one cloud-init can install (ed25519, ecdsa or rsa)", algo)
		}
		if !strings.Contains(hk.PrivatePEM, "PRIVATE KEY-----") {
			return "", fmt.Errorf("the host private key is not PEM")
		}
		deleteKeys := true
		cc.SSHDeleteKeys = &deleteKeys
		cc.SSHKeys = map[string]string{
			prefix + "_private": strings.TrimSpace(hk.PrivatePEM) + "\n",
			prefix + "_public":  pub,
		}
	}
	b, err := json.MarshalIndent(cc, "", "  ")
	if err != nil {
		return "", err
	}
	return "#cloud-config\n" + string(b) + "\n", nil
}
