package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshboot"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// signingKeysPath is tokens.signing_keys, or its default in the state
// directory.
func signingKeysPath(cfg *config.Config) (string, error) {
	if p := cfg.String("tokens.signing_keys"); p != "" {
		return p, nil
	}
	d, err := config.StateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "signing_keys.json"), nil
}

// ingressSettings reads the tokens.* and ingress.* settings.
func ingressSettings(cfg *config.Config) (projects.IngressSettings, error) {
	var in projects.IngressSettings
	for key, dst := range map[string]*time.Duration{"tokens.ttl": &in.TokenTTL, "tokens.ssh_cert_validity": &in.CertValidity, "ingress.acl_max_stale": &in.MaxStale} {
		d, err := cfg.Duration(key)
		if err != nil {
			return in, usageErr(err)
		}
		if d < time.Second || d > tokens.MaxTTL {
			return in, usagef("%s %s: use between 1s and %s", key, d, tokens.MaxTTL)
		}
		*dst = d
	}
	return in, nil
}

// configureIngress gives the project service its signing keys (made on
// first use) and ingress settings.
func configureIngress(ps *projects.Service, cfg *config.Config, now func() time.Time) error {
	in, err := ingressSettings(cfg)
	if err != nil {
		return err
	}
	path, err := signingKeysPath(cfg)
	if err != nil {
		return err
	}
	ps.Ingress = in
	ps.Keys = func() (*tokens.Keyring, error) { return tokens.LoadOrCreate(path, now()) }
	return nil
}

// configureBootIngress gives bootstrapped agents their ingress ports and
// the access list they start with.
func configureBootIngress(f *Factory, b *sshboot.Bootstrapper, cfg *config.Config) error {
	in := sshboot.Ingress{HTTPSPort: cfg.Int("ingress.https_port"), SSHPort: cfg.Int("ingress.ssh_port"), SessionTTL: cfg.String("ingress.session_ttl")}
	for key, port := range map[string]int{"ingress.https_port": in.HTTPSPort, "ingress.ssh_port": in.SSHPort} {
		if port < 0 || port > 65535 {
			return usagef("config %s: %d is not a port (1-65535, or 0 for off)", key, port)
		}
	}
	if d, err := time.ParseDuration(in.SessionTTL); err != nil || d <= 0 {
		return usagef("config ingress.session_ttl: %q is not a positive duration (like 12h)", in.SessionTTL)
	}
	b.Ingress = in
	b.AccessList = func(ctx context.Context, h model.Host) (*agentapi.AccessList, error) {
		ps, err := projectsService(ctx, f)
		if err != nil {
			return nil, err
		}
		l, err := ps.AccessList(ctx, h, 0)
		if err != nil {
			return nil, err
		}
		return &l, nil
	}
	return nil
}

// ingressLine says where a host's ingress listens and when it last got
// its access list.
func ingressLine(in model.HostIngress, now time.Time) string {
	var parts []string
	if in.HTTPSAddr != "" {
		parts = append(parts, fmt.Sprintf("https %s (certificate sha256 %s…)", in.HTTPSAddr, in.TLSCertSHA256[:min(16, len(in.TLSCertSHA256))]))
	}
	if in.SSHAddr != "" {
		parts = append(parts, "ssh "+in.SSHAddr)
	}
	if len(parts) == 0 {
		parts = append(parts, "off")
	}
	s := strings.Join(parts, ", ") + "; access list pushed " + ago(now, in.PushedAt)
	if in.Error != "" {
		s += "; " + in.Error
	}
	return s
}
