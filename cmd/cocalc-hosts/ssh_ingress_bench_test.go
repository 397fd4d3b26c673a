package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkSSHSessionSetup is one SSH session with OpenSSH's client, from
// connecting to the command's exit (`true`), on one test VM: to the VM's
// own sshd (root with the fleet key; the command runs on the VM), and to
// the agent's SSH ingress (the project's user with a certificate from
// `project ssh-config`; the command runs in the project's container, by
// podman exec), once with the block's Match line (which runs `cocalc-hosts
// project ssh-cert` before each connection to renew the certificate when
// due) and once without it.
//
//	go test ./cmd/cocalc-hosts -run '^$' -bench SSHSessionSetup -benchtime 20x
func BenchmarkSSHSessionSetup(b *testing.B) {
	iv := newIngressVM(b, "", "procps")
	home := filepath.Join(iv.base.dir, "sshhome")
	if err := os.MkdirAll(home, 0o700); err != nil {
		b.Fatal(err)
	}
	block := iv.alice.ok("project", "ssh-config", iv.project, "--name", "proj")
	cfg, bare := filepath.Join(home, "config"), filepath.Join(home, "bare")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if !strings.HasPrefix(l, "Match originalhost") {
			lines = append(lines, l)
		}
	}
	for path, text := range map[string]string{cfg: block, bare: strings.Join(lines, "\n")} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	fleetKey := filepath.Join(iv.base.dir, "state", "cocalc-hosts", "fleet_ed25519")
	sshd := []string{"-F", "/dev/null", "-i", fleetKey, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR", "root@" + iv.vm.Addr, "true"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sshd", sshd},
		{"ingress", []string{"-F", bare, "-o", "BatchMode=yes", "proj", "true"}},
		{"ingress-ssh-config", []string{"-F", cfg, "-o", "BatchMode=yes", "proj", "true"}},
	} {
		args := c.args
		mustOpenSSH(b, iv.base.env, "ssh", args...) // warm: host keys, certificate
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				mustOpenSSH(b, iv.base.env, "ssh", args...)
			}
		})
	}
}
