package provider

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// Factory makes a provider from its configuration.
type Factory func(Config) (Provider, error)

// Registration is what a provider package registers.
type Registration struct {
	Name         string
	Description  string
	Capabilities Capabilities
	New          Factory
}

var (
	mu       sync.RWMutex
	registry = map[string]Registration{}
)

// Register makes a provider available by name. It panics on an empty or
// duplicate name, as database/sql.Register does: both are programming
// errors that must not pass silently.
func Register(r Registration) {
	mu.Lock()
	defer mu.Unlock()
	if r.Name == "" || r.New == nil {
		panic("provider: Register with empty name or nil factory")
	}
	if _, dup := registry[r.Name]; dup {
		panic(fmt.Sprintf("provider: Register called twice for %q", r.Name))
	}
	registry[r.Name] = r
}

// Lookup returns the registration of name.
func Lookup(name string) (Registration, error) {
	mu.RLock()
	defer mu.RUnlock()
	r, ok := registry[name]
	if !ok {
		return Registration{}, &UnknownError{Name: name, Known: namesLocked()}
	}
	return r, nil
}

// Open makes the provider called name.
func Open(name string, cfg Config) (Provider, error) {
	r, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	p, err := r.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	return p, nil
}

// Registered lists all registrations sorted by name.
func Registered() []Registration {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Registration, 0, len(registry))
	for _, n := range namesLocked() {
		out = append(out, registry[n])
	}
	return out
}

func namesLocked() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// UnknownError is returned for a provider name nobody registered.
type UnknownError struct {
	Name  string
	Known []string
}

// ErrorKind: naming a provider that does not exist is bad input.
func (e *UnknownError) ErrorKind() errkind.Kind { return errkind.Invalid }

func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown provider %q (known: %s)", e.Name, strings.Join(e.Known, ", "))
}

// Info is a registered provider as `providers` lists it.
type Info struct {
	Name         string       `json:"name"`
	Description  string       `json:"description"`
	Capabilities Capabilities `json:"capabilities"`
	// Configured: the config file has a providers.NAME section (see
	// `providers add`).
	Configured bool `json:"configured"`
}
