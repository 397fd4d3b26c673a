// Package hyperstack runs project hosts on Hyperstack (NexGen Infrahub REST
// API v1).
//
// How Hyperstack's semantics map onto the provider interface:
//   - Everything lives in an environment, which belongs to one region.
//     Each deployment gets one environment per region, named
//     cocalc-hosts-<deployment>-<region>, created on first use; List
//     looks only in those, so it never claims another deployment's VMs.
//     An SSH key pair is imported into each environment once.
//   - A VM has a boot disk from its flavor and, for the host's data, a
//     separate volume named <instance>-data in the same environment. It
//     is created before the VM, attached once the VM is ACTIVE, survives
//     Delete(keepDisk=true) and is attached again by a later Create of
//     the same name. Volumes cannot be resized through the API
//     (PATCH /core/volumes/{id} only moves them between environments), so
//     DiskResize is false.
//   - "Stop" is hibernation: a SHUTOFF VM is billed in full, a HIBERNATED
//     one only for its storage and IP. Start restores from hibernation.
//     These actions are GET requests. Some CPU flavors cannot hibernate;
//     stopping those fails with advice to deprovision instead.
//   - Create is idempotent by name within the environment (the API has
//     no request ids), and resumable: a retry after any failure finds the
//     environment, key pair, volume and VM made so far and finishes the
//     job, ending with the volume attached.
//   - The open ports (22, 80, 443 by default) are firewall rules added
//     once the VM is ACTIVE, through POST /core/virtual-machines/{id}/sg-rules:
//     the spec's rule payload requires the VM's id, so rules sent with the
//     create request are refused by a server that validates by the spec.
package hyperstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/userdata"
)

// Name is the provider's registered name.
const Name = "hyperstack"

var capabilities = provider.Capabilities{
	Stop:             provider.StopHibernate,
	CustomImage:      true,
	GPU:              true,
	PersistentDisk:   true,
	Bootstrap:        true,
	InjectHostKey:    true,
	CheckCredentials: true,
}

func init() {
	provider.Register(provider.Registration{
		Name:         Name,
		Description:  "Hyperstack GPU cloud (stop hibernates the VM; the data volume outlives it)",
		Capabilities: capabilities,
		New:          func(cfg provider.Config) (provider.Provider, error) { return New(cfg) },
	})
}

var (
	_ provider.Provider          = (*Provider)(nil)
	_ provider.CredentialChecker = (*Provider)(nil)
)

// Provider is a Hyperstack organization as one deployment sees it.
type Provider struct {
	deployment string
	opts       options
	api        *restclient.Client
}

// New makes a hyperstack provider from cfg. The API key is read from
// cfg.CredentialsFile on each call.
func New(cfg provider.Config) (*Provider, error) {
	if cfg.Deployment == "" {
		return nil, fmt.Errorf("Config.Deployment is empty: the hyperstack provider names its environments after it so List returns only this deployment's VMs")
	}
	o, err := parseOptions(cfg.Options)
	if err != nil {
		return nil, err
	}
	return &Provider{
		deployment: cfg.Deployment, opts: o,
		api: newClient(o, cfg.CredentialsFile, cfg.OnCall),
	}, nil
}

func (p *Provider) Name() string                        { return Name }
func (p *Provider) Capabilities() provider.Capabilities { return capabilities }

// ---- API shapes (Infrahub OpenAPI, api/openapi.yaml of hyperstack-sdk-go)

type environment struct {
	ID     int    `json:"id"`
	Name   string `json:"name"`
	Region string `json:"region"`
}

type keypair struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	PublicKey   string `json:"public_key"`
	Environment struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	} `json:"environment"`
}

type volume struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Size        int    `json:"size"`
	Status      string `json:"status"`
	VolumeType  string `json:"volume_type"`
	Environment struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	} `json:"environment"`
	Attachments []struct {
		InstanceID int    `json:"instance_id"`
		Device     string `json:"device"`
		Status     string `json:"status"`
	} `json:"attachments"`
}

type vm struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"`
	PowerState  string `json:"power_state"`
	VMState     string `json:"vm_state"`
	FixedIP     string `json:"fixed_ip"`
	FloatingIP  string `json:"floating_ip"`
	Environment struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	} `json:"environment"`
	Flavor struct {
		Name     string `json:"name"`
		GPU      string `json:"gpu"`
		GPUCount int    `json:"gpu_count"`
	} `json:"flavor"`
	Image struct {
		Name string `json:"name"`
	} `json:"image"`
	VolumeAttachments []struct {
		Device string `json:"device"`
		Status string `json:"status"`
		Volume struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
			Size int    `json:"size"`
		} `json:"volume"`
	} `json:"volume_attachments"`
	SecurityRules []securityRule `json:"security_rules"`
}

type securityRule struct {
	Direction      string `json:"direction"`
	Ethertype      string `json:"ethertype"`
	Protocol       string `json:"protocol"`
	RemoteIPPrefix string `json:"remote_ip_prefix"`
	PortRangeMin   int    `json:"port_range_min"`
	PortRangeMax   int    `json:"port_range_max"`
	// VirtualMachineID is required by the spec's Create_Security_Rule_Payload
	// (although not among its properties); replies do not carry it.
	VirtualMachineID int `json:"virtual_machine_id,omitempty"`
}

type createVMRequest struct {
	Name             string `json:"name"`
	EnvironmentName  string `json:"environment_name"`
	ImageName        string `json:"image_name"`
	FlavorName       string `json:"flavor_name"`
	KeyName          string `json:"key_name"`
	Count            int    `json:"count"`
	AssignFloatingIP bool   `json:"assign_floating_ip"`
	UserData         string `json:"user_data,omitempty"`
}

// VM statuses (docs: "States and Statuses of Virtual Machines").
const (
	statusActive      = "ACTIVE"
	statusShutoff     = "SHUTOFF"
	statusHibernated  = "HIBERNATED"
	statusHibernating = "HIBERNATING"
	statusDeleting    = "DELETING"
	statusError       = "ERROR"
)

// mapStatus maps an Infrahub VM status to ours. SHUTOFF counts as
// stopped (the VM is off) although it is billed in full; Stop hibernates
// such a VM.
func mapStatus(s string) provider.State {
	switch strings.ToUpper(s) {
	case "CREATING", "BUILD", "STARTING", "RESTORING", "REBOOTING", "HARD_REBOOT":
		return provider.StatePending
	case statusActive:
		return provider.StateRunning
	case "STOPPING", statusHibernating:
		return provider.StateStopping
	case statusShutoff, statusHibernated:
		return provider.StateStopped
	case statusDeleting:
		return provider.StateTerminating
	case "DELETED":
		return provider.StateTerminated
	default: // ERROR and anything newer than this code
		return provider.StateError
	}
}

// stable reports whether a VM in status s is waiting for nobody.
func stable(s string) bool {
	switch strings.ToUpper(s) {
	case statusActive, statusShutoff, statusHibernated, statusError:
		return true
	}
	return false
}

// ---- the provider

func (p *Provider) CheckCredentials(ctx context.Context) error {
	var out struct {
		Status bool `json:"status"`
	}
	return p.api.Do(ctx, "check credentials", http.MethodGet, "/core/environments?page=1&pageSize=1", nil, &out)
}

func (p *Provider) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	const op = "create"
	if err := validName(op, spec.Name); err != nil {
		return provider.Instance{}, err
	}
	switch {
	case strings.TrimSpace(spec.SSHAuthorizedKey) == "":
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "Hyperstack VMs need an SSH key pair, and the spec of %s has no public key", spec.Name)
	case spec.Spot:
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "Hyperstack has no spot VMs; drop --spot")
	case spec.Zone != "":
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "Hyperstack has regions but no zones; drop the zone %q", spec.Zone)
	case spec.DiskGB < 0:
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "negative disk size %d GB", spec.DiskGB)
	}
	user := spec.SSHUser
	if user == "" {
		user = DefaultSSHUser
	}
	if spec.DiskGB == 0 {
		spec.DiskGB = DefaultDiskGB
	}
	region := spec.Region
	// Idempotency first: the VM may exist from an earlier attempt. Only
	// the region asked for is searched; without one, all of ours.
	if v, env, ok, err := p.findVM(ctx, op, region, spec.Name); err != nil {
		return provider.Instance{}, err
	} else if ok {
		if strings.EqualFold(v.Status, statusDeleting) {
			return provider.Instance{}, provider.Errorf(errkind.Transient, Name, op,
				"the previous VM %s (%d) is still being deleted; retry in a moment", v.Name, v.ID)
		}
		return p.finishCreate(ctx, op, v, env, spec.DiskGB, user)
	}
	// A data volume kept from an earlier VM of this name can only be
	// attached in its own region, which therefore decides where to go.
	if keptRegion, ok, err := p.keptVolumeRegion(ctx, op, spec.Name); err != nil {
		return provider.Instance{}, err
	} else if ok && region != "" && !strings.EqualFold(region, keptRegion) {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
			"the kept data volume %s is in %s; create %s there (--region %s) or delete the host to drop the volume",
			dataVolumeName(spec.Name), keptRegion, spec.Name, keptRegion)
	} else if ok {
		region = keptRegion
	}
	if region == "" {
		region = p.opts.region
	}
	flavorName, region, err := p.placement(ctx, op, spec, region)
	if err != nil {
		return provider.Instance{}, err
	}
	env, err := p.ensureEnvironment(ctx, op, region)
	if err != nil {
		return provider.Instance{}, err
	}
	// Another worker may have made it between our look and now.
	if v, ok, err := p.findVMIn(ctx, op, env, spec.Name); err != nil {
		return provider.Instance{}, err
	} else if ok {
		return p.finishCreate(ctx, op, v, env, spec.DiskGB, user)
	}
	keyName, err := p.ensureKeypair(ctx, op, env, spec.SSHAuthorizedKey)
	if err != nil {
		return provider.Instance{}, err
	}
	// The volume first: it outlives VMs, and a VM without it is no host.
	if _, err := p.ensureVolume(ctx, op, env, spec.Name, spec.DiskGB); err != nil {
		return provider.Instance{}, err
	}
	image := spec.Image
	if image == "" {
		image = p.opts.image
	}
	req := createVMRequest{
		Name: spec.Name, EnvironmentName: env, ImageName: image, FlavorName: flavorName, KeyName: keyName,
		Count: 1, AssignFloatingIP: true, UserData: userdata.CloudConfig(user, DefaultSSHUser, spec.SSHAuthorizedKey, spec.HostKey),
	}
	var created struct {
		Instances []vm `json:"instances"`
	}
	if err := p.api.Do(ctx, op, http.MethodPost, "/core/virtual-machines", req, &created); err != nil {
		return provider.Instance{}, err
	}
	if len(created.Instances) != 1 {
		return provider.Instance{}, provider.Errorf(errkind.Transient, Name, op,
			"creating %s returned %d instances, want 1; a retry finds it by name if it exists", spec.Name, len(created.Instances))
	}
	return p.finishCreate(ctx, op, created.Instances[0], env, spec.DiskGB, user)
}

// finishCreate waits for a new (or found) VM to settle and attaches its
// data volume once it is ACTIVE. A VM that failed to build is deleted,
// so the retry makes a fresh one. A stopped VM is returned as it is:
// Create does not start VMs.
func (p *Provider) finishCreate(ctx context.Context, op string, v vm, env string, diskGB int, user string) (provider.Instance, error) {
	v, err := p.waitStable(ctx, op, v)
	if err != nil {
		return provider.Instance{}, err
	}
	switch strings.ToUpper(v.Status) {
	case statusError:
		if err := p.api.Do(ctx, op, http.MethodDelete, vmPath(v.ID, ""), nil, nil); err != nil && !errkind.Is(err, errkind.NotFound) {
			return provider.Instance{}, err
		}
		return provider.Instance{}, provider.Errorf(errkind.Transient, Name, op,
			"VM %s (%d) failed to build at Hyperstack and was deleted; a retry creates a new one", v.Name, v.ID)
	case statusActive:
		if v, err = p.ensureAttached(ctx, op, v, env, diskGB); err != nil {
			return provider.Instance{}, err
		}
		if err := p.ensureOpenPorts(ctx, op, v); err != nil {
			return provider.Instance{}, err
		}
	}
	return p.instance(v, user), nil
}

// ensureOpenPorts adds an inbound TCP rule for each open port the VM
// lacks. The rules are added once the VM exists, through its own
// sg-rules endpoint: the spec's rule payload requires the VM's id, so
// rules sent with the create request are refused by a server that
// validates by the spec.
func (p *Provider) ensureOpenPorts(ctx context.Context, op string, v vm) error {
	for _, port := range p.opts.openPorts {
		open := false
		for _, r := range v.SecurityRules {
			open = open || (strings.EqualFold(r.Direction, "ingress") && strings.EqualFold(r.Ethertype, "IPv4") &&
				strings.EqualFold(r.Protocol, "tcp") && r.RemoteIPPrefix == "0.0.0.0/0" && r.PortRangeMin <= port && port <= r.PortRangeMax)
		}
		if open {
			continue
		}
		rule := securityRule{Direction: "ingress", Ethertype: "IPv4", Protocol: "tcp", RemoteIPPrefix: "0.0.0.0/0",
			PortRangeMin: port, PortRangeMax: port, VirtualMachineID: v.ID}
		if err := p.api.Do(ctx, op, http.MethodPost, vmPath(v.ID, "sg-rules"), rule, nil); err != nil {
			return fmt.Errorf("opening port %d of VM %s (%d): %w", port, v.Name, v.ID, err)
		}
	}
	return nil
}

// ensureAttached attaches the VM's data volume unless it already is.
// Create (diskGB > 0) makes the volume if it went missing; Start does not
// replace a lost data volume with an empty one.
func (p *Provider) ensureAttached(ctx context.Context, op string, v vm, env string, diskGB int) (vm, error) {
	name := dataVolumeName(v.Name)
	for _, a := range v.VolumeAttachments {
		if a.Volume.Name == name {
			return v, nil
		}
	}
	if diskGB <= 0 {
		if _, ok, err := p.findVolume(ctx, op, env, name); err != nil {
			return v, err
		} else if !ok {
			return v, provider.Errorf(errkind.Invalid, Name, op, "the data volume %s of VM %s is missing", name, v.Name)
		}
	}
	vol, err := p.ensureVolume(ctx, op, env, v.Name, diskGB)
	if err != nil {
		return v, err
	}
	for _, a := range vol.Attachments {
		if a.InstanceID != v.ID {
			return v, provider.Errorf(errkind.Invalid, Name, op,
				"the data volume %s (%d) is attached to another VM (%d); detach it in the Hyperstack console", vol.Name, vol.ID, a.InstanceID)
		}
	}
	if len(vol.Attachments) == 0 {
		attach := struct {
			VolumeIDs []int `json:"volume_ids"`
		}{[]int{vol.ID}}
		if err := p.api.Do(ctx, op, http.MethodPost, vmPath(v.ID, "attach-volumes"), attach, nil); err != nil {
			return v, err
		}
	}
	for {
		if v, err = p.getVM(ctx, op, v.ID); err != nil {
			return v, err
		}
		for _, a := range v.VolumeAttachments {
			if a.Volume.Name == name {
				return v, nil
			}
		}
		if err := p.pause(ctx, op, "attaching the data volume of "+v.Name); err != nil {
			return v, err
		}
	}
}

// placement picks the flavor and region: the ones the spec names, else
// the cheapest flavor in stock that has the GPU it asks for.
func (p *Provider) placement(ctx context.Context, op string, spec provider.CreateSpec, region string) (string, string, error) {
	flavorName := spec.MachineType
	if flavorName != "" && region != "" {
		fl, ok, err := p.findFlavor(ctx, op, region, flavorName)
		switch {
		case err != nil:
			return "", "", err
		case !ok:
			return "", "", provider.Errorf(errkind.Invalid, Name, op, "region %s has no flavor %q; see `cocalc-hosts catalog --cloud hyperstack`", region, flavorName)
		case fl.StockAvailable == nil || !*fl.StockAvailable:
			return "", "", provider.Errorf(errkind.Capacity, Name, op, "flavor %s is out of stock in %s", flavorName, region)
		}
		return flavorName, region, nil
	}
	rows, err := p.Catalog(ctx)
	if err != nil {
		return "", "", err
	}
	gpu := strings.ToLower(spec.GPUModel)
	var best *provider.CatalogEntry
	for i := range rows {
		r := &rows[i]
		switch {
		case flavorName != "" && r.InstanceType != flavorName:
		case flavorName == "" && gpu != "" && r.GPUModel != gpu:
		case flavorName == "" && r.GPUCount < spec.GPUCount:
		case region != "" && r.Region != region:
		case !r.Available:
		case best == nil || r.HourlyPrice < best.HourlyPrice:
			best = r
		}
	}
	if best == nil {
		what := flavorName
		if what == "" {
			what = "a flavor"
			if gpu != "" {
				what = "a flavor with " + gpu + " GPUs"
			}
		}
		where := "any region"
		if region != "" {
			where = region
		}
		return "", "", provider.Errorf(errkind.Capacity, Name, op, "Hyperstack has %s in stock in %s right now", "no "+strings.TrimPrefix(what, "a "), where)
	}
	return best.InstanceType, best.Region, nil
}

func (p *Provider) Start(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "start"
	v, env, err := p.lookup(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	for range 3 {
		switch s := strings.ToUpper(v.Status); {
		case s == statusDeleting:
			return provider.Instance{}, provider.Errorf(errkind.NotFound, Name, op, "VM %s is being deleted", v.Name)
		case s == statusError:
			return provider.Instance{}, errorState(op, v)
		case s == statusHibernated:
			return p.act(ctx, op, v, ref, "hibernate-restore", "")
		case s == statusShutoff:
			return p.act(ctx, op, v, ref, "start", "")
		case s == statusActive:
			if v, err = p.ensureAttached(ctx, op, v, env, 0); err != nil {
				return provider.Instance{}, err
			}
			return p.instance(v, ref.Meta["ssh_user"]), nil
		case mapStatus(s) == provider.StatePending:
			return p.instance(v, ref.Meta["ssh_user"]), nil // already on its way up
		default: // stopping or hibernating: start once that is done
			if v, err = p.waitStable(ctx, op, v); err != nil {
				return provider.Instance{}, err
			}
		}
	}
	return provider.Instance{}, provider.Errorf(errkind.Transient, Name, op, "VM %s keeps changing state (%s); retry", v.Name, v.Status)
}

// Stop hibernates the VM: a SHUTOFF VM is still billed in full.
func (p *Provider) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "stop"
	v, _, err := p.lookup(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	for range 3 {
		switch s := strings.ToUpper(v.Status); s {
		case statusDeleting:
			return provider.Instance{}, provider.Errorf(errkind.NotFound, Name, op, "VM %s is being deleted", v.Name)
		case statusError:
			return provider.Instance{}, errorState(op, v)
		case statusHibernating, statusHibernated:
			return p.instance(v, ref.Meta["ssh_user"]), nil
		case statusActive:
			q := "?retain_ip=" + strconv.FormatBool(p.opts.retainIP)
			inst, err := p.act(ctx, op, v, ref, "hibernate", q)
			if errkind.Of(err) == errkind.Invalid {
				err = fmt.Errorf("%w; if flavor %s cannot hibernate, stop paying for the host with `cocalc-hosts stop --deprovision` (keeps its data volume)", err, v.Flavor.Name)
			}
			return inst, err
		case statusShutoff:
			// Hibernation needs an ACTIVE VM; a shut-off one is billed
			// as if running, so bring it up and hibernate it.
			if _, err := p.act(ctx, op, v, ref, "start", ""); err != nil {
				return provider.Instance{}, err
			}
			if v, err = p.getVM(ctx, op, v.ID); err != nil {
				return provider.Instance{}, err
			}
			if v, err = p.waitStable(ctx, op, v); err != nil {
				return provider.Instance{}, err
			}
		default:
			if v, err = p.waitStable(ctx, op, v); err != nil {
				return provider.Instance{}, err
			}
		}
	}
	return provider.Instance{}, provider.Errorf(errkind.Transient, Name, op, "VM %s keeps changing state (%s); retry", v.Name, v.Status)
}

// act runs one of the GET actions on v and reports the VM after it.
func (p *Provider) act(ctx context.Context, op string, v vm, ref provider.Ref, action, query string) (provider.Instance, error) {
	if err := p.api.Do(ctx, op, http.MethodGet, vmPath(v.ID, action)+query, nil, nil); err != nil {
		return provider.Instance{}, err
	}
	after, err := p.getVM(ctx, op, v.ID)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(after, ref.Meta["ssh_user"]), nil
}

// Delete deletes the VM. With keepDisk its data volume stays for a later
// Create of the same name; without, the volume is deleted once the VM is
// gone (an attached volume cannot be deleted).
func (p *Provider) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	const op = "delete"
	v, env, err := p.lookup(ctx, op, ref)
	if errkind.Is(err, errkind.NotFound) {
		if keepDisk {
			return err
		}
		return p.deleteVolume(ctx, op, ref, env, err)
	}
	if err != nil {
		return err
	}
	if !strings.EqualFold(v.Status, statusDeleting) {
		if err := p.api.Do(ctx, op, http.MethodDelete, vmPath(v.ID, ""), nil, nil); err != nil && !errkind.Is(err, errkind.NotFound) {
			return err
		}
	}
	if keepDisk {
		return nil
	}
	for {
		_, err := p.getVM(ctx, op, v.ID)
		if errkind.Is(err, errkind.NotFound) {
			break
		}
		if err != nil {
			return err
		}
		if err := p.pause(ctx, op, "deleting VM "+v.Name); err != nil {
			return err
		}
	}
	return p.deleteVolume(ctx, op, ref, env, nil)
}

// deleteVolume deletes the data volume of ref's instance, waiting while it
// detaches. When there is none it returns ifNone.
func (p *Provider) deleteVolume(ctx context.Context, op string, ref provider.Ref, env string, ifNone error) error {
	name := refName(ref)
	envs := []string{env}
	if env == "" {
		var err error
		if envs, err = p.searchEnvs(ctx, op, p.regionOf(ref)); err != nil {
			return err
		}
	}
	for _, env := range envs {
		for {
			vol, ok, err := p.findVolume(ctx, op, env, dataVolumeName(name))
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if len(vol.Attachments) == 0 && !strings.EqualFold(vol.Status, "in-use") && !strings.EqualFold(vol.Status, "detaching") {
				err := p.api.Do(ctx, op, http.MethodDelete, fmt.Sprintf("/core/volumes/%d", vol.ID), nil, nil)
				if err != nil && !errkind.Is(err, errkind.NotFound) {
					return err
				}
				return nil
			}
			if err := p.pause(ctx, op, "detaching volume "+vol.Name); err != nil {
				return err
			}
		}
	}
	return ifNone
}

func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	v, _, err := p.lookup(ctx, "status", ref)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(v, ref.Meta["ssh_user"]), nil
}

// List returns the VMs in this deployment's environments.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	const op = "list"
	envs, err := p.searchEnvs(ctx, op, "")
	if err != nil {
		return nil, err
	}
	var out []provider.Instance
	for _, env := range envs {
		vms, err := p.listVMs(ctx, op, env, "")
		if err != nil {
			return nil, err
		}
		for _, v := range vms {
			if provider.HostIDFromName(v.Name) != "" {
				out = append(out, p.instance(v, ""))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ---- lookups

// lookup finds the VM ref points at: by id when known (if it still has
// the name we gave it and lives in one of our environments), else by
// name in the region's environment (or all of ours).
func (p *Provider) lookup(ctx context.Context, op string, ref provider.Ref) (vm, string, error) {
	name := refName(ref)
	if err := validName(op, name); err != nil {
		return vm{}, "", err
	}
	if id, err := strconv.Atoi(ref.InstanceID); err == nil && id > 0 {
		v, err := p.getVM(ctx, op, id)
		if err != nil {
			return vm{}, "", err
		}
		if v.Name != name || !p.ourEnv(v.Environment.Name, v.Environment.Region) {
			return vm{}, "", provider.Errorf(errkind.NotFound, Name, op, "VM %d is not our %s", id, name)
		}
		return v, v.Environment.Name, nil
	}
	v, env, ok, err := p.findVM(ctx, op, p.regionOf(ref), name)
	if err != nil {
		return vm{}, "", err
	}
	if !ok {
		return vm{}, env, provider.Errorf(errkind.NotFound, Name, op, "no VM named %s", name)
	}
	return v, env, nil
}

// regionOf is the region to look in for ref; empty means all of ours (a
// host may live elsewhere than the default region).
func (p *Provider) regionOf(ref provider.Ref) string { return ref.Region }

// keptVolumeRegion finds the data volume of instance in any of our
// environments and returns its region.
func (p *Provider) keptVolumeRegion(ctx context.Context, op, instance string) (string, bool, error) {
	envs, err := p.ourEnvs(ctx, op, "")
	if err != nil {
		return "", false, err
	}
	for _, e := range envs {
		if _, ok, err := p.findVolume(ctx, op, e.Name, dataVolumeName(instance)); err != nil {
			return "", false, err
		} else if ok {
			return e.Region, true, nil
		}
	}
	return "", false, nil
}

// findVM looks for name in the environment of region, or in all of this
// deployment's environments when region is empty. It prefers a VM that
// is not being deleted.
func (p *Provider) findVM(ctx context.Context, op, region, name string) (vm, string, bool, error) {
	envs, err := p.searchEnvs(ctx, op, region)
	if err != nil {
		return vm{}, "", false, err
	}
	var dying *vm
	var dyingEnv string
	for _, env := range envs {
		v, ok, err := p.findVMIn(ctx, op, env, name)
		if err != nil {
			return vm{}, "", false, err
		}
		if ok && !strings.EqualFold(v.Status, statusDeleting) {
			return v, env, true, nil
		}
		if ok {
			dying, dyingEnv = &v, env
		}
	}
	if dying != nil {
		return *dying, dyingEnv, true, nil
	}
	env := ""
	if region != "" {
		env = p.envName(region)
	}
	return vm{}, env, false, nil
}

func (p *Provider) findVMIn(ctx context.Context, op, env, name string) (vm, bool, error) {
	vms, err := p.listVMs(ctx, op, env, name)
	if err != nil {
		return vm{}, false, err
	}
	var found *vm
	for i, v := range vms {
		if v.Name == name && v.Environment.Name == env {
			if !strings.EqualFold(v.Status, statusDeleting) {
				return v, true, nil
			}
			found = &vms[i]
		}
	}
	if found != nil {
		return *found, true, nil
	}
	return vm{}, false, nil
}

func (p *Provider) listVMs(ctx context.Context, op, env, search string) ([]vm, error) {
	q := url.Values{"environment": {env}, "exact_environment_match": {"true"}}
	if search != "" {
		q.Set("search", search)
	}
	return listAll[vm](ctx, p.api, op, "/core/virtual-machines", "instances", q)
}

func (p *Provider) getVM(ctx context.Context, op string, id int) (vm, error) {
	var out struct {
		Instance *vm `json:"instance"`
	}
	if err := p.api.Do(ctx, op, http.MethodGet, vmPath(id, ""), nil, &out); err != nil {
		return vm{}, err
	}
	if out.Instance == nil || out.Instance.ID != id {
		return vm{}, provider.Errorf(errkind.Transient, Name, op, "GET VM %d: reply has no instance %d", id, id)
	}
	return *out.Instance, nil
}

// waitStable polls v until it is in a stable status (or gone).
func (p *Provider) waitStable(ctx context.Context, op string, v vm) (vm, error) {
	for !stable(v.Status) {
		if err := p.pause(ctx, op, fmt.Sprintf("VM %s is %s", v.Name, v.Status)); err != nil {
			return v, err
		}
		var err error
		if v, err = p.getVM(ctx, op, v.ID); err != nil {
			return v, err
		}
	}
	return v, nil
}

// pause waits one poll interval; an expired context is a transient
// error saying what was being waited for, so the queue retries the
// (resumable) action.
func (p *Provider) pause(ctx context.Context, op, what string) error {
	if err := restclient.SleepCtx(ctx, p.opts.pollInterval); err != nil {
		return provider.Errorf(errkind.Transient, Name, op, "gave up waiting (%s): %w", what, err)
	}
	return nil
}

// ---- environments, key pairs, volumes

// envPrefix starts the names of this deployment's environments.
func (p *Provider) envPrefix() string {
	slug := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, p.deployment)
	if slug != p.deployment || len(slug) > 40 {
		h := sha256.Sum256([]byte(p.deployment))
		slug = slug[:min(len(slug), 31)] + "-" + hex.EncodeToString(h[:4])
	}
	return "cocalc-hosts-" + slug + "-"
}

func (p *Provider) envName(region string) string { return p.envPrefix() + strings.ToLower(region) }

// ourEnv reports whether an environment is this deployment's one for
// its region.
func (p *Provider) ourEnv(name, region string) bool {
	return region != "" && name == p.envName(region)
}

// searchEnvs returns the names of this deployment's environments: the
// one of region, if it exists, or all when region is empty.
func (p *Provider) searchEnvs(ctx context.Context, op, region string) ([]string, error) {
	envs, err := p.ourEnvs(ctx, op, region)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(envs))
	for _, e := range envs {
		out = append(out, e.Name)
	}
	return out, nil
}

func (p *Provider) ourEnvs(ctx context.Context, op, region string) ([]environment, error) {
	search := p.envPrefix()
	if region != "" {
		search = p.envName(region)
	}
	envs, err := listAll[environment](ctx, p.api, op, "/core/environments", "environments", url.Values{"search": {search}})
	if err != nil {
		return nil, err
	}
	var out []environment
	for _, e := range envs {
		if p.ourEnv(e.Name, e.Region) && (region == "" || strings.EqualFold(e.Region, region)) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ensureEnvironment returns the name of this deployment's environment in
// region, creating it the first time.
func (p *Provider) ensureEnvironment(ctx context.Context, op, region string) (string, error) {
	name := p.envName(region)
	envs, err := p.searchEnvs(ctx, op, region)
	if err != nil || len(envs) > 0 {
		return name, err
	}
	req := struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	}{name, region}
	err = p.api.Do(ctx, op, http.MethodPost, "/core/environments", req, nil)
	if err != nil && errkind.Of(err) == errkind.Invalid {
		// A conflict: another worker made it a moment ago.
		if envs, ferr := p.searchEnvs(ctx, op, region); ferr == nil && len(envs) > 0 {
			return name, nil
		}
	}
	return name, err
}

// ensureKeypair imports pub into env once, under a name derived from it.
func (p *Provider) ensureKeypair(ctx context.Context, op, env, pub string) (string, error) {
	pub = strings.TrimSpace(pub)
	h := sha256.Sum256([]byte(pub))
	name := env + "-" + hex.EncodeToString(h[:4])
	find := func() (bool, error) {
		kps, err := listAll[keypair](ctx, p.api, op, "/core/keypairs", "keypairs", url.Values{"search": {name}})
		if err != nil {
			return false, err
		}
		for _, k := range kps {
			if k.Name == name && k.Environment.Name == env {
				if strings.TrimSpace(k.PublicKey) != pub {
					return false, provider.Errorf(errkind.Invalid, Name, op,
						"key pair %s in %s holds another public key; delete it in the Hyperstack console", name, env)
				}
				return true, nil
			}
		}
		return false, nil
	}
	if ok, err := find(); err != nil || ok {
		return name, err
	}
	req := struct {
		Name            string `json:"name"`
		EnvironmentName string `json:"environment_name"`
		PublicKey       string `json:"public_key"`
	}{name, env, pub}
	err := p.api.Do(ctx, op, http.MethodPost, "/core/keypairs", req, nil)
	if err != nil && errkind.Of(err) == errkind.Invalid {
		if ok, ferr := find(); ferr == nil && ok {
			return name, nil
		}
	}
	return name, err
}

func dataVolumeName(instance string) string { return instance + "-data" }

func (p *Provider) findVolume(ctx context.Context, op, env, name string) (volume, bool, error) {
	vols, err := listAll[volume](ctx, p.api, op, "/core/volumes", "volumes", url.Values{"environment": {env}, "search": {name}})
	if err != nil {
		return volume{}, false, err
	}
	for _, v := range vols {
		if v.Name == name && v.Environment.Name == env {
			return v, true, nil
		}
	}
	return volume{}, false, nil
}

// ensureVolume returns the data volume of instance in env, creating it
// with sizeGB when missing, once it is ready to attach (or attached).
func (p *Provider) ensureVolume(ctx context.Context, op, env, instance string, sizeGB int) (volume, error) {
	name := dataVolumeName(instance)
	if sizeGB <= 0 {
		sizeGB = DefaultDiskGB
	}
	vol, ok, err := p.findVolume(ctx, op, env, name)
	if err != nil {
		return volume{}, err
	}
	if !ok {
		req := struct {
			Name            string `json:"name"`
			EnvironmentName string `json:"environment_name"`
			Size            int    `json:"size"`
			VolumeType      string `json:"volume_type"`
			Description     string `json:"description"`
		}{name, env, sizeGB, p.opts.volumeType, "cocalc-hosts data disk of " + instance}
		perr := p.api.Do(ctx, op, http.MethodPost, "/core/volumes", req, nil)
		if perr != nil && errkind.Of(perr) != errkind.Invalid {
			return volume{}, perr
		}
		// On a conflict another worker made it; either way, read it back.
		if vol, ok, err = p.findVolume(ctx, op, env, name); err != nil {
			return volume{}, err
		} else if !ok && perr != nil {
			return volume{}, perr
		} else if !ok {
			return volume{}, provider.Errorf(errkind.Transient, Name, op, "volume %s is not listed yet after creating it; retry", name)
		}
	}
	for {
		switch strings.ToLower(vol.Status) {
		case "available", "in-use":
			return vol, nil
		case "error", "error_deleting", "deleting":
			return volume{}, provider.Errorf(errkind.Invalid, Name, op, "data volume %s (%d) is in state %s", vol.Name, vol.ID, vol.Status)
		}
		if err := p.pause(ctx, op, "volume "+name+" is "+vol.Status); err != nil {
			return volume{}, err
		}
		if vol, ok, err = p.findVolume(ctx, op, env, name); err != nil {
			return volume{}, err
		} else if !ok {
			return volume{}, provider.Errorf(errkind.Transient, Name, op, "volume %s disappeared while becoming ready", name)
		}
	}
}

// ---- conversions and small helpers

func (p *Provider) instance(v vm, user string) provider.Instance {
	if user == "" {
		user = DefaultSSHUser
	}
	in := provider.Instance{
		ID: strconv.Itoa(v.ID), Name: v.Name, HostID: provider.HostIDFromName(v.Name), Region: v.Environment.Region,
		State: mapStatus(v.Status), PublicIP: v.FloatingIP, PrivateIP: v.FixedIP, SSHUser: user, SSHPort: 22,
		Labels: map[string]string{provider.LabelDeployment: p.deployment, provider.LabelHost: provider.HostIDFromName(v.Name)},
		Meta: map[string]string{
			"status": v.Status, "environment": v.Environment.Name, "flavor": v.Flavor.Name, "ssh_user": user,
			"data_volume": dataVolumeName(v.Name),
		},
	}
	for _, a := range v.VolumeAttachments {
		if a.Volume.Name == dataVolumeName(v.Name) {
			in.DataDisk, in.DataDiskDevice, in.DiskGB = strconv.Itoa(a.Volume.ID), a.Device, a.Volume.Size
		}
	}
	return in
}

func errorState(op string, v vm) error {
	return provider.Errorf(errkind.Invalid, Name, op,
		"VM %s (%d) is in state ERROR at Hyperstack; `cocalc-hosts stop --deprovision` deletes it and keeps the data volume, and a later start makes a new VM", v.Name, v.ID)
}

func vmPath(id int, action string) string {
	if action == "" {
		return fmt.Sprintf("/core/virtual-machines/%d", id)
	}
	return fmt.Sprintf("/core/virtual-machines/%d/%s", id, action)
}

// listAll reads every page of a list endpoint whose reply carries the
// items under key and the total under "count".
func listAll[T any](ctx context.Context, c *restclient.Client, op, path, key string, q url.Values) ([]T, error) {
	const pageSize = 100
	var out []T
	for page := 1; page <= 1000; page++ {
		q.Set("page", strconv.Itoa(page))
		q.Set("pageSize", strconv.Itoa(pageSize))
		var reply map[string]json.RawMessage
		if err := c.Do(ctx, op, http.MethodGet, path+"?"+q.Encode(), nil, &reply); err != nil {
			return nil, err
		}
		var items []T
		if raw, ok := reply[key]; ok {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, provider.Errorf(errkind.Transient, Name, op, "GET %s: unexpected %s: %v", path, key, err)
			}
		} else {
			return nil, provider.Errorf(errkind.Transient, Name, op, "GET %s: reply has no %q list", path, key)
		}
		out = append(out, items...)
		// count is the total across pages; without it, a short page is
		// the last one. The server may use a smaller page than asked.
		count := -1
		if raw, ok := reply["count"]; ok {
			json.Unmarshal(raw, &count) //nolint:errcheck // absent or odd: page by size alone
		}
		switch {
		case len(items) == 0:
			return out, nil
		case count >= 0 && len(out) >= count:
			return out, nil
		case count < 0 && len(items) < pageSize:
			return out, nil
		}
	}
	return out, nil
}

// nameRE's length is checked apart: a counted repetition compiles into
// that many copies at every command's start-up.
var nameRE = lazyre.New(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

func validName(op, name string) error {
	if len(name) > 63 || !nameRE().MatchString(name) {
		return provider.Errorf(errkind.Invalid, Name, op,
			"invalid instance name %q: use 1-63 lowercase letters, digits and hyphens, starting with a letter", name)
	}
	return nil
}

func refName(ref provider.Ref) string {
	if ref.Name == "" && ref.HostID != "" {
		return provider.InstanceName(ref.HostID)
	}
	return ref.Name
}
