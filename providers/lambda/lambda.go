// Package lambda runs project hosts on Lambda Cloud (API v1, REST/JSON).
//
// Lambda's semantics shape this provider:
//   - There is no stop: an instance runs (and is billed) until it is
//     terminated. Capabilities().Stop is StopNone; `stop --deprovision`
//     terminates the VM instead.
//   - No persistent data disk: Lambda's persistent storage is a network
//     file system (mounted at /lambda/nfs/NAME, not offered in every
//     region), not a block device, so it cannot hold the host's btrfs pool.
//     The host's data lives on the instance's local NVMe and goes with it;
//     Delete(keepDisk) therefore keeps nothing, and PersistentDisk is
//     false. Backups are what carry a Lambda host's projects across.
//   - No disk resize, no spot, no zones; GPU machines only (plus the odd
//     CPU type).
//   - Instances have no labels in API v1.5.3. An instance is ours when its
//     name is InstanceName(hostID) and it was launched with this
//     deployment's SSH key (named cocalc-hosts-<deployment>-<fingerprint>),
//     so List never claims another deployment's or a person's VMs.
//   - Launch has no request id. Create finds an instance by name before
//     launching, so a launch that failed after Lambda made the VM is found
//     by the retry rather than duplicated.
package lambda

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/userdata"
)

// Name is the provider's registered name.
const Name = "lambda"

// DefaultSSHUser is the login user of Lambda's images; the SSH key named
// at launch is authorized for it.
const DefaultSSHUser = "ubuntu"

var capabilities = provider.Capabilities{
	Stop:      provider.StopNone,
	GPU:       true,
	Bootstrap: true,
	// CustomImage: the launch call accepts an image family (newer API).
	CustomImage:      true,
	InjectHostKey:    true,
	CheckCredentials: true,
}

func init() {
	provider.Register(provider.Registration{
		Name:         Name,
		Description:  "Lambda Cloud GPU instances (no stop: stopping deprovisions; data is on the instance's local disk)",
		Capabilities: capabilities,
		New:          func(cfg provider.Config) (provider.Provider, error) { return New(cfg) },
	})
}

var (
	_ provider.Provider          = (*Provider)(nil)
	_ provider.CredentialChecker = (*Provider)(nil)
)

// Provider is a Lambda Cloud account as one deployment sees it.
type Provider struct {
	deployment string
	opts       options
	api        *restclient.Client
}

// New makes a lambda provider from cfg. The API key is read from
// cfg.CredentialsFile on each call, so a provider can be opened (and
// listed) before its credentials are added.
func New(cfg provider.Config) (*Provider, error) {
	if cfg.Deployment == "" {
		return nil, fmt.Errorf("Config.Deployment is empty: the lambda provider marks instances with it so List returns only this deployment's")
	}
	o, err := parseOptions(cfg.Options)
	if err != nil {
		return nil, err
	}
	return &Provider{
		deployment: cfg.Deployment,
		opts:       o,
		api:        newClient(o, cfg.CredentialsFile, cfg.OnCall),
	}, nil
}

func (p *Provider) Name() string                        { return Name }
func (p *Provider) Capabilities() provider.Capabilities { return capabilities }

// ---- API shapes (Lambda Cloud API v1; see the OpenAPI spec 1.5.3)

type region struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type instance struct {
	ID              string        `json:"id"`
	Name            *string       `json:"name"`
	IP              *string       `json:"ip"`
	PrivateIP       *string       `json:"private_ip"`
	Status          string        `json:"status"`
	SSHKeyNames     []string      `json:"ssh_key_names"`
	FileSystemNames []string      `json:"file_system_names"`
	Region          *region       `json:"region"`
	InstanceType    *instanceType `json:"instance_type"`
	Hostname        *string       `json:"hostname"`
}

func (in instance) name() string { return deref(in.Name) }

type sshKey struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// launchRequest is InstanceCreateInstancesRequest, plus user_data and
// image, which newer versions of the API accept.
type launchRequest struct {
	RegionName       string     `json:"region_name"`
	InstanceTypeName string     `json:"instance_type_name"`
	SSHKeyNames      []string   `json:"ssh_key_names"`
	FileSystemNames  []string   `json:"file_system_names,omitempty"`
	Quantity         int        `json:"quantity"`
	Name             string     `json:"name"`
	UserData         string     `json:"user_data,omitempty"`
	Image            *imageSpec `json:"image,omitempty"`
}

type imageSpec struct {
	Family string `json:"family"`
}

type idsRequest struct {
	InstanceIDs []string `json:"instance_ids"`
}

// ---- the provider

func (p *Provider) CheckCredentials(ctx context.Context) error {
	var keys []sshKey
	return p.api.Do(ctx, "check credentials", http.MethodGet, "/ssh-keys", nil, &keys)
}

func (p *Provider) Create(ctx context.Context, spec provider.CreateSpec) (provider.Instance, error) {
	const op = "create"
	if err := validName(op, spec.Name); err != nil {
		return provider.Instance{}, err
	}
	if strings.TrimSpace(spec.SSHAuthorizedKey) == "" {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op,
			"Lambda launches need an SSH public key, and the spec of %s has none", spec.Name)
	}
	if spec.Spot {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "Lambda Cloud has no spot instances; drop --spot")
	}
	if spec.Zone != "" {
		return provider.Instance{}, provider.Errorf(errkind.Invalid, Name, op, "Lambda Cloud has regions but no zones; drop the zone %q", spec.Zone)
	}
	user := spec.SSHUser
	if user == "" {
		user = DefaultSSHUser
	}
	// Idempotency first: the instance may exist from an earlier attempt
	// whose reply was lost.
	if in, ok, err := p.findByName(ctx, op, spec.Name, false); err != nil {
		return provider.Instance{}, err
	} else if ok {
		return p.instance(in, user), nil
	}
	typeName, regionName, err := p.placement(ctx, op, spec)
	if err != nil {
		return provider.Instance{}, err
	}
	keyName, err := p.ensureSSHKey(ctx, op, spec.SSHAuthorizedKey)
	if err != nil {
		return provider.Instance{}, err
	}
	req := launchRequest{
		RegionName: regionName, InstanceTypeName: typeName, SSHKeyNames: []string{keyName},
		Quantity: 1, Name: spec.Name,
		UserData: userdata.CloudConfig(user, DefaultSSHUser, spec.SSHAuthorizedKey, spec.HostKey),
	}
	image := spec.Image
	if image == "" {
		image = p.opts.image
	}
	if image != "" {
		req.Image = &imageSpec{Family: image}
	}
	var launched struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	if err := p.api.Do(ctx, op, http.MethodPost, "/instance-operations/launch", req, &launched); err != nil {
		return provider.Instance{}, err
	}
	if len(launched.InstanceIDs) != 1 {
		// The spec warns fewer than asked may launch; with quantity 1
		// that means none, and capacity is the usual reason.
		return provider.Instance{}, provider.Errorf(errkind.Capacity, Name, op,
			"launch of %s in %s returned %d instance ids, want 1", typeName, regionName, len(launched.InstanceIDs))
	}
	// The id of the launch reply is the instance: whatever a later reply
	// calls it, the host keeps this id and its own name.
	id := launched.InstanceIDs[0]
	in, err := p.get(ctx, op, id)
	if err != nil || in.ID != id {
		// The VM exists; a later Status finds it by this id.
		return provider.Instance{
			ID: id, Name: spec.Name, HostID: provider.HostIDFromName(spec.Name), Region: regionName,
			State: provider.StatePending, SSHUser: user, SSHPort: 22, Labels: p.labels(spec.Name),
			Meta: map[string]string{"instance_type": typeName, "ssh_key": keyName, "ssh_user": user},
		}, nil
	}
	return p.instanceNamed(in, spec.Name, user), nil
}

// placement picks the instance type and region for spec: the ones it
// names, else the configured default region, else the cheapest type with
// the GPU it asks for and capacity somewhere.
func (p *Provider) placement(ctx context.Context, op string, spec provider.CreateSpec) (string, string, error) {
	typeName, regionName := spec.MachineType, spec.Region
	if regionName == "" {
		regionName = p.opts.region
	}
	if typeName != "" && regionName != "" {
		return typeName, regionName, nil // launch validates both
	}
	types, err := p.instanceTypes(ctx, op)
	if err != nil {
		return "", "", err
	}
	rep, _, err := normalize(types, p.opts.regions, regionName)
	if err != nil {
		return "", "", err
	}
	rows := rep.Entries
	var best *provider.CatalogEntry
	for i := range rows {
		r := &rows[i]
		switch {
		case !r.Available:
		case typeName != "" && r.InstanceType != typeName:
		case typeName == "" && spec.GPUModel != "" && r.GPUModel != strings.ToLower(spec.GPUModel):
		case typeName == "" && r.GPUCount < spec.GPUCount:
		case regionName != "" && r.Region != regionName:
		case best == nil || r.HourlyPrice < best.HourlyPrice:
			best = r
		}
	}
	if best == nil {
		what := typeName
		if what == "" {
			what = "an instance type"
			if spec.GPUModel != "" {
				what = fmt.Sprintf("an instance type with %s GPUs", strings.ToLower(spec.GPUModel))
			}
		}
		where := "any region"
		if regionName != "" {
			where = regionName
		}
		return "", "", provider.Errorf(errkind.Capacity, Name, op, "Lambda has no capacity for %s in %s right now", what, where)
	}
	return best.InstanceType, best.Region, nil
}

func (p *Provider) Start(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	const op = "start"
	in, err := p.lookup(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	switch in.Status {
	case "unhealthy":
		// The closest Lambda has to starting: reboot the instance.
		var out struct {
			Restarted []instance `json:"restarted_instances"`
		}
		if err := p.api.Do(ctx, op, http.MethodPost, "/instance-operations/restart", idsRequest{InstanceIDs: []string{in.ID}}, &out); err != nil {
			return provider.Instance{}, err
		}
		return p.status(ctx, op, ref)
	case "terminating":
		return provider.Instance{}, provider.Errorf(errkind.NotFound, Name, op, "instance %s is being terminated", in.ID)
	}
	return p.instanceNamed(in, refName(ref), ref.Meta["ssh_user"]), nil // booting or active: already started
}

// Stop is refused: Lambda bills an instance until it is terminated.
func (p *Provider) Stop(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	return provider.Instance{}, provider.Errorf(errkind.Refused, Name, "stop",
		"Lambda Cloud cannot stop an instance (it is billed until terminated); deprovision it with `cocalc-hosts stop --deprovision` or delete it")
}

// Delete terminates the instance. Lambda keeps no disk after that, so
// keepDisk changes nothing (Capabilities().PersistentDisk is false).
func (p *Provider) Delete(ctx context.Context, ref provider.Ref, keepDisk bool) error {
	const op = "delete"
	in, err := p.lookup(ctx, op, ref)
	if err != nil {
		return err
	}
	if in.Status == "terminating" {
		return nil
	}
	var out struct {
		Terminated []instance `json:"terminated_instances"`
	}
	return p.api.Do(ctx, op, http.MethodPost, "/instance-operations/terminate", idsRequest{InstanceIDs: []string{in.ID}}, &out)
}

func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Instance, error) {
	return p.status(ctx, "status", ref)
}

func (p *Provider) status(ctx context.Context, op string, ref provider.Ref) (provider.Instance, error) {
	in, err := p.lookup(ctx, op, ref)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instanceNamed(in, refName(ref), ref.Meta["ssh_user"]), nil
}

// List returns this deployment's instances that are not terminated.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	all, err := p.list(ctx, "list")
	if err != nil {
		return nil, err
	}
	var out []provider.Instance
	for _, in := range all {
		if p.ours(in) && in.Status != "terminated" {
			out = append(out, p.instance(in, ""))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ---- helpers

// lookup finds the live instance ref points at: by id when known (the
// id came from our own launch reply, so the instance is ours whatever
// name a reply gives it, as long as it carries this deployment's SSH
// key), else by name. A terminated instance counts as missing.
func (p *Provider) lookup(ctx context.Context, op string, ref provider.Ref) (instance, error) {
	name := refName(ref)
	if ref.InstanceID != "" {
		in, err := p.get(ctx, op, ref.InstanceID)
		if err != nil {
			return instance{}, err
		}
		switch {
		case in.Status == "terminated":
			return instance{}, provider.Errorf(errkind.NotFound, Name, op, "instance %s of %s is terminated", ref.InstanceID, name)
		case !p.ourKey(in):
			return instance{}, provider.Errorf(errkind.NotFound, Name, op, "instance %s (for %s) carries none of this deployment's SSH keys", ref.InstanceID, name)
		}
		return in, nil
	}
	if err := validName(op, name); err != nil {
		return instance{}, err
	}
	in, ok, err := p.findByName(ctx, op, name, true)
	if err != nil {
		return instance{}, err
	}
	if !ok {
		return instance{}, provider.Errorf(errkind.NotFound, Name, op, "no instance named %s", name)
	}
	return in, nil
}

// findByName finds our live instance called name, preferring one that
// is not being terminated. Create passes withTerminating=false: an
// instance on its way out is no reason not to launch its successor.
func (p *Provider) findByName(ctx context.Context, op, name string, withTerminating bool) (instance, bool, error) {
	all, err := p.list(ctx, op)
	if err != nil {
		return instance{}, false, err
	}
	var dying *instance
	for i, in := range all {
		if in.name() != name || in.Status == "terminated" || !p.ours(in) {
			continue
		}
		if in.Status != "terminating" {
			return in, true, nil
		}
		dying = &all[i]
	}
	if dying != nil && withTerminating {
		return *dying, true, nil
	}
	return instance{}, false, nil
}

func (p *Provider) list(ctx context.Context, op string) ([]instance, error) {
	var all []instance
	if err := p.api.Do(ctx, op, http.MethodGet, "/instances", nil, &all); err != nil {
		return nil, err
	}
	return all, nil
}

func (p *Provider) get(ctx context.Context, op, id string) (instance, error) {
	var in instance
	if err := p.api.Do(ctx, op, http.MethodGet, "/instances/"+url.PathEscape(id), nil, &in); err != nil {
		return instance{}, err
	}
	return in, nil
}

// ours reports whether in was made by this deployment: our name scheme
// and our deployment's SSH key.
func (p *Provider) ours(in instance) bool {
	return provider.HostIDFromName(in.name()) != "" && p.ourKey(in)
}

// ourKey reports whether in carries one of this deployment's SSH keys.
func (p *Provider) ourKey(in instance) bool {
	prefix := p.keyPrefix()
	for _, k := range in.SSHKeyNames {
		if rest, ok := strings.CutPrefix(k, prefix); ok && fingerprintRE().MatchString(rest) {
			return true
		}
	}
	return false
}

var fingerprintRE = lazyre.New(`^[0-9a-f]{8}$`)

// keyPrefix starts the names of this deployment's SSH keys. Key names
// are at most 64 characters; long or unusual deployment names are
// shortened with a hash so the prefix stays unique.
func (p *Provider) keyPrefix() string {
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

// keyName is the name under which pub is registered for this deployment.
func (p *Provider) keyName(pub string) string {
	h := sha256.Sum256([]byte(strings.TrimSpace(pub)))
	return p.keyPrefix() + hex.EncodeToString(h[:4])
}

// ensureSSHKey registers pub under this deployment's name for it, once.
func (p *Provider) ensureSSHKey(ctx context.Context, op, pub string) (string, error) {
	pub = strings.TrimSpace(pub)
	name := p.keyName(pub)
	find := func() (bool, error) {
		var keys []sshKey
		if err := p.api.Do(ctx, op, http.MethodGet, "/ssh-keys", nil, &keys); err != nil {
			return false, err
		}
		for _, k := range keys {
			if k.Name == name {
				if strings.TrimSpace(k.PublicKey) != pub {
					return false, provider.Errorf(errkind.Invalid, Name, op,
						"the SSH key %s registered at Lambda holds another public key; delete it in the Lambda dashboard", name)
				}
				return true, nil
			}
		}
		return false, nil
	}
	if ok, err := find(); err != nil || ok {
		return name, err
	}
	var added sshKey
	add := struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}{name, pub}
	err := p.api.Do(ctx, op, http.MethodPost, "/ssh-keys", add, &added)
	if err != nil && errkind.Of(err) == errkind.Invalid {
		// Another worker may have added it a moment ago.
		if ok, ferr := find(); ferr == nil && ok {
			return name, nil
		}
	}
	return name, err
}

// instanceNamed is instance for the host whose instance is called name
// (empty: as the reply says): the name and host id are ours, not the
// reply's.
func (p *Provider) instanceNamed(in instance, name, user string) provider.Instance {
	out := p.instance(in, user)
	if name != "" {
		out.Name, out.HostID, out.Labels = name, provider.HostIDFromName(name), p.labels(name)
	}
	return out
}

// instance converts in to the provider's view. user is the login user
// when the caller knows it (Lambda does not report it).
func (p *Provider) instance(in instance, user string) provider.Instance {
	if user == "" {
		user = DefaultSSHUser
	}
	out := provider.Instance{
		ID: in.ID, Name: in.name(), HostID: provider.HostIDFromName(in.name()),
		State: mapStatus(in.Status), PublicIP: deref(in.IP), PrivateIP: deref(in.PrivateIP),
		SSHUser: user, SSHPort: 22, Labels: p.labels(in.name()),
		Meta: map[string]string{"status": in.Status, "ssh_user": user},
	}
	if in.Region != nil {
		out.Region = in.Region.Name
	}
	if in.InstanceType != nil {
		out.Meta["instance_type"] = in.InstanceType.Name
	}
	if len(in.SSHKeyNames) > 0 {
		out.Meta["ssh_key"] = in.SSHKeyNames[0]
	}
	if h := deref(in.Hostname); h != "" {
		out.Meta["hostname"] = h
	}
	return out
}

// labels are what a labelled cloud would carry: Lambda has none, so they
// are derived from the name and the deployment key that List matched.
func (p *Provider) labels(name string) map[string]string {
	return map[string]string{provider.LabelDeployment: p.deployment, provider.LabelHost: provider.HostIDFromName(name)}
}

// mapStatus maps Lambda's instance status to ours. Lambda has no stopped
// state; "unhealthy" needs a restart, which Start does.
func mapStatus(s string) provider.State {
	switch s {
	case "booting":
		return provider.StatePending
	case "active":
		return provider.StateRunning
	case "terminating":
		return provider.StateTerminating
	case "terminated":
		return provider.StateTerminated
	default: // "unhealthy" and anything newer than this code
		return provider.StateError
	}
}

// instance names: Lambda allows 1-64 characters; ours come from
// InstanceName and are checked here so a bad ref fails before any call.
// Lengths are checked apart: a counted repetition such as {0,62}
// compiles into that many copies at every command's start-up.
var nameRE = lazyre.New(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

func validName(op, name string) error {
	if len(name) > 64 || !nameRE().MatchString(name) {
		return provider.Errorf(errkind.Invalid, Name, op,
			"invalid instance name %q: use 1-64 lowercase letters, digits and hyphens, starting with a letter", name)
	}
	return nil
}

func refName(ref provider.Ref) string {
	if ref.Name == "" && ref.HostID != "" {
		return provider.InstanceName(ref.HostID)
	}
	return ref.Name
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
