package gcp

import (
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// Metadata keys the guest environment of GCE images reads.
const (
	metaSSHKeys       = "ssh-keys"
	metaStartupScript = "startup-script"
)

// hostKeyFiles maps an OpenSSH public key type to the file sshd reads.
var hostKeyFiles = map[string]string{
	"ssh-ed25519":         "ssh_host_ed25519_key",
	"ecdsa-sha2-nistp256": "ssh_host_ecdsa_key",
	"ecdsa-sha2-nistp384": "ssh_host_ecdsa_key",
	"ecdsa-sha2-nistp521": "ssh_host_ecdsa_key",
	"ssh-rsa":             "ssh_host_rsa_key",
}

// sshKeysValue is the ssh-keys metadata item: "USER:KEY" lines.
func sshKeysValue(user, authorizedKey string) (string, error) {
	key := strings.TrimSpace(authorizedKey)
	if key == "" {
		return "", nil
	}
	if strings.ContainsAny(key, "\r\n") {
		return "", fmt.Errorf("the SSH authorized key must be one line")
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key)); err != nil {
		return "", fmt.Errorf("the SSH authorized key is not in authorized_keys format: %v", err)
	}
	return user + ":" + key, nil
}

// sshUserOf reads the login user back from the ssh-keys metadata item.
func sshUserOf(value string) string {
	for _, line := range strings.Split(value, "\n") {
		if user, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && user != "" {
			return user
		}
	}
	return ""
}

// startupScript returns a script that installs hk as the VM's SSH host
// key on every boot, so the control plane knows the host key before its
// first connection. GCE's guest agent writes fresh host keys when it sees
// a new instance id; it runs before startup scripts, and the script also
// turns that off, so the installed key stays. The key material travels
// base64-encoded, so no byte of it can end a heredoc or be read by the
// shell.
func startupScript(hk *provider.HostKey) (string, error) {
	if hk == nil {
		return "", nil
	}
	pub := strings.TrimSpace(hk.Public)
	parsed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		return "", fmt.Errorf("the host public key is not in authorized_keys format: %v", err)
	}
	file, ok := hostKeyFiles[parsed.Type()]
	if !ok {
		return "", fmt.Errorf("host key type %s is not supported (use ed25519, ecdsa or rsa)", parsed.Type())
	}
	signer, err := ssh.ParsePrivateKey([]byte(hk.PrivatePEM))
	if err != nil {
		return "", fmt.Errorf("the host private key does not parse: %v", err)
	}
	if string(signer.PublicKey().Marshal()) != string(parsed.Marshal()) {
		return "", fmt.Errorf("the host private key does not match its public key")
	}
	priv := base64.StdEncoding.EncodeToString([]byte(strings.TrimSpace(hk.PrivatePEM) + "\n"))
	pubB64 := base64.StdEncoding.EncodeToString([]byte(pub + "\n"))
	return fmt.Sprintf(`#!/bin/sh
# Installed by cocalc-hosts: the SSH host key the control plane expects.
set -eu
umask 077
d=/etc/ssh
printf '%%s' '%[1]s' | base64 -d > "$d/%[3]s.new"
printf '%%s' '%[2]s' | base64 -d > "$d/%[3]s.pub.new"
chmod 600 "$d/%[3]s.new"
chmod 644 "$d/%[3]s.pub.new"
if ! cmp -s "$d/%[3]s.new" "$d/%[3]s" 2>/dev/null; then
  mv "$d/%[3]s.new" "$d/%[3]s"
  mv "$d/%[3]s.pub.new" "$d/%[3]s.pub"
  systemctl restart ssh 2>/dev/null || systemctl restart sshd 2>/dev/null || service ssh restart || true
else
  rm -f "$d/%[3]s.new" "$d/%[3]s.pub.new"
fi
# Keep the guest agent from replacing host keys on a new instance id.
mkdir -p /etc/default
cfg=/etc/default/instance_configs.cfg
if ! grep -q '^set_host_keys' "$cfg" 2>/dev/null; then
  if grep -q '^\[InstanceSetup\]' "$cfg" 2>/dev/null; then
    sed -i '/^\[InstanceSetup\]/a set_host_keys = false' "$cfg"
  else
    printf '[InstanceSetup]\nset_host_keys = false\n' >> "$cfg"
  fi
fi
`, priv, pubB64, file), nil
}

// GCP label rules: keys start with a lowercase letter; keys and values
// use lowercase letters, digits, _ and -, at most 63 characters.
var (
	// at most 63 bytes each (matchLen)
	labelKeyRE   = lazyre.New(`^[a-z][a-z0-9_-]*$`)
	labelValueRE = lazyre.New(`^[a-z0-9_-]*$`)
)

func validLabels(labels map[string]string) error {
	for k, v := range labels {
		if !matchLen(labelKeyRE(), k, 1, 63) {
			return fmt.Errorf("label key %q is not valid on GCP (start with a lowercase letter; lowercase letters, digits, _ and -; at most 63)", k)
		}
		if !matchLen(labelValueRE(), v, 0, 63) {
			return fmt.Errorf("label %s=%q: the value is not valid on GCP (lowercase letters, digits, _ and -; at most 63)", k, v)
		}
	}
	return nil
}
