package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
)

// providerNameRE is the shape of a provider's name.
var providerNameRE = lazyre.New(`^[a-z][a-z0-9_-]*$`)

// key is one setting: its name, default, description, and how its value
// is checked and stored.
type key struct {
	name, def, desc string
	// number: shown as a number (not a string) by `config list -o json`.
	number bool
	set    func(s *Settings, raw string) error
}

// keys are every fixed setting, documented by `cocalc-hosts config list`.
// Two families of keys have a name in them: providers.NAME.KEY and
// pricing.disk_gb_month.NAME (patternKey).
var keys = []key{
	{name: "db", desc: "state database: an SQLite file path or postgres://user@host/db (password in ~/.pgpass)",
		set: text(func(s *Settings) *string { return &s.DB })}, // default: state.db in the state directory
	{name: "account", desc: "your account id (default: your login name)",
		set: text(func(s *Settings) *string { return &s.Account })},
	{name: "output", def: "table", desc: "default output format: table or json", set: outputFormat},
	{name: "default_cloud", desc: "the provider `create` uses without --cloud (empty: a create without --cloud must say what it needs, --gpu, --cpu, --ram or --machine-type, and the cheapest configured cloud that has it is chosen)",
		set: func(s *Settings, v string) error {
			if v != "" && !providerNameRE().MatchString(v) {
				return fmt.Errorf("%q: want a provider name such as gcp or local (see `cocalc-hosts providers`)", v)
			}
			s.DefaultCloud = v
			return nil
		}},

	{name: "worker.concurrency", def: "4", number: true, desc: "jobs a worker runs at once",
		set: whole(1, func(s *Settings) *int { return &s.Worker.Concurrency })},
	{name: "worker.lease", def: "30s", desc: "how long a claimed job stays claimed without a heartbeat",
		set: duration(time.Second, func(s *Settings) *time.Duration { return &s.Worker.Lease })},
	{name: "worker.reconcile_interval", def: "5m", desc: "how often `worker` reconciles with the providers (0 disables)",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Worker.ReconcileInterval })},
	{name: "worker.project_sync_interval", def: "1m", desc: "how often `worker` asks running hosts for their projects' states and activity (0 disables)",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Worker.ProjectSyncInterval })},
	{name: "worker.max_attempts", def: "5", number: true, desc: "attempts per action before it is recorded as failed",
		set: whole(1, func(s *Settings) *int { return &s.Worker.MaxAttempts })},
	{name: "sqlite.busy_timeout", def: "10s", desc: "how long to wait for another process's SQLite write lock",
		set: duration(0, func(s *Settings) *time.Duration { return &s.SQLiteBusyTimeout })},
	{name: "postgres.connect_timeout", def: "10s", desc: "how long to wait when connecting to Postgres",
		set: duration(0, func(s *Settings) *time.Duration { return &s.PostgresConnectTimeout })},
	{name: "ready_timeout", def: "10m", desc: "how long to wait for a VM to reach the wanted state",
		set: duration(time.Second, func(s *Settings) *time.Duration { return &s.ReadyTimeout })},

	{name: "catalog.ttl.machine_types", def: "72h", desc: "how long cached machine types and prices are used before they are fetched again",
		set: duration(1, func(s *Settings) *time.Duration { return &s.Catalog.MachineTypesTTL })},
	{name: "catalog.ttl.capacity", def: "15m", desc: "how long cached capacity (which machines are available where) is used",
		set: duration(1, func(s *Settings) *time.Duration { return &s.Catalog.CapacityTTL })},
	{name: "catalog.refresh_interval", def: "10m", desc: "how often `worker` refreshes expired catalogs and recomputes usage (0 disables)",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Catalog.RefreshInterval })},

	{name: "dns.domain", desc: "domain under which running hosts get an A record NAME.DOMAIN (empty: no DNS)",
		set: text(func(s *Settings) *string { return &s.DNS.Domain })},
	{name: "dns.zone_id", desc: "Cloudflare zone id of dns.domain",
		set: text(func(s *Settings) *string { return &s.DNS.ZoneID })},
	{name: "dns.token_file", desc: "0600 file with a Cloudflare API token allowed to edit DNS in that zone",
		set: text(func(s *Settings) *string { return &s.DNS.TokenFile })},
	{name: "dns.endpoint", def: "https://api.cloudflare.com/client/v4", desc: "Cloudflare API base URL",
		set: text(func(s *Settings) *string { return &s.DNS.Endpoint })},

	// Bootstrap over SSH (pkg/sshboot).
	{name: "ssh.fleet_key", desc: "the fleet SSH private key (ed25519, 0600), made on first use (default: fleet_ed25519 in the state directory)",
		set: text(func(s *Settings) *string { return &s.FleetKey })},
	{name: "bootstrap.ssh_wait", def: "5m", desc: "how long the bootstrap waits for a new machine to answer SSH",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Bootstrap.SSHWait })},
	{name: "bootstrap.agent_wait", def: "60s", desc: "how long the bootstrap waits for the agent to answer after installing it",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Bootstrap.AgentWait })},
	{name: "bootstrap.agent_url", desc: "URL of agent binaries for hosts of another platform than this program, with {os} and {arch} (https:// or file://; raw binary or .tar.gz)",
		set: agentURL},
	{name: "bootstrap.agent_sha256_linux_amd64", desc: "sha256 of the linux/amd64 artifact at bootstrap.agent_url", set: sha256For("linux/amd64")},
	{name: "bootstrap.agent_sha256_linux_arm64", desc: "sha256 of the linux/arm64 artifact at bootstrap.agent_url", set: sha256For("linux/arm64")},
	{name: "bootstrap.secrets", desc: "secrets installed on every host as /etc/cocalc-hosts/secrets/NAME (root, 0600): NAME=FILE[,NAME=FILE...], each FILE mode 0600",
		set: secretFiles},
	{name: "bootstrap.idle_check_interval", def: "30s", desc: "how often the agent of a bootstrapped host samples project activity",
		set: duration(1, func(s *Settings) *time.Duration { return &s.Bootstrap.IdleCheckInterval })},
	{name: "bootstrap.snapshot_interval", def: "1h", desc: "how often the agent of a bootstrapped host snapshots projects that were active (0: never)",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Bootstrap.SnapshotInterval })},

	// Connect tokens, SSH certificates and the hosts' ingress (pkg/tokens).
	{name: "tokens.signing_keys", desc: "the keys that sign connect tokens and SSH certificates (a 0600 file, made on first use; default: signing_keys.json in the state directory); `cocalc-hosts keys rotate` rotates them",
		set: text(func(s *Settings) *string { return &s.Tokens.SigningKeys })},
	{name: "tokens.ttl", def: "15m", desc: "how long a connect token from `project open` is valid",
		set: lifetime(func(s *Settings) *time.Duration { return &s.Tokens.TTL })},
	{name: "tokens.ssh_cert_validity", def: "30m", desc: "how long an SSH certificate from `project ssh`/`ssh-config` is valid",
		set: lifetime(func(s *Settings) *time.Duration { return &s.Tokens.SSHCertValidity })},
	{name: "moves.keep_source", def: "24h", desc: "how long a moved project's copy stays on its old host after the move (`project move --cleanup` ends it early)",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Moves.KeepSource })},
	{name: "moves.path", def: "auto", desc: "how a move's data goes: auto (straight from host to host when the source reaches the destination, else through the control plane) or relay (always through the control plane, e.g. where a firewall drops traffic between hosts)",
		set: func(s *Settings, v string) error {
			if v = strings.TrimSpace(v); v != "auto" && v != "relay" {
				return fmt.Errorf("%q is not auto or relay", v)
			}
			s.Moves.Relay = v == "relay"
			return nil
		}},
	{name: "ingress.acl_ttl", def: "1m", desc: "how often `worker` refreshes each running host's access list (a revoked collaborator is refused within this time)",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Ingress.ACLTTL })},
	{name: "ingress.acl_max_stale", def: "10m", desc: "how long a host keeps serving with an access list the control plane has not refreshed, before it refuses everyone",
		set: lifetime(func(s *Settings) *time.Duration { return &s.Ingress.ACLMaxStale })},
	{name: "ingress.https_port", def: "443", number: true, desc: "the TCP port of a bootstrapped host's HTTPS ingress (0: off)",
		set: port(func(s *Settings) *int { return &s.Ingress.HTTPSPort })},
	{name: "ingress.ssh_port", def: "2222", number: true, desc: "the TCP port of a bootstrapped host's SSH ingress (0: off)",
		set: port(func(s *Settings) *int { return &s.Ingress.SSHPort })},
	{name: "ingress.acme_directory", desc: "an ACME CA's directory URL (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory): running hosts with a DNS name get a certificate for it over DNS-01 (needs dns.*), renewed at 2/3 of its life; empty: hosts serve self-signed certificates that clients pin",
		set: acmeDirectory},
	{name: "ingress.acme_email", desc: "the contact e-mail of the ACME account (optional)",
		set: text(func(s *Settings) *string { return &s.Ingress.ACMEEmail })},
	{name: "ingress.acme_account_key", desc: "the ACME account's key (a 0600 file, made on first use; default: acme_account.pem in the state directory)",
		set: text(func(s *Settings) *string { return &s.Ingress.ACMEAccountKey })},
	{name: "ingress.session_ttl", def: "12h", desc: "how long a browser session on a host's HTTPS ingress lasts",
		set: duration(1, func(s *Settings) *time.Duration { return &s.Ingress.SessionTTL })},

	{name: "otel.endpoint", desc: "send OpenTelemetry traces of host and project lifecycles over OTLP/HTTP to this collector (http://HOST:4318, or a URL ending in its traces path); empty: no traces",
		set: func(s *Settings, v string) error {
			if v != "" {
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					return fmt.Errorf("%q is not an OTLP/HTTP address such as http://otel-collector:4318", v)
				}
			}
			s.OTel.Endpoint = v
			return nil
		}},
	{name: "otel.headers_file", desc: "a 0600 file of \"Name: value\" lines sent with every trace export (e.g. a hosted collector's Authorization header); the OTEL_EXPORTER_OTLP_* environment variables are not read",
		set: text(func(s *Settings) *string { return &s.OTel.HeadersFile })},

	// Server mode (`cocalc-hosts serve` and its clients).
	{name: "server.url", desc: "the cocalc-hosts server commands talk to (https://HOST:PORT; set by `login`); empty: the database directly",
		set: serverURL},
	{name: "server.ca_cert", desc: "a PEM file (absolute path) of the CA or self-signed certificate to trust for server.url besides the system's roots (set by `login --ca-cert`)",
		set: func(s *Settings, v string) error {
			if v != "" && !filepath.IsAbs(v) {
				return fmt.Errorf("%q: give an absolute path", v)
			}
			s.Server.CACert = v
			return nil
		}},
	{name: "server.rate_limit", def: "20", number: true, desc: "requests per second each account may make to `serve` (sustained; 0: no limit)",
		set: func(s *Settings, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 {
				return fmt.Errorf("%q: want requests per second, such as 20", v)
			}
			s.Server.RateLimit = f
			return nil
		}},
	{name: "server.burst", def: "100", number: true, desc: "requests each account may make to `serve` at once above server.rate_limit",
		set: whole(1, func(s *Settings) *int { return &s.Server.Burst })},
	{name: "backup.config_ttl", def: "1h", desc: "how long a host keeps a project's backup configuration before it must get it again from the control plane",
		set: duration(time.Second, func(s *Settings) *time.Duration { return &s.Backup.ConfigTTL })},
	{name: "backup.schedule", def: "24h", desc: "how often `worker` backs up each project (0: only `project backup`)",
		set: duration(0, func(s *Settings) *time.Duration { return &s.Backup.Schedule })},
	{name: "backup.keep_last", def: "0", number: true, desc: "after a scheduled backup, keep this many newest backups (with the keep_* rules below; all 0 keeps every backup)",
		set: whole(0, func(s *Settings) *int { return &s.Backup.KeepLast })},
	{name: "backup.keep_daily", def: "7", number: true, desc: "after a scheduled backup, keep the newest backup of each of this many days",
		set: whole(0, func(s *Settings) *int { return &s.Backup.KeepDaily })},
	{name: "backup.keep_weekly", def: "4", number: true, desc: "after a scheduled backup, keep the newest backup of each of this many weeks",
		set: whole(0, func(s *Settings) *int { return &s.Backup.KeepWeekly })},
	{name: "backup.keep_monthly", def: "6", number: true, desc: "after a scheduled backup, keep the newest backup of each of this many months",
		set: whole(0, func(s *Settings) *int { return &s.Backup.KeepMonthly })},
}

// MaxTokenLife bounds tokens.ttl, tokens.ssh_cert_validity and
// ingress.acl_max_stale: tokens.MaxTTL, which the tokens package checks
// again when it signs.
const MaxTokenLife = 24 * time.Hour

// Descriptions of the keys with a name in them, for `config list`.
const (
	providerKeyDesc = "option KEY of provider NAME (see `cocalc-hosts providers`)"
	pricingKeyDesc  = "USD per GB-month of provider NAME's data disks (default: its list price)"
)

func keyNamed(name string) *key {
	for i := range keys {
		if keys[i].name == name {
			return &keys[i]
		}
	}
	return nil
}

// patternKey returns how to store name if it is providers.NAME.KEY or
// pricing.disk_gb_month.NAME, with its description; nil otherwise.
func patternKey(name string) (func(s *Settings, name, raw string) error, string) {
	parts := strings.Split(name, ".")
	switch {
	case len(parts) == 3 && parts[0] == "providers" && parts[1] != "" && parts[2] != "":
		return func(s *Settings, _, raw string) error {
			if s.Providers[parts[1]] == nil {
				s.Providers[parts[1]] = map[string]string{}
			}
			s.Providers[parts[1]][parts[2]] = raw
			return nil
		}, providerKeyDesc
	case len(parts) == 3 && parts[0] == "pricing" && parts[1] == "disk_gb_month" && parts[2] != "":
		return func(s *Settings, _, raw string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
			if err != nil || f < 0 {
				return fmt.Errorf("%q: want a price in USD per GB-month, such as 0.10", raw)
			}
			s.DiskPrices[parts[2]] = f
			return nil
		}, pricingKeyDesc
	}
	return nil, ""
}

func text(p func(*Settings) *string) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		*p(s) = v
		return nil
	}
}

// whole is an integer of at least min.
func whole(min int, p func(*Settings) *int) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		if n < min {
			return fmt.Errorf("%d is less than %d", n, min)
		}
		*p(s) = n
		return nil
	}
}

// duration is a Go duration of at least min (0: not negative; 1: positive).
func duration(min time.Duration, p func(*Settings) *time.Duration) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			return fmt.Errorf("%q is not a duration (like 30s or 5m)", v)
		case d < 0:
			return fmt.Errorf("%q %w", v, errNegative)
		case min == 1 && d == 0:
			return fmt.Errorf("%q must be more than 0", v)
		case d < min:
			return fmt.Errorf("%q is shorter than %s", v, min)
		}
		*p(s) = d
		return nil
	}
}

// lifetime is the life of a token, a certificate or an access list:
// between a second and MaxTokenLife.
func lifetime(p func(*Settings) *time.Duration) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < time.Second || d > MaxTokenLife {
			return fmt.Errorf("%q: use a duration between 1s and %s", v, MaxTokenLife)
		}
		*p(s) = d
		return nil
	}
}

// port is a TCP port, or 0 for off.
func port(p func(*Settings) *int) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%q is not a port (1-65535, or 0 for off)", v)
		}
		*p(s) = n
		return nil
	}
}

func outputFormat(s *Settings, v string) error {
	if v != "table" && v != "json" {
		return fmt.Errorf("invalid output format %q: use table or json", v)
	}
	s.Output = v
	return nil
}

func agentURL(s *Settings, v string) error {
	if v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") {
			return fmt.Errorf("%q is not an https:// or file:// URL", v)
		}
	}
	s.Bootstrap.AgentURL = v
	return nil
}

func serverURL(s *Settings, v string) error {
	if v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("%q is not a server address such as https://hosts.example.com:8443", v)
		}
	}
	s.Server.URL = v
	return nil
}

func acmeDirectory(s *Settings, v string) error {
	if v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%q is not an ACME directory URL such as https://acme-v02.api.letsencrypt.org/directory", v)
		}
	}
	s.Ingress.ACMEDirectory = v
	return nil
}

func sha256For(platform string) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		v = strings.ToLower(strings.TrimSpace(v))
		if b, err := hex.DecodeString(v); v != "" && (err != nil || len(b) != 32) {
			return fmt.Errorf("%q is not a sha256 (64 hex digits)", v)
		}
		s.Bootstrap.AgentSHA256[platform] = v
		return nil
	}
}

// secretFiles parses NAME=FILE[,NAME=FILE...].
func secretFiles(s *Settings, v string) error {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, path, ok := strings.Cut(item, "=")
		if !ok || name == "" || path == "" || strings.ContainsAny(name, "/ ") {
			return fmt.Errorf("%q is not NAME=FILE", item)
		}
		if !filepath.IsAbs(path) {
			return fmt.Errorf("%s=%s: give the file as an absolute path", name, path)
		}
		s.Bootstrap.Secrets[name] = path
	}
	return nil
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(errors.New("config: default " + s + " of a number key is not a number"))
	}
	return n
}
