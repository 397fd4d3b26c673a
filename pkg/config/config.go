// Package config loads cocalc-hosts settings. Precedence: command-line
// flags, then the config file in the XDG config directory, then defaults.
// Environment variables are deliberately not read: secrets must come from
// 0600 files, and settings should not change behind the user's back.
package config

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// AppName names the config and state directories.
const AppName = "cocalc-hosts"

// Config is the effective configuration.
type Config struct {
	v    *viper.Viper
	file string
}

// Keys and their defaults, documented by `cocalc-hosts config list`.
var defaults = map[string]any{
	"db":                           "", // filled from the state dir
	"account":                      "",
	"output":                       "table",
	"worker.concurrency":           4,
	"worker.lease":                 "30s",
	"worker.reconcile_interval":    "5m",
	"worker.project_sync_interval": "1m",
	"worker.max_attempts":          5,
	"sqlite.busy_timeout":          "10s",
	"postgres.connect_timeout":     "10s",
	"ready_timeout":                "10m",
	"catalog.ttl.machine_types":    "72h",
	"catalog.ttl.capacity":         "15m",
	"catalog.refresh_interval":     "10m",
	"dns.domain":                   "",
	"dns.zone_id":                  "",
	"dns.token_file":               "",
	"dns.endpoint":                 "https://api.cloudflare.com/client/v4",

	// Bootstrap over SSH (pkg/sshboot).
	"ssh.fleet_key":                      "", // default: fleet_ed25519 in the state dir
	"bootstrap.ssh_wait":                 "5m",
	"bootstrap.agent_wait":               "60s",
	"bootstrap.agent_url":                "",
	"bootstrap.agent_sha256_linux_amd64": "",
	"bootstrap.agent_sha256_linux_arm64": "",
	"bootstrap.secrets":                  "",
	"bootstrap.idle_check_interval":      "30s",
	"bootstrap.snapshot_interval":        "1h",

	// Connect tokens, SSH certificates and the hosts' ingress (pkg/tokens).
	"tokens.signing_keys":      "", // default: signing_keys.json in the state dir
	"tokens.ttl":               "15m",
	"tokens.ssh_cert_validity": "30m",
	"ingress.acl_ttl":          "1m",
	"ingress.acl_max_stale":    "10m",
	"ingress.https_port":       443,
	"ingress.ssh_port":         2222,
	"ingress.session_ttl":      "12h",
}

// Descriptions of keys, for `config list`.
var Descriptions = map[string]string{
	"db":                           "state database: an SQLite file path or postgres://user@host/db (password in ~/.pgpass)",
	"account":                      "your account id (default: your login name)",
	"output":                       "default output format: table or json",
	"worker.concurrency":           "jobs a worker runs at once",
	"worker.lease":                 "how long a claimed job stays claimed without a heartbeat",
	"worker.reconcile_interval":    "how often `worker` reconciles with the providers (0 disables)",
	"worker.project_sync_interval": "how often `worker` asks running hosts for their projects' states and activity (0 disables)",
	"worker.max_attempts":          "attempts per action before it is recorded as failed",
	"sqlite.busy_timeout":          "how long to wait for another process's SQLite write lock",
	"postgres.connect_timeout":     "how long to wait when connecting to Postgres",
	"ready_timeout":                "how long to wait for a VM to reach the wanted state",
	"providers.NAME.KEY":           "option KEY of provider NAME (see `cocalc-hosts providers`)",
	"catalog.ttl.machine_types":    "how long cached machine types and prices are used before they are fetched again",
	"catalog.ttl.capacity":         "how long cached capacity (which machines are available where) is used",
	"catalog.refresh_interval":     "how often `worker` refreshes expired catalogs and recomputes usage (0 disables)",
	"dns.domain":                   "domain under which running hosts get an A record NAME.DOMAIN (empty: no DNS)",
	"dns.zone_id":                  "Cloudflare zone id of dns.domain",
	"dns.token_file":               "0600 file with a Cloudflare API token allowed to edit DNS in that zone",
	"dns.endpoint":                 "Cloudflare API base URL",
	"pricing.disk_gb_month.NAME":   "USD per GB-month of provider NAME's data disks (default: its list price)",

	// Bootstrap over SSH (pkg/sshboot).
	"ssh.fleet_key":                      "the fleet SSH private key (ed25519, 0600), made on first use (default: fleet_ed25519 in the state directory)",
	"bootstrap.ssh_wait":                 "how long the bootstrap waits for a new machine to answer SSH",
	"bootstrap.agent_wait":               "how long the bootstrap waits for the agent to answer after installing it",
	"bootstrap.agent_url":                "URL of agent binaries for hosts of another platform than this program, with {os} and {arch} (https:// or file://; raw binary or .tar.gz)",
	"bootstrap.agent_sha256_linux_amd64": "sha256 of the linux/amd64 artifact at bootstrap.agent_url",
	"bootstrap.agent_sha256_linux_arm64": "sha256 of the linux/arm64 artifact at bootstrap.agent_url",
	"bootstrap.secrets":                  "secrets installed on every host as /etc/cocalc-hosts/secrets/NAME (root, 0600): NAME=FILE[,NAME=FILE...], each FILE mode 0600",
	"bootstrap.idle_check_interval":      "how often the agent of a bootstrapped host samples project activity",
	"bootstrap.snapshot_interval":        "how often the agent of a bootstrapped host snapshots projects that were active (0: never)",

	// Connect tokens, SSH certificates and the hosts' ingress (pkg/tokens).
	"tokens.signing_keys":      "the keys that sign connect tokens and SSH certificates (a 0600 file, made on first use; default: signing_keys.json in the state directory); `cocalc-hosts keys rotate` rotates them",
	"tokens.ttl":               "how long a connect token from `project open` is valid",
	"tokens.ssh_cert_validity": "how long an SSH certificate from `project ssh`/`ssh-config` is valid",
	"ingress.acl_ttl":          "how often `worker` refreshes each running host's access list (a revoked collaborator is refused within this time)",
	"ingress.acl_max_stale":    "how long a host keeps serving with an access list the control plane has not refreshed, before it refuses everyone",
	"ingress.https_port":       "the TCP port of a bootstrapped host's HTTPS ingress (0: off)",
	"ingress.ssh_port":         "the TCP port of a bootstrapped host's SSH ingress (0: off)",
	"ingress.session_ttl":      "how long a browser session on a host's HTTPS ingress lasts",
}

// ConfigDir is $XDG_CONFIG_HOME/cocalc-hosts (or ~/.config/cocalc-hosts).
func ConfigDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config directory: %w (set HOME)", err)
	}
	return filepath.Join(d, AppName), nil
}

// StateDir is $XDG_STATE_HOME/cocalc-hosts (or ~/.local/state/cocalc-hosts).
func StateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, AppName), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state directory: %w (set HOME)", err)
	}
	return filepath.Join(home, ".local", "state", AppName), nil
}

// RuntimeDir is a short directory for sockets: $XDG_RUNTIME_DIR/cocalc-hosts,
// else /run/cocalc-hosts for root, else /tmp/cocalc-hosts-UID. It is
// created 0700.
func RuntimeDir() (string, error) {
	var dir string
	switch {
	case os.Getenv("XDG_RUNTIME_DIR") != "" && filepath.IsAbs(os.Getenv("XDG_RUNTIME_DIR")):
		dir = filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), AppName)
	case os.Geteuid() == 0:
		dir = filepath.Join("/run", AppName)
	default:
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("%s-%d", AppName, os.Geteuid()))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	// Another user could have made it first in a shared /tmp.
	if !st.IsDir() || st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("runtime directory %s must be a directory of mode 0700; remove it or set XDG_RUNTIME_DIR", dir)
	}
	return dir, nil
}

// Load reads the config file (path, or the default one if path is empty)
// and binds flags so that flags set on the command line win.
func Load(path string, flags *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	if path == "" {
		dir, err := ConfigDir()
		if err != nil {
			return nil, err
		}
		path = filepath.Join(dir, "config.yaml")
	}
	v.SetConfigFile(path)
	if _, err := os.Stat(path); err == nil {
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %v; fix or remove it", path, err)
		}
	}
	if flags != nil {
		for _, name := range []string{"db", "account", "output"} {
			if f := flags.Lookup(name); f != nil {
				if err := v.BindPFlag(name, f); err != nil {
					return nil, err
				}
			}
		}
	}
	c := &Config{v: v, file: path}
	if c.String("db") == "" {
		sd, err := StateDir()
		if err != nil {
			return nil, err
		}
		v.SetDefault("db", filepath.Join(sd, "state.db"))
	}
	if c.String("account") == "" {
		name := "default"
		if u, err := user.Current(); err == nil && u.Username != "" {
			name = u.Username
		}
		v.SetDefault("account", name)
	}
	if o := c.String("output"); o != "table" && o != "json" {
		return nil, fmt.Errorf("invalid output format %q: use table or json", o)
	}
	return c, nil
}

// File is the config file's path (it may not exist).
func (c *Config) File() string { return c.file }

func (c *Config) String(key string) string { return c.v.GetString(key) }
func (c *Config) Int(key string) int       { return c.v.GetInt(key) }

// Duration parses key as a Go duration, naming the key on error.
func (c *Config) Duration(key string) (time.Duration, error) {
	s := c.v.GetString(key)
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("config %s: %q is not a duration (like 30s or 5m)", key, s)
	}
	return d, nil
}

// ProviderOptions returns providers.NAME.* as strings.
func (c *Config) ProviderOptions(name string) map[string]string {
	out := map[string]string{}
	for k, v := range c.v.GetStringMap("providers." + name) {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// ConfiguredProviders lists the names under providers.
func (c *Config) ConfiguredProviders() []string {
	var out []string
	for k := range c.v.GetStringMap("providers") {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Setting is one effective key.
type Setting struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
	// Source is flag, file or default.
	Source      string `json:"source"`
	Description string `json:"description,omitempty"`
}

// All lists every effective setting.
func (c *Config) All(flags *pflag.FlagSet) []Setting {
	var out []Setting
	for _, k := range c.v.AllKeys() {
		src := "default"
		if c.v.InConfig(k) {
			src = "file"
		}
		if flags != nil {
			if f := flags.Lookup(k); f != nil && f.Changed {
				src = "flag"
			}
		}
		desc := Descriptions[k]
		if desc == "" && strings.HasPrefix(k, "providers.") {
			desc = Descriptions["providers.NAME.KEY"]
		}
		if desc == "" && validPricingKey(k) {
			desc = Descriptions["pricing.disk_gb_month.NAME"]
		}
		out = append(out, Setting{Key: k, Value: c.v.Get(k), Source: src, Description: desc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Get returns the effective value of key, and whether it is known.
func (c *Config) Get(key string) (any, bool) {
	if !c.v.IsSet(key) {
		return nil, false
	}
	return c.v.Get(key), true
}

// Set writes key=value into the config file (creating it 0600). Only
// known keys and provider options are accepted.
func Set(path, key, value string) error {
	if _, ok := defaults[key]; !ok && !validProviderKey(key) && !validPricingKey(key) {
		return fmt.Errorf("unknown config key %q; see `cocalc-hosts config list`", key)
	}
	if validPricingKey(key) {
		if f, err := strconv.ParseFloat(value, 64); err != nil || f < 0 {
			return fmt.Errorf("%s=%q: want a price in USD per GB-month, such as 0.10", key, value)
		}
	}
	if key == "output" && value != "table" && value != "json" {
		return fmt.Errorf("invalid output format %q: use table or json", value)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	v := viper.New()
	v.SetConfigFile(path)
	if _, err := os.Stat(path); err == nil {
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config file %s: %v", path, err)
		}
	}
	v.Set(key, value)
	if err := v.WriteConfigAs(path); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// AddProvider records provider name in the config file with options
// (written as providers.NAME.KEY). Other settings of the provider are
// kept. A provider added without any option gets an empty credentials
// entry, because the config format has no empty sections and the section
// is what makes the provider count as configured.
func AddProvider(path, name string, options map[string]string) error {
	if name == "" || strings.Contains(name, ".") {
		return fmt.Errorf("invalid provider name %q", name)
	}
	for k := range options {
		if k == "" || strings.ContainsAny(k, ". =") {
			return fmt.Errorf("invalid option name %q for provider %s: use letters, digits and underscores", k, name)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	v := viper.New()
	v.SetConfigFile(path)
	if _, err := os.Stat(path); err == nil {
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config file %s: %v", path, err)
		}
	}
	section := "providers." + name
	if len(options) == 0 && !v.IsSet(section) {
		v.Set(section+".credentials", "")
	}
	for k, val := range options {
		v.Set(section+"."+k, val)
	}
	if err := v.WriteConfigAs(path); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// Float parses key as a number, naming the key on error.
func (c *Config) Float(key string) (float64, error) {
	s := c.v.GetString(key)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("config %s: %q is not a number", key, s)
	}
	return f, nil
}

// DiskPrices returns pricing.disk_gb_month.* as provider name → USD per
// GB-month.
func (c *Config) DiskPrices() (map[string]float64, error) {
	out := map[string]float64{}
	for name := range c.v.GetStringMap("pricing.disk_gb_month") {
		f, err := c.Float("pricing.disk_gb_month." + name)
		if err != nil {
			return nil, err
		}
		if f < 0 {
			return nil, fmt.Errorf("config pricing.disk_gb_month.%s: %v is negative", name, f)
		}
		out[name] = f
	}
	return out, nil
}

func validPricingKey(key string) bool {
	parts := strings.Split(key, ".")
	return len(parts) == 3 && parts[0] == "pricing" && parts[1] == "disk_gb_month" && parts[2] != ""
}

func validProviderKey(key string) bool {
	parts := strings.Split(key, ".")
	return len(parts) == 3 && parts[0] == "providers" && parts[1] != "" && parts[2] != ""
}
