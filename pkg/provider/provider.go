// Package provider defines what a cloud (or the local machine, or a
// simulation) must do to run project hosts, and a registry that providers
// join from their init functions, the way database/sql drivers do.
//
// The queue, reconcile loop and CLI consult Capabilities instead of
// switching on provider names, so adding a cloud is one package under
// providers/, one line in providers/builtin, and one contract-suite call.
package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Provider creates and controls the VMs behind project hosts.
//
// Every method must be safe to retry: Create finds an instance it made
// earlier (by name or label) instead of making a second one; Start and
// Stop succeed when the instance is already in the wanted state; Delete of
// a missing instance returns nil or an errkind.NotFound error, which callers
// treat as done.
// Errors should be classified (provider.Errorf, errkind) so callers can decide whether to
// retry.
type Provider interface {
	// Name is the registered name ("local", "gcp", ...).
	Name() string
	Capabilities() Capabilities
	// Create makes the instance described by spec, or returns the one
	// that already carries spec.Name.
	Create(ctx context.Context, spec CreateSpec) (Instance, error)
	Start(ctx context.Context, ref Ref) (Instance, error)
	// Stop stops compute billing and keeps the data. Providers whose
	// Capabilities().Stop is StopNone return an Unsupported error.
	Stop(ctx context.Context, ref Ref) (Instance, error)
	// Delete removes the instance; with keepDisk the data disk survives.
	Delete(ctx context.Context, ref Ref, keepDisk bool) error
	// Status reports the instance; a missing one is a NotFound error.
	Status(ctx context.Context, ref Ref) (Instance, error)
	// List returns every instance that belongs to this deployment.
	List(ctx context.Context) ([]Instance, error)
	// Catalog lists the machine types this provider offers.
	Catalog(ctx context.Context) ([]CatalogEntry, error)
}

// CatalogReporter is implemented by providers whose catalog payload is a
// list of rows that can each fail validation: a bad row is left out and
// reported, so that one odd machine type does not hide all the others.
// The cache calls CatalogReport instead of Catalog when it can.
type CatalogReporter interface {
	CatalogReport(ctx context.Context) (CatalogReport, error)
}

// CatalogReport is a catalog and the source rows left out as invalid.
type CatalogReport struct {
	Entries []CatalogEntry
	// Skipped counts the rows left out; Reasons says why for the first
	// MaxSkipReasons of them, each naming its row.
	Skipped int
	Reasons []string
}

// MaxSkipReasons is how many reasons a CatalogReport keeps.
const MaxSkipReasons = 3

// Skip records a row left out and why.
func (r *CatalogReport) Skip(format string, args ...any) {
	r.Skipped++
	if len(r.Reasons) < MaxSkipReasons {
		r.Reasons = append(r.Reasons, fmt.Sprintf(format, args...))
	}
}

// DiskResizer is implemented by providers that can grow a host's data disk.
type DiskResizer interface {
	ResizeDisk(ctx context.Context, ref Ref, sizeGB int) (Instance, error)
}

// DiskSizer is implemented by providers whose data disk is not simply
// the size a spec asks for, or catalog.DefaultDiskGB (10 GB) when it asks
// none: a default set in their options, a smallest size the cloud makes.
// DataDiskGB is the size Create makes for a spec asking requested GB (0:
// none), so that estimates price the disk that will really be made.
type DiskSizer interface {
	DataDiskGB(requested int) int
}

// CredentialChecker is implemented by providers with credentials: one
// cheap, read-only API call that proves the credentials work. `providers
// add` calls it before saving the credentials reference.
type CredentialChecker interface {
	CheckCredentials(ctx context.Context) error
}

// Purger is implemented by providers with Capabilities().Purge: their
// Delete keeps the host's data, and Purge erases it.
type Purger interface {
	Purge(ctx context.Context, ref Ref) error
}

// Forgetter is implemented by providers with Capabilities().Forget: Forget
// drops a machine without touching it (for machines that are gone or
// unreachable).
type Forgetter interface {
	Forget(ctx context.Context, ref Ref) error
}

// Closer is implemented by providers that hold connections.
type Closer interface{ Close() error }

// StopKind says what "stop" means on a provider.
type StopKind string

const (
	// StopReal stops the VM; compute billing ends, disks are kept.
	StopReal StopKind = "stop"
	// StopHibernate suspends the VM to disk; a plain shutdown would still be
	// billed in full on such clouds.
	StopHibernate StopKind = "hibernate"
	// StopNone means the provider cannot stop a VM, only delete it.
	StopNone StopKind = "none"
)

// Capabilities describes what a provider can do: the one place where its
// abilities are declared, so that callers decide by them rather than by
// provider names or type assertions. Some abilities are operations beside
// Provider (the interface named at the field); the contract suite
// (providertest) checks that the two agree.
type Capabilities struct {
	Stop                   StopKind `json:"stop"`
	DiskResize             bool     `json:"disk_resize"`
	DiskResizeRequiresStop bool     `json:"disk_resize_requires_stop"`
	CustomImage            bool     `json:"custom_image"`
	GPU                    bool     `json:"gpu"`
	Zones                  bool     `json:"zones"`
	Spot                   bool     `json:"spot"`
	// PersistentDisk: the data disk can outlive the VM (delete keeping disk).
	PersistentDisk bool `json:"persistent_disk"`
	// Simulated providers create nothing real.
	Simulated bool `json:"simulated"`
	// ThisMachine: hosts run on the machine of the control plane, at no
	// price; such a provider is used when named (--cloud, default_cloud),
	// never chosen by a search for the cheapest machine.
	ThisMachine bool `json:"this_machine"`
	// Bootstrap: new instances are plain VMs that the control plane turns
	// into project hosts over SSH (the bootstrap runner). False for
	// providers that start the agent themselves (local, sim).
	Bootstrap bool `json:"bootstrap"`
	// InjectHostKey: Create installs CreateSpec.HostKey on the new VM (by
	// user data), so its SSH host key is pinned before first contact;
	// other hosts are pinned on first contact.
	InjectHostKey bool `json:"inject_host_key"`
	// Adopt: hosts are existing machines given by address
	// (CreateSpec.Address), taken over rather than created.
	Adopt bool `json:"adopt"`
	// CheckCredentials: the provider has credentials and implements
	// CredentialChecker.
	CheckCredentials bool `json:"check_credentials"`
	// Purge: Delete keeps the host's data (the machine is the user's) and
	// Purger erases it too.
	Purge bool `json:"purge"`
	// Forget: implements Forgetter, dropping a machine without touching it.
	Forget bool `json:"forget"`
	// SSH: works on its machines over the control plane's SSH pool, which
	// it is handed with UseSSH(*sshpool.Pool) when opened.
	SSH bool `json:"ssh"`
}

// Ref identifies an instance of a host.
type Ref struct {
	HostID     string `json:"host_id"`
	Name       string `json:"name"`
	InstanceID string `json:"instance_id,omitempty"`
	Region     string `json:"region,omitempty"`
	Zone       string `json:"zone,omitempty"`
	// Meta is what the provider returned in Instance.Meta last time.
	Meta map[string]string `json:"meta,omitempty"`
}

// CreateSpec describes an instance to create.
type CreateSpec struct {
	HostID      string            `json:"host_id"`
	Name        string            `json:"name"` // instance name; unique per deployment
	Region      string            `json:"region,omitempty"`
	Zone        string            `json:"zone,omitempty"`
	MachineType string            `json:"machine_type,omitempty"`
	DiskGB      int               `json:"disk_gb,omitempty"`
	GPUModel    string            `json:"gpu_model,omitempty"`
	GPUCount    int               `json:"gpu_count,omitempty"`
	Image       string            `json:"image,omitempty"`
	Spot        bool              `json:"spot,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`

	// SSH access for the bootstrap runner. SSHUser is the login user the
	// provider configures (empty: the provider's default, reported back
	// in Instance.SSHUser); SSHAuthorizedKey is the fleet public key to
	// authorize for it.
	SSHUser          string `json:"ssh_user,omitempty"`
	SSHAuthorizedKey string `json:"ssh_authorized_key,omitempty"`
	// Address is the existing machine (HOST:PORT) that providers which
	// adopt machines (ssh) take over; other providers ignore it.
	Address string `json:"address,omitempty"`
	// Reverse: Address is as seen from the machine, which is reached
	// through its tunnel (create --reverse).
	Reverse bool `json:"reverse,omitempty"`
	// HostKey, when set, is an SSH host key pair (OpenSSH PEM private key
	// and authorized_keys-format public key) that providers with user data
	// install on the VM, so its host key is known before first contact.
	HostKey *HostKey `json:"-"`
}

// HostKey is an SSH host key pair generated by the control plane.
type HostKey struct {
	PrivatePEM string
	Public     string
}

// State is an instance's state, normalized across providers.
type State string

const (
	StatePending     State = "pending" // being created or booting
	StateRunning     State = "running"
	StateStopping    State = "stopping"
	StateStopped     State = "stopped" // stopped or hibernated: data kept
	StateTerminating State = "terminating"
	StateTerminated  State = "terminated"
	StateError       State = "error"
)

// Instance is a provider's view of a VM.
type Instance struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	HostID    string `json:"host_id,omitempty"` // from our label, when present
	Region    string `json:"region,omitempty"`
	Zone      string `json:"zone,omitempty"`
	State     State  `json:"state"`
	PublicIP  string `json:"public_ip,omitempty"`
	PrivateIP string `json:"private_ip,omitempty"`
	DataDisk  string `json:"data_disk,omitempty"`
	// DataDiskDevice hints where the data disk appears inside the VM
	// (e.g. /dev/disk/by-id/google-data), for the bootstrap script.
	DataDiskDevice string            `json:"data_disk_device,omitempty"`
	DiskGB         int               `json:"disk_gb,omitempty"`
	SSHUser        string            `json:"ssh_user,omitempty"`
	SSHPort        int               `json:"ssh_port,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Meta           map[string]string `json:"meta,omitempty"`
}

// Ref returns a reference to this instance for hostID.
func (i Instance) Ref(hostID string) Ref {
	return Ref{HostID: hostID, Name: i.Name, InstanceID: i.ID, Region: i.Region, Zone: i.Zone, Meta: i.Meta}
}

// CatalogEntry is one machine type in one place, normalized across clouds.
type CatalogEntry struct {
	Provider     string  `json:"provider"`
	Region       string  `json:"region"`
	Zone         string  `json:"zone,omitempty"`
	InstanceType string  `json:"instance_type"`
	VCPUs        int     `json:"vcpus"`
	MemoryGiB    float64 `json:"memory_gib"`
	GPUModel     string  `json:"gpu_model,omitempty"`
	GPUCount     int     `json:"gpu_count,omitempty"`
	GPUMemoryGiB float64 `json:"gpu_memory_gib,omitempty"`
	HourlyPrice  float64 `json:"hourly_price"`
	SpotPrice    float64 `json:"spot_price,omitempty"`
	// DiskPricePerGBMonth is the USD price per GB-month of the data disk
	// this provider creates for a host in this region (its configured disk
	// type), from the same pricing source as HourlyPrice; 0 means the
	// source does not price disks and a default applies.
	DiskPricePerGBMonth float64 `json:"disk_price_gb_month,omitempty"`
	// BootDiskMonthly is the USD price per month of the boot disk this
	// provider creates with the machine, billed while the VM exists
	// (stopped too); 0 when the machine price includes it.
	BootDiskMonthly float64 `json:"boot_disk_monthly,omitempty"`
	Available       bool    `json:"available"`
	Simulated       bool    `json:"simulated,omitempty"`
	PricingSource   string  `json:"pricing_source,omitempty"`
	// PricingVersion identifies the price list the prices came from (for
	// example the date or etag of the pricing payload); it is logged with
	// each action in cloud_vm_log.
	PricingVersion string `json:"pricing_version,omitempty"`
}

// Config is what a provider factory gets.
type Config struct {
	// Deployment names this control plane; providers label instances with
	// it so List returns only ours.
	Deployment string
	// StateDir is a directory the provider may keep files in.
	StateDir string
	// RuntimeDir is a short directory for sockets (unix socket paths are
	// limited to 107 bytes). Empty means StateDir.
	RuntimeDir string
	// Options are the provider's settings from the config file.
	Options map[string]string
	// CredentialsFile is a 0600 file with the provider's credentials.
	CredentialsFile string
	// State persists provider-private records in the control plane's store.
	State StateStore
	// AgentCommand runs this program's agent: argv[0] first.
	AgentCommand []string
	// OnCall, when set, is told of each call the provider makes to its
	// cloud's API (for metrics): the operation, how long it took, and its
	// error, nil when it succeeded. It must be quick and safe for
	// concurrent use.
	OnCall func(op string, took time.Duration, err error)
}

// StateStore is a small key-value store for providers whose instances live
// only in our database (the sim provider).
type StateStore interface {
	// PutIfAbsent stores value under key unless key exists; it reports
	// whether it stored.
	PutIfAbsent(ctx context.Context, provider, key string, value json.RawMessage) (bool, error)
	Put(ctx context.Context, provider, key string, value json.RawMessage) error
	Get(ctx context.Context, provider, key string) (json.RawMessage, error) // NotFound error when absent
	Delete(ctx context.Context, provider, key string) error
	List(ctx context.Context, provider string) (map[string]json.RawMessage, error)
}

// Labels we put on every instance.
const (
	LabelDeployment = "cocalc-hosts-deployment"
	LabelHost       = "cocalc-hosts-host"
)

// DefaultPollInterval is how often providers poll long operations.
var DefaultPollInterval = 2 * time.Second

// InstanceName is the VM name for a host: short, lowercase, starting with
// a letter, valid on every cloud we support, and unique per host.
func InstanceName(hostID string) string { return "ch-" + hostID }

// HostIDFromName returns the host id encoded in an instance name made by
// InstanceName, or "" if name is not one of ours.
func HostIDFromName(name string) string {
	if len(name) > 3 && name[:3] == "ch-" {
		return name[3:]
	}
	return ""
}
