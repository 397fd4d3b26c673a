// Package config loads cocalc-hosts settings. Precedence: command-line
// flags, then the config file in the XDG config directory, then defaults.
// Environment variables are deliberately not read: secrets must come from
// 0600 files, and settings should not change behind the user's back.
//
// The file is decoded once into Settings and every key is checked when it
// is loaded: a bad value or an unknown key is one error naming the key, so
// nothing fails later, halfway through a command.
package config

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// AppName names the config and state directories.
const AppName = "cocalc-hosts"

// Settings are the effective configuration.
type Settings struct {
	// File is the config file's path (it may not exist).
	File string

	DB      string // state database: an SQLite path or a postgres:// URL
	Account string // who runs commands
	Output  string // "table" or "json"
	// DefaultCloud is the provider create uses without --cloud (empty:
	// none).
	DefaultCloud string

	Worker struct {
		Concurrency         int
		Lease               time.Duration
		ReconcileInterval   time.Duration // 0: off
		ProjectSyncInterval time.Duration // 0: off
		MaxAttempts         int
	}
	SQLiteBusyTimeout      time.Duration
	PostgresConnectTimeout time.Duration
	ReadyTimeout           time.Duration

	Catalog struct {
		MachineTypesTTL time.Duration
		CapacityTTL     time.Duration
		RefreshInterval time.Duration // 0: off
	}
	DNS struct {
		Domain    string // empty: no DNS
		ZoneID    string
		TokenFile string
		Endpoint  string
	}
	// FleetKey is the fleet SSH private key's path (ssh.fleet_key).
	FleetKey  string
	Bootstrap struct {
		SSHWait   time.Duration
		AgentWait time.Duration
		AgentURL  string
		// AgentSHA256 is the sha256 of the agent artifact by platform
		// ("linux/amd64").
		AgentSHA256 map[string]string
		// Secrets are files installed on every host: NAME → absolute path.
		Secrets           map[string]string
		IdleCheckInterval time.Duration
		SnapshotInterval  time.Duration // 0: never
	}

	// Tokens are the connect tokens and SSH certificates users get.
	Tokens struct {
		// SigningKeys is the keyring's path (tokens.signing_keys); empty:
		// signing_keys.json in the state directory.
		SigningKeys     string
		TTL             time.Duration
		SSHCertValidity time.Duration
	}
	// Moves are moves of projects between hosts.
	Moves struct {
		// KeepSource is how long a moved project's old copy is kept.
		KeepSource time.Duration
		// Relay sends every move through the control plane.
		Relay bool
	}

	// Ingress is how users reach projects on hosts directly.
	Ingress struct {
		ACLTTL      time.Duration // 0: the worker does not refresh access lists
		ACLMaxStale time.Duration
		HTTPSPort   int // 0: off
		SSHPort     int // 0: off
		SessionTTL  time.Duration
		// ACMEDirectory, when set, gets hosts with a DNS name CA-issued
		// certificates over DNS-01 (ACMEEmail: the account's contact;
		// ACMEAccountKey: its 0600 key file).
		ACMEDirectory, ACMEEmail, ACMEAccountKey string
	}

	// Server is server mode: the server clients talk to, and what a
	// server allows each account.
	Server struct {
		URL       string // empty: direct mode
		CACert    string // a PEM file of certificates to trust for URL besides the system's
		RateLimit float64
		Burst     int
	}
	// OTel is where traces go (otel.*).
	OTel struct {
		Endpoint string // an OTLP/HTTP URL; empty: no traces
		// HeadersFile is a 0600 file of "Name: value" headers for it.
		HeadersFile string
	}
	// Backup is how projects are backed up (backup.*).
	Backup struct {
		ConfigTTL                                    time.Duration
		Schedule                                     time.Duration // 0: no scheduled backups
		KeepLast, KeepDaily, KeepWeekly, KeepMonthly int
	}

	// Providers holds providers.NAME.KEY: options by provider name.
	Providers map[string]map[string]string
	// DiskPrices holds pricing.disk_gb_month.NAME: USD per GB-month.
	DiskPrices map[string]float64

	// values are the effective values of every key set anywhere, for
	// `config list` and `config get`.
	values map[string]Setting
}

// Setting is one effective key.
type Setting struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
	// Source is flag, file or default.
	Source      string `json:"source"`
	Description string `json:"description,omitempty"`
}

// ConfigDir is $XDG_CONFIG_HOME/cocalc-hosts (or ~/.config/cocalc-hosts).
func ConfigDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config directory: %w (set HOME)", err)
	}
	return filepath.Join(d, AppName), nil
}

// Path is the config file: path if given (--config), else config.yaml in
// ConfigDir.
func Path(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	dir, err := ConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "config.yaml"), nil
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

// Load reads the config file (path, or the default one if path is empty),
// applies flags (values given on the command line for the keys db,
// account and output), and checks every key. All bad keys are reported
// at once, one error each.
func Load(path string, flags map[string]string) (*Settings, error) {
	path, err := Path(path)
	if err != nil {
		return nil, err
	}
	file, err := readFile(path)
	if err != nil {
		return nil, err
	}
	s := &Settings{File: path, Providers: map[string]map[string]string{}, DiskPrices: map[string]float64{},
		values: map[string]Setting{}}
	s.Bootstrap.AgentSHA256, s.Bootstrap.Secrets = map[string]string{}, map[string]string{}
	defaults, err := computedDefaults()
	if err != nil {
		return nil, err
	}
	errs := file.errs
	inFile := len(errs) > 0 // whether some bad value is in the file
	for _, k := range keys {
		raw, source := k.def, "default"
		var value any = k.def
		if d, ok := defaults[k.name]; ok {
			raw, value = d, d
		}
		if v, ok := file.values[k.name]; ok {
			raw, value, source = v.raw, v.value, "file"
		}
		if v, ok := flags[k.name]; ok {
			raw, value, source = v, v, "flag"
		}
		if k.number && source == "default" {
			value = mustAtoi(k.def)
		}
		if err := k.set(s, raw); err != nil {
			if source == "flag" {
				errs = append(errs, fmt.Errorf("--%s: %w", k.name, err))
			} else {
				errs = append(errs, fmt.Errorf("config %s: %w", k.name, err))
				inFile = true
			}
			continue
		}
		s.values[k.name] = Setting{Key: k.name, Value: value, Source: source, Description: k.desc}
	}
	for name, v := range file.values {
		if keyNamed(name) != nil {
			continue
		}
		set, desc := patternKey(name)
		inFile = inFile || set == nil
		if set == nil {
			errs = append(errs, fmt.Errorf("config %s: no such setting (see `cocalc-hosts config list`)", name))
			continue
		}
		if err := set(s, name, v.raw); err != nil {
			errs = append(errs, fmt.Errorf("config %s: %w", name, err))
			inFile = true
			continue
		}
		s.values[name] = Setting{Key: name, Value: v.value, Source: "file", Description: desc}
	}
	for _, name := range file.sections {
		if _, ok := s.Providers[name]; !ok {
			s.Providers[name] = map[string]string{}
		}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		le := &LoadError{Errs: errs}
		if inFile {
			le.File = path
		}
		return nil, le
	}
	return s, nil
}

// LoadError lists every bad key of a configuration, one error each.
type LoadError struct {
	// File is the config file, when some of the bad values are in it.
	File string
	Errs []error
}

func (e *LoadError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	msg := strings.Join(msgs, "; ")
	if e.File != "" {
		msg += " (in " + e.File + ")"
	}
	return msg
}

func (e *LoadError) Unwrap() []error { return e.Errs }

// computedDefaults are the defaults that depend on the machine: the state
// database in the state directory, and the login name as the account.
func computedDefaults() (map[string]string, error) {
	sd, err := StateDir()
	if err != nil {
		return nil, err
	}
	account := "default"
	if u, err := user.Current(); err == nil && u.Username != "" {
		account = u.Username
	}
	return map[string]string{"db": filepath.Join(sd, "state.db"), "account": account}, nil
}

// ProviderOptions returns providers.NAME.* (a copy).
func (s *Settings) ProviderOptions(name string) map[string]string {
	out := map[string]string{}
	for k, v := range s.Providers[name] {
		out[k] = v
	}
	return out
}

// ConfiguredProviders lists the names under providers, sorted.
func (s *Settings) ConfiguredProviders() []string {
	out := make([]string, 0, len(s.Providers))
	for k := range s.Providers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// All lists every effective setting, sorted by key.
func (s *Settings) All() []Setting {
	out := make([]Setting, 0, len(s.values))
	for _, v := range s.values {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Get returns the effective value of key, and whether it is set.
func (s *Settings) Get(key string) (any, bool) {
	v, ok := s.values[strings.ToLower(key)]
	return v.Value, ok
}

// Set writes key=value into the config file at path (creating it 0600),
// keeping the rest of the file and its comments. Only known keys and
// valid values are accepted; a file that is wrong elsewhere can still be
// fixed one key at a time.
func Set(path, key, value string) error {
	key = strings.ToLower(key)
	if k := keyNamed(key); k != nil {
		var probe Settings
		probe.Bootstrap.AgentSHA256, probe.Bootstrap.Secrets = map[string]string{}, map[string]string{}
		if err := k.set(&probe, value); err != nil {
			return fmt.Errorf("config %s: %w", key, err)
		}
	} else if set, _ := patternKey(key); set != nil {
		probe := Settings{Providers: map[string]map[string]string{}, DiskPrices: map[string]float64{}}
		if err := set(&probe, key, value); err != nil {
			return fmt.Errorf("config %s: %w", key, err)
		}
	} else {
		return fmt.Errorf("unknown config key %q; see `cocalc-hosts config list`", key)
	}
	doc, err := readDoc(path)
	if err != nil {
		return err
	}
	doc.set(strings.Split(key, "."), value)
	return doc.write(path)
}

// AddProvider records provider name in the config file with options
// (written as providers.NAME.KEY), keeping its other settings and the
// file's comments. A provider added without options gets an empty
// section, which is what makes it count as configured.
func AddProvider(path, name string, options map[string]string) error {
	if name == "" || strings.Contains(name, ".") {
		return fmt.Errorf("invalid provider name %q", name)
	}
	for k := range options {
		if k == "" || strings.ContainsAny(k, ". =") {
			return fmt.Errorf("invalid option name %q for provider %s: use letters, digits and underscores", k, name)
		}
	}
	doc, err := readDoc(path)
	if err != nil {
		return err
	}
	doc.section([]string{"providers", name})
	names := make([]string, 0, len(options))
	for k := range options {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		doc.set([]string{"providers", name, k}, options[k])
	}
	return doc.write(path)
}

var errNegative = errors.New("must not be negative")
