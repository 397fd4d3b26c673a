// Package hyperstackfake is an in-process fake of the Hyperstack (NexGen
// Infrahub) API v1, for tests of the hyperstack provider and of anything
// that drives it. It follows the published OpenAPI spec (paths, the
// api_key header, {"status", "message", ...} replies, the bare pricebook
// array, GET for VM actions) and is stateful: VMs go CREATING → BUILD →
// ACTIVE, HIBERNATING → HIBERNATED, RESTORING → ACTIVE, STOPPING →
// SHUTOFF, STARTING → ACTIVE and DELETING → gone over configurable times,
// computed from timestamps on each request. Volumes are created, become
// available, are attached (in-use) and are detached when their VM goes.
//
// Tests inject faults (5xx, 429 with Retry-After, hangs, capacity errors,
// errors after the request took effect) with InjectFault and inspect the
// state with VMs, Volumes, CountByName and Requests.
package hyperstackfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider/fakeapi"
)

// BasePath is where the API lives on the fake's server.
const BasePath = "/v1"

// FaultHeader marks replies made by an injected fault.
const FaultHeader = fakeapi.FaultHeader

// DefaultAPIKey is the key the fake accepts unless Options.APIKey says
// otherwise.
const DefaultAPIKey = "fake-hyperstack-key"

// URL is the API base URL of a fake served at serverURL.
func URL(serverURL string) string { return strings.TrimRight(serverURL, "/") + BasePath }

// Options shape a fake. Zero durations make transitions immediate.
type Options struct {
	APIKey string
	// BootTime is CREATING+BUILD, and STARTING or RESTORING, each.
	BootTime time.Duration
	// StopTime is HIBERNATING or STOPPING.
	StopTime time.Duration
	// DeleteTime is DELETING.
	DeleteTime time.Duration
	// VolumeTime is how long a new volume is "creating".
	VolumeTime time.Duration
	// MaxPageSize caps list pages (default 100), to exercise paging.
	MaxPageSize int
	// Flavors and Prices are the catalog; nil means the defaults.
	Flavors []Flavor
	Prices  []Price
	// Images available in every region; nil means DefaultImages().
	Images []string
	Now    func() time.Time
}

// Flavor is one flavor in one region.
type Flavor struct {
	Name, Region, GPU string
	CPU               int
	RAM               float64
	Disk, Ephemeral   int
	GPUCount          int
	Stock             bool
	// NoHibernate marks flavors that cannot hibernate (some CPU ones).
	NoHibernate bool
}

// Price is one pricebook entry.
type Price struct {
	Name  string
	Value float64
}

// DefaultFlavors is a catalog shaped like Hyperstack's.
func DefaultFlavors() []Flavor {
	return []Flavor{
		{Name: "n3-A100x1", Region: "CANADA-1", GPU: "A100-80G-PCIe", CPU: 28, RAM: 120, Disk: 100, Ephemeral: 750, GPUCount: 1, Stock: true},
		{Name: "n3-A100x2", Region: "CANADA-1", GPU: "A100-80G-PCIe", CPU: 60, RAM: 240, Disk: 100, Ephemeral: 1500, GPUCount: 2, Stock: true},
		{Name: "n3-A100x1-k8s", Region: "CANADA-1", GPU: "A100-80G-PCIe", CPU: 28, RAM: 120, Disk: 100, Ephemeral: 750, GPUCount: 1, Stock: true},
		{Name: "n3-H100x1", Region: "CANADA-1", GPU: "H100-80G-PCIe", CPU: 28, RAM: 180, Disk: 100, Ephemeral: 750, GPUCount: 1, Stock: false},
		{Name: "n3-L40x1", Region: "CANADA-1", GPU: "L40", CPU: 28, RAM: 58, Disk: 100, Ephemeral: 725, GPUCount: 1, Stock: true},
		{Name: "n1-cpu-small", Region: "CANADA-1", CPU: 4, RAM: 4, Disk: 100, Stock: true, NoHibernate: true},
		{Name: "n1-cpu-large", Region: "CANADA-1", CPU: 16, RAM: 32, Disk: 100, Stock: true},
		{Name: "n3-RTX-A6000x1", Region: "NORWAY-1", GPU: "RTX-A6000", CPU: 28, RAM: 58, Disk: 100, Ephemeral: 725, GPUCount: 1, Stock: true},
		{Name: "n3-A100x1", Region: "NORWAY-1", GPU: "A100-80G-PCIe", CPU: 28, RAM: 120, Disk: 100, Ephemeral: 750, GPUCount: 1, Stock: false},
	}
}

// DefaultPrices is a pricebook shaped like Hyperstack's (USD per hour,
// per GPU for GPU names). Volumes are priced per GB-hour under the
// volume type's name ("Cloud-SSD", 0.000096 ≈ 0.07 per GB-month, the
// published rate); that naming is our reading of the pricebook.
func DefaultPrices() []Price {
	return []Price{
		{"A100-80G-PCIe", 1.35}, {"H100-80G-PCIe", 1.90}, {"L40", 1.00}, {"RTX-A6000", 0.50},
		{"vCPU (cpu-only-flavors)", 0.01}, {"RAM (cpu-only-flavors)", 0.0025},
		{"Cloud-SSD", 0.000096}, {"PublicIP", 0.00672},
	}
}

// DefaultImages are the OS images of every region.
func DefaultImages() []string {
	return []string{"Ubuntu Server 22.04 LTS", "Ubuntu Server 22.04 LTS R535 CUDA 12.2"}
}

// Fault is an injected failure; the first fault matching a request is
// used and its count decremented.
type Fault struct {
	// Method and Path select requests; Path is the route below /v1 as the
	// spec writes it ("/core/virtual-machines/{vm_id}/hibernate"). Empty
	// matches any.
	Method, Path string
	Status       int    // default 500
	Message      string // default "injected fault"
	Reason       string // error_reason
	RetryAfter   string
	Hang         time.Duration
	AfterEffect  bool
	Times        int
}

// VM is the fake's record of a virtual machine.
type VM struct {
	ID          int
	Name        string
	Environment string
	Region      string
	Flavor      string
	Image       string
	KeyName     string
	UserData    string
	Rules       []SecurityRule
	FixedIP     string
	FloatingIP  string // empty when released
	wantIP      bool
	CreatedAt   time.Time
	status      string // current (transitional) status
	target      string // status after until; "" means deleted
	since       time.Time
	until       time.Time
	Hibernated  int
	Restored    int
}

// SecurityRule is one inbound or outbound rule of a VM.
type SecurityRule struct {
	Direction, Ethertype, Protocol, RemoteIPPrefix string
	PortRangeMin, PortRangeMax                     int
}

// Volume is the fake's record of a volume.
type Volume struct {
	ID          int
	Name        string
	Environment string
	Region      string
	Size        int
	Type        string
	Description string
	readyAt     time.Time
	AttachedTo  int // VM id, 0 when available
	Device      string
	CreatedAt   time.Time
}

type environment struct {
	ID        int
	Name      string
	Region    string
	CreatedAt time.Time
}

type keypair struct {
	ID        int
	Name      string
	Env       string
	PublicKey string
	CreatedAt time.Time
}

// Fake is the fake API; it is an http.Handler.
type Fake struct {
	o   Options
	api *fakeapi.Router[Fault]

	mu       sync.Mutex
	flavors  []Flavor
	prices   []Price
	envs     []*environment
	keypairs []*keypair
	vms      []*VM
	volumes  []*Volume
	nextID   int
	ipSeq    int
	created  map[string]int // VM name → VMs ever created with it
}

// New makes a fake with o.
func New(o Options) *Fake {
	if o.APIKey == "" {
		o.APIKey = DefaultAPIKey
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPageSize <= 0 {
		o.MaxPageSize = 100
	}
	if o.Images == nil {
		o.Images = DefaultImages()
	}
	fl, pr := o.Flavors, o.Prices
	if fl == nil {
		fl = DefaultFlavors()
	}
	if pr == nil {
		pr = DefaultPrices()
	}
	f := &Fake{o: o, flavors: append([]Flavor(nil), fl...), prices: append([]Price(nil), pr...),
		nextID: 100, created: map[string]int{}}
	f.api = fakeapi.NewRouter(BasePath,
		func(r *http.Request) bool { return r.Header.Get("api_key") == f.o.APIKey },
		func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "Invalid API key")
		},
		func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
		},
		serveFault)
	f.route("GET /core/environments", f.listEnvs)
	f.route("POST /core/environments", f.createEnv)
	f.route("GET /core/keypairs", f.listKeypairs)
	f.route("POST /core/keypairs", f.createKeypair)
	f.route("DELETE /core/keypair/{id}", f.deleteKeypair)
	f.route("GET /core/flavors", f.listFlavors)
	f.route("GET /pricebook", f.pricebook)
	f.route("GET /core/virtual-machines", f.listVMs)
	f.route("POST /core/virtual-machines", f.createVM)
	f.route("GET /core/virtual-machines/{vm_id}", f.getVM)
	f.route("DELETE /core/virtual-machines/{vm_id}", f.deleteVM)
	for _, a := range []string{"start", "stop", "hibernate", "hibernate-restore", "hard-reboot"} {
		f.route("GET /core/virtual-machines/{vm_id}/"+a, f.vmAction(a))
	}
	f.route("POST /core/virtual-machines/{vm_id}/sg-rules", f.addRule)
	f.route("POST /core/virtual-machines/{vm_id}/attach-volumes", f.attachVolumes)
	f.route("POST /core/virtual-machines/{vm_id}/detach-volumes", f.detachVolumes)
	f.route("GET /core/volumes", f.listVolumes)
	f.route("POST /core/volumes", f.createVolume)
	f.route("GET /core/volumes/{volume_id}", f.getVolume)
	f.route("DELETE /core/volumes/{volume_id}", f.deleteVolume)
	return f
}

// Start serves a new fake on a loopback httptest server; the caller
// closes the server.
func Start(o Options) (*Fake, *httptest.Server) {
	f := New(o)
	return f, httptest.NewServer(f)
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.api.ServeHTTP(w, r) }

// route registers h for "METHOD /path" below BasePath.
func (f *Fake) route(pattern string, h http.HandlerFunc) { f.api.Handle(pattern, h) }

// serveFault replies with an injected fault in Hyperstack's error format.
func serveFault(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, fault Fault) {
	failure := fakeapi.Failure{Status: fault.Status, RetryAfter: fault.RetryAfter, Hang: fault.Hang, AfterEffect: fault.AfterEffect}
	fakeapi.Serve(w, r, h, failure, func(w http.ResponseWriter, status int) {
		msg := fault.Message
		if msg == "" {
			msg = fmt.Sprintf("injected fault (HTTP %d)", status)
		}
		writeError(w, status, fault.Reason, msg)
	})
}

// InjectFault adds a fault for the next matching requests.
func (f *Fake) InjectFault(ft Fault) { f.api.Inject(ft.Method, ft.Path, ft.Times, ft) }

// SetStock sets whether flavor name is in stock in region.
func (f *Fake) SetStock(name, region string, stock bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.flavors {
		if f.flavors[i].Name == name && f.flavors[i].Region == region {
			f.flavors[i].Stock = stock
		}
	}
}

// Requests counts the requests served for a route ("GET
// /core/virtual-machines/{vm_id}/hibernate"), faults included.
func (f *Fake) Requests(pattern string) int { return f.api.Requests(pattern) }

// VMs returns copies of the VM records that still exist.
func (f *Fake) VMs() []VM {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	out := make([]VM, 0, len(f.vms))
	for _, v := range f.vms {
		c := *v
		c.status = f.statusOf(v)
		out = append(out, c)
	}
	return out
}

// Status is the status a VM record had when VMs copied it.
func (v VM) Status() string { return v.status }

// Volumes returns copies of the volume records.
func (f *Fake) Volumes() []Volume {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	out := make([]Volume, 0, len(f.volumes))
	for _, v := range f.volumes {
		out = append(out, *v)
	}
	return out
}

// Environments lists the environments' names.
func (f *Fake) Environments() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.envs {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}

// Keypairs lists "environment/name" of every key pair.
func (f *Fake) Keypairs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, k := range f.keypairs {
		out = append(out, k.Env+"/"+k.Name)
	}
	sort.Strings(out)
	return out
}

// CountByName counts the VMs named name that exist and are not being
// deleted: more than one means a client made a duplicate.
func (f *Fake) CountByName(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	n := 0
	for _, v := range f.vms {
		if v.Name == name && f.statusOf(v) != "DELETING" {
			n++
		}
	}
	return n
}

// Creations counts the VMs ever created with name.
func (f *Fake) Creations(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created[name]
}

// SetStatus forces a VM into a stable status (SHUTOFF or ERROR, as an
// operator or a failure outside this program would).
func (f *Fake) SetStatus(id int, status string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.vm(id)
	if v == nil {
		return false
	}
	f.transition(v, status, status, 0)
	return true
}

// AddForeignVM records an ACTIVE VM in an environment of its own (made
// by someone else), which List must not return.
func (f *Fake) AddForeignVM(env, region, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.env(env) == nil {
		f.envs = append(f.envs, &environment{ID: f.id(), Name: env, Region: region, CreatedAt: f.o.Now()})
	}
	v := &VM{ID: f.id(), Name: name, Environment: env, Region: region, Flavor: "n1-cpu-small", Image: f.o.Images[0], CreatedAt: f.o.Now(), wantIP: true}
	v.FixedIP = fmt.Sprintf("10.0.%d.%d", v.ID/250, v.ID%250+1)
	f.transition(v, "ACTIVE", "ACTIVE", 0)
	f.vms = append(f.vms, v)
	return v.ID
}

// ---- state (callers hold f.mu)

func (f *Fake) id() int { f.nextID++; return f.nextID }

func (f *Fake) transition(v *VM, status, target string, d time.Duration) {
	now := f.o.Now()
	v.status, v.target, v.since, v.until = status, target, now, now.Add(d)
}

// statusOf is v's status now; "" means deleted.
func (f *Fake) statusOf(v *VM) string {
	now := f.o.Now()
	if now.Before(v.until) {
		if v.status == "CREATING" && now.Sub(v.since) >= v.until.Sub(v.since)/2 {
			return "BUILD"
		}
		return v.status
	}
	return v.target
}

// expire removes deleted VMs, detaching their volumes.
func (f *Fake) expire() {
	kept := f.vms[:0]
	for _, v := range f.vms {
		if f.statusOf(v) != "" {
			kept = append(kept, v)
			continue
		}
		for _, vol := range f.volumes {
			if vol.AttachedTo == v.ID {
				vol.AttachedTo, vol.Device = 0, ""
			}
		}
	}
	f.vms = kept
}

func (f *Fake) vm(id int) *VM {
	for _, v := range f.vms {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (f *Fake) env(name string) *environment {
	for _, e := range f.envs {
		if e.Name == name {
			return e
		}
	}
	return nil
}

func (f *Fake) flavor(name, region string) *Flavor {
	for i := range f.flavors {
		if f.flavors[i].Name == name && f.flavors[i].Region == region {
			return &f.flavors[i]
		}
	}
	return nil
}

func (f *Fake) regions() map[string]bool {
	out := map[string]bool{}
	for _, fl := range f.flavors {
		out[fl.Region] = true
	}
	return out
}

func volStatus(v *Volume, now time.Time) string {
	switch {
	case now.Before(v.readyAt):
		return "creating"
	case v.AttachedTo != 0:
		return "in-use"
	}
	return "available"
}

// ---- handlers: environments and key pairs

func (f *Fake) listEnvs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	search := r.URL.Query().Get("search")
	var items []any
	for _, e := range f.envs {
		if search == "" || strings.Contains(e.Name, search) || strings.Contains(e.Region, search) || strconv.Itoa(e.ID) == search {
			items = append(items, envJSON(e))
		}
	}
	f.writePage(w, r, "environments", items)
}

func (f *Fake) createEnv(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	}
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case req.Name == "" || req.Region == "":
		writeError(w, http.StatusBadRequest, "bad_request", "name and region are required")
	case !f.regions()[req.Region]:
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("region %s does not exist", req.Region))
	case f.env(req.Name) != nil:
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("environment %s already exists", req.Name))
	default:
		e := &environment{ID: f.id(), Name: req.Name, Region: req.Region, CreatedAt: f.o.Now()}
		f.envs = append(f.envs, e)
		writeOK(w, map[string]any{"message": "Environment created", "environment": envJSON(e)})
	}
}

func (f *Fake) listKeypairs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	search := r.URL.Query().Get("search")
	var items []any
	for _, k := range f.keypairs {
		if search == "" || strings.Contains(k.Name, search) {
			items = append(items, f.keypairJSON(k))
		}
	}
	f.writePage(w, r, "keypairs", items)
}

func (f *Fake) createKeypair(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name            string `json:"name"`
		EnvironmentName string `json:"environment_name"`
		PublicKey       string `json:"public_key"`
	}
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Name == "" || req.PublicKey == "" || !strings.HasPrefix(req.PublicKey, "ssh-") && !strings.HasPrefix(req.PublicKey, "ecdsa-") {
		writeError(w, http.StatusBadRequest, "bad_request", "name and a valid public_key are required")
		return
	}
	if f.env(req.EnvironmentName) == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("environment %s does not exist", req.EnvironmentName))
		return
	}
	for _, k := range f.keypairs {
		if k.Name == req.Name && k.Env == req.EnvironmentName {
			writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("key pair %s already exists", req.Name))
			return
		}
	}
	k := &keypair{ID: f.id(), Name: req.Name, Env: req.EnvironmentName, PublicKey: req.PublicKey, CreatedAt: f.o.Now()}
	f.keypairs = append(f.keypairs, k)
	writeOK(w, map[string]any{"message": "Key pair imported", "keypair": f.keypairJSON(k)})
}

func (f *Fake) deleteKeypair(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, _ := strconv.Atoi(r.PathValue("id"))
	for i, k := range f.keypairs {
		if k.ID == id {
			f.keypairs = append(f.keypairs[:i], f.keypairs[i+1:]...)
			writeOK(w, map[string]any{"message": "Key pair deleted"})
			return
		}
	}
	writeError(w, http.StatusNotFound, "not_found", "key pair does not exist")
}

// ---- handlers: catalog

func (f *Fake) listFlavors(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	region := r.URL.Query().Get("region")
	type key struct{ gpu, region string }
	groups := map[key][]any{}
	var order []key
	for i, fl := range f.flavors {
		if region != "" && fl.Region != region {
			continue
		}
		k := key{fl.GPU, fl.Region}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], map[string]any{
			"id": i + 1, "name": fl.Name, "display_name": fl.Name, "region_name": fl.Region, "cpu": fl.CPU, "ram": fl.RAM,
			"disk": fl.Disk, "ephemeral": fl.Ephemeral, "gpu": fl.GPU, "gpu_count": fl.GPUCount,
			"stock_available": fl.Stock, "created_at": "2024-01-01T00:00:00Z", "labels": []any{}, "features": map[string]any{},
		})
	}
	data := []any{}
	for _, k := range order {
		data = append(data, map[string]any{"gpu": k.gpu, "region_name": k.region, "flavors": groups[k]})
	}
	writeOK(w, map[string]any{"message": "Success", "data": data})
}

func (f *Fake) pricebook(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []any{}
	for i, p := range f.prices {
		out = append(out, map[string]any{"id": i + 1, "name": p.Name, "value": p.Value, "original_value": p.Value, "discount_applied": false})
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- handlers: virtual machines

func (f *Fake) listVMs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	q := r.URL.Query()
	search, env := q.Get("search"), q.Get("environment")
	exact := q.Get("exact_environment_match") == "true"
	var items []any
	for _, v := range f.vms {
		if search != "" && !strings.Contains(v.Name, search) && strconv.Itoa(v.ID) != search {
			continue
		}
		if env != "" && ((exact && v.Environment != env) || (!exact && !strings.Contains(v.Environment, env))) {
			continue
		}
		items = append(items, f.vmJSON(v))
	}
	f.writePage(w, r, "instances", items)
}

func (f *Fake) getVM(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.pathVM(w, r)
	if v == nil {
		return
	}
	writeOK(w, map[string]any{"message": "Success", "instance": f.vmJSON(v)})
}

func (f *Fake) pathVM(w http.ResponseWriter, r *http.Request) *VM {
	f.expire()
	id, err := strconv.Atoi(r.PathValue("vm_id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "vm_id must be an integer")
		return nil
	}
	v := f.vm(id)
	if v == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("Virtual machine %d not found", id))
	}
	return v
}

type createVMRequest struct {
	Name                    string        `json:"name"`
	EnvironmentName         string        `json:"environment_name"`
	ImageName               string        `json:"image_name"`
	VolumeName              string        `json:"volume_name"`
	FlavorName              string        `json:"flavor_name"`
	KeyName                 string        `json:"key_name"`
	Count                   int           `json:"count"`
	AssignFloatingIP        bool          `json:"assign_floating_ip"`
	CreateBootableVolume    bool          `json:"create_bootable_volume"`
	EnablePortRandomization *bool         `json:"enable_port_randomization"`
	UserData                string        `json:"user_data"`
	CallbackURL             string        `json:"callback_url"`
	Labels                  []string      `json:"labels"`
	SecurityRules           []ruleRequest `json:"security_rules"`
}

// ruleRequest is the spec's Create_Security_Rule_Payload, used both in a
// create request and on its own.
type ruleRequest struct {
	Direction        string `json:"direction"`
	Ethertype        string `json:"ethertype"`
	Protocol         string `json:"protocol"`
	RemoteIPPrefix   string `json:"remote_ip_prefix"`
	PortRangeMin     int    `json:"port_range_min"`
	PortRangeMax     int    `json:"port_range_max"`
	VirtualMachineID *int   `json:"virtual_machine_id"`
}

// check says what is wrong with a rule, as a server validating by the
// spec would: virtual_machine_id is required, so a rule sent with a
// create request (no VM id yet) is refused.
func (sr ruleRequest) check() string {
	switch {
	case sr.VirtualMachineID == nil:
		return "virtual_machine_id is required (Create_Security_Rule_Payload)"
	case sr.Direction != "ingress" && sr.Direction != "egress":
		return fmt.Sprintf("direction %q is not ingress or egress", sr.Direction)
	case sr.Ethertype != "IPv4" && sr.Ethertype != "IPv6":
		return fmt.Sprintf("ethertype %q is not IPv4 or IPv6", sr.Ethertype)
	case !contains(ruleProtocols, sr.Protocol):
		return fmt.Sprintf("protocol %q is not one of %v", sr.Protocol, ruleProtocols)
	case sr.RemoteIPPrefix == "":
		return "remote_ip_prefix is required"
	case sr.PortRangeMin > sr.PortRangeMax:
		return fmt.Sprintf("port_range_min %d is above port_range_max %d", sr.PortRangeMin, sr.PortRangeMax)
	}
	return ""
}

// ruleProtocols is the spec's enum of rule protocols.
var ruleProtocols = []string{"any", "ah", "dccp", "egp", "esp", "gre", "hopopt", "icmp", "igmp", "ip", "ipip", "ipv6-encap",
	"ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route", "ospf", "pgm", "rsvp", "sctp", "tcp", "udp", "udplite", "vrrp"}

func (f *Fake) createVM(w http.ResponseWriter, r *http.Request) {
	var req createVMRequest
	if !decode(w, r, &req) {
		return
	}
	bad := func(format string, args ...any) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...))
	}
	switch {
	case req.Name == "" || req.EnvironmentName == "" || req.FlavorName == "" || req.KeyName == "":
		bad("name, environment_name, flavor_name and key_name are required")
		return
	case req.Count != 1:
		bad("the fake creates one VM at a time; count must be 1")
		return
	case req.ImageName == "" && req.VolumeName == "":
		bad("either image_name or a bootable volume_name is required")
		return
	}
	for i, sr := range req.SecurityRules {
		if why := sr.check(); why != "" {
			bad("security_rules[%d]: %s", i, why)
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.env(req.EnvironmentName)
	if e == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("environment %s does not exist", req.EnvironmentName))
		return
	}
	fl := f.flavor(req.FlavorName, e.Region)
	if fl == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("flavor %s does not exist in %s", req.FlavorName, e.Region))
		return
	}
	if req.ImageName != "" && !contains(f.o.Images, req.ImageName) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("image %s does not exist in %s", req.ImageName, e.Region))
		return
	}
	found := false
	for _, k := range f.keypairs {
		found = found || (k.Name == req.KeyName && k.Env == e.Name)
	}
	if !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("key pair %s does not exist in %s", req.KeyName, e.Name))
		return
	}
	if !fl.Stock {
		bad("Insufficient stock for flavor %s in %s", fl.Name, e.Region)
		return
	}
	v := &VM{ID: f.id(), Name: req.Name, Environment: e.Name, Region: e.Region, Flavor: fl.Name, Image: req.ImageName,
		KeyName: req.KeyName, UserData: req.UserData, CreatedAt: f.o.Now(), wantIP: req.AssignFloatingIP}
	for _, sr := range req.SecurityRules {
		v.Rules = append(v.Rules, SecurityRule{sr.Direction, sr.Ethertype, sr.Protocol, sr.RemoteIPPrefix, sr.PortRangeMin, sr.PortRangeMax})
	}
	v.FixedIP = fmt.Sprintf("10.0.%d.%d", v.ID/250, v.ID%250+1)
	f.transition(v, "CREATING", "ACTIVE", f.o.BootTime)
	f.vms = append(f.vms, v)
	f.created[v.Name]++
	writeOK(w, map[string]any{"message": "Virtual machine creation initiated", "instances": []any{f.vmJSON(v)}})
}

// addRule adds a firewall rule to a VM that exists.
func (f *Fake) addRule(w http.ResponseWriter, r *http.Request) {
	var req ruleRequest
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.pathVM(w, r)
	switch {
	case v == nil:
		return
	case req.check() != "":
		writeError(w, http.StatusBadRequest, "bad_request", req.check())
		return
	case *req.VirtualMachineID != v.ID:
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("virtual_machine_id %d is not the VM %d of the path", *req.VirtualMachineID, v.ID))
		return
	case f.statusOf(v) == "DELETING":
		writeError(w, http.StatusConflict, "conflict", "Virtual machine is being deleted")
		return
	}
	v.Rules = append(v.Rules, SecurityRule{req.Direction, req.Ethertype, req.Protocol, req.RemoteIPPrefix, req.PortRangeMin, req.PortRangeMax})
	writeOK(w, map[string]any{"message": "Firewall rule added", "security_rule": map[string]any{
		"id": v.ID*100 + len(v.Rules) - 1, "direction": req.Direction, "ethertype": req.Ethertype, "protocol": req.Protocol,
		"remote_ip_prefix": req.RemoteIPPrefix, "port_range_min": req.PortRangeMin, "port_range_max": req.PortRangeMax,
		"status": "SUCCESS", "created_at": ts(f.o.Now())}})
}

func (f *Fake) deleteVM(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.pathVM(w, r)
	if v == nil {
		return
	}
	if f.statusOf(v) == "DELETING" {
		writeError(w, http.StatusConflict, "conflict", "Virtual machine is already being deleted")
		return
	}
	f.transition(v, "DELETING", "", f.o.DeleteTime)
	f.expire()
	writeOK(w, map[string]any{"message": "Virtual machine deletion initiated"})
}

// vmAction serves the GET state changes, each allowed from one status.
func (f *Fake) vmAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		v := f.pathVM(w, r)
		if v == nil {
			return
		}
		st := f.statusOf(v)
		need := map[string]string{"start": "SHUTOFF", "stop": "ACTIVE", "hibernate": "ACTIVE", "hibernate-restore": "HIBERNATED", "hard-reboot": "ACTIVE"}[action]
		if st != need {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("cannot %s a VM in state %s; it must be %s", action, st, need))
			return
		}
		switch action {
		case "start":
			f.transition(v, "STARTING", "ACTIVE", f.o.BootTime)
		case "stop":
			f.transition(v, "STOPPING", "SHUTOFF", f.o.StopTime)
		case "hard-reboot":
			f.transition(v, "REBOOTING", "ACTIVE", f.o.BootTime)
		case "hibernate":
			if fl := f.flavor(v.Flavor, v.Region); fl != nil && fl.NoHibernate {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("flavor %s does not support hibernation", v.Flavor))
				return
			}
			if r.URL.Query().Get("retain_ip") != "true" {
				v.FloatingIP = ""
			}
			v.Hibernated++
			f.transition(v, "HIBERNATING", "HIBERNATED", f.o.StopTime)
		case "hibernate-restore":
			v.Restored++
			f.transition(v, "RESTORING", "ACTIVE", f.o.BootTime)
		}
		writeOK(w, map[string]any{"message": "Virtual machine " + action + " initiated"})
	}
}

func (f *Fake) attachVolumes(w http.ResponseWriter, r *http.Request) {
	var req struct {
		VolumeIDs []int `json:"volume_ids"`
		Protected bool  `json:"protected"`
	}
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.pathVM(w, r)
	if v == nil {
		return
	}
	if st := f.statusOf(v); st != "ACTIVE" {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("volumes can be attached to an ACTIVE VM, not one in state %s", st))
		return
	}
	now := f.o.Now()
	var vols []*Volume
	for _, id := range req.VolumeIDs {
		var vol *Volume
		for _, x := range f.volumes {
			if x.ID == id {
				vol = x
			}
		}
		switch {
		case vol == nil:
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("volume %d does not exist", id))
			return
		case vol.Environment != v.Environment:
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("volume %d is in another environment", id))
			return
		case volStatus(vol, now) != "available":
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("volume %d is %s, not available", id, volStatus(vol, now)))
			return
		}
		vols = append(vols, vol)
	}
	out := []any{}
	for _, vol := range vols {
		vol.AttachedTo, vol.Device = v.ID, f.nextDevice(v.ID)
		out = append(out, map[string]any{"id": vol.ID + 5000, "instance_id": v.ID, "volume_id": vol.ID, "device": vol.Device,
			"status": "ATTACHED", "protected": req.Protected, "created_at": now.UTC().Format(time.RFC3339)})
	}
	writeOK(w, map[string]any{"message": "Volumes attached", "volume_attachments": out})
}

func (f *Fake) detachVolumes(w http.ResponseWriter, r *http.Request) {
	var req struct {
		VolumeIDs []int `json:"volume_ids"`
	}
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.pathVM(w, r)
	if v == nil {
		return
	}
	out := []any{}
	for _, x := range f.volumes {
		if x.AttachedTo == v.ID && containsInt(req.VolumeIDs, x.ID) {
			out = append(out, map[string]any{"id": x.ID + 5000, "instance_id": v.ID, "volume_id": x.ID, "device": x.Device, "status": "DETACHED"})
			x.AttachedTo, x.Device = 0, ""
		}
	}
	writeOK(w, map[string]any{"message": "Volumes detached", "volume_attachments": out})
}

func (f *Fake) nextDevice(vmID int) string {
	used := map[string]bool{}
	for _, x := range f.volumes {
		if x.AttachedTo == vmID {
			used[x.Device] = true
		}
	}
	for c := 'b'; c <= 'z'; c++ {
		if d := "/dev/vd" + string(c); !used[d] {
			return d
		}
	}
	return "/dev/vdzz"
}

// ---- handlers: volumes

func (f *Fake) listVolumes(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	q := r.URL.Query()
	search, env := q.Get("search"), q.Get("environment")
	var items []any
	for _, v := range f.volumes {
		if (search == "" || strings.Contains(v.Name, search)) && (env == "" || strings.Contains(v.Environment, env)) {
			items = append(items, f.volumeJSON(v, false))
		}
	}
	f.writePage(w, r, "volumes", items)
}

func (f *Fake) createVolume(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name            string `json:"name"`
		EnvironmentName string `json:"environment_name"`
		Size            int    `json:"size"`
		VolumeType      string `json:"volume_type"`
		Description     string `json:"description"`
		ImageID         int    `json:"image_id"`
		CallbackURL     string `json:"callback_url"`
	}
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.env(req.EnvironmentName)
	switch {
	case req.Name == "" || req.Size <= 0 || req.VolumeType == "":
		writeError(w, http.StatusBadRequest, "bad_request", "name, a positive size and volume_type are required")
		return
	case e == nil:
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("environment %s does not exist", req.EnvironmentName))
		return
	}
	for _, v := range f.volumes {
		if v.Name == req.Name && v.Environment == e.Name {
			writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("volume %s already exists", req.Name))
			return
		}
	}
	now := f.o.Now()
	v := &Volume{ID: f.id(), Name: req.Name, Environment: e.Name, Region: e.Region, Size: req.Size, Type: req.VolumeType,
		Description: req.Description, readyAt: now.Add(f.o.VolumeTime), CreatedAt: now}
	f.volumes = append(f.volumes, v)
	writeOK(w, map[string]any{"message": "Volume creation initiated", "volume": f.volumeJSON(v, true)})
}

func (f *Fake) getVolume(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	if v := f.pathVolume(w, r); v != nil {
		writeOK(w, map[string]any{"message": "Success", "volume": f.volumeJSON(v, true)})
	}
}

func (f *Fake) deleteVolume(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	v := f.pathVolume(w, r)
	if v == nil {
		return
	}
	if v.AttachedTo != 0 {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("volume %d is attached to VM %d", v.ID, v.AttachedTo))
		return
	}
	for i, x := range f.volumes {
		if x == v {
			f.volumes = append(f.volumes[:i], f.volumes[i+1:]...)
		}
	}
	writeOK(w, map[string]any{"message": "Volume deleted"})
}

func (f *Fake) pathVolume(w http.ResponseWriter, r *http.Request) *Volume {
	id, err := strconv.Atoi(r.PathValue("volume_id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "volume_id must be an integer")
		return nil
	}
	for _, v := range f.volumes {
		if v.ID == id {
			return v
		}
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("volume %d not found", id))
	return nil
}

// ---- JSON shapes (callers hold f.mu)

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func envJSON(e *environment) map[string]any {
	return map[string]any{"id": e.ID, "name": e.Name, "region": e.Region, "created_at": ts(e.CreatedAt),
		"features": map[string]any{"green_status": "GREEN", "network_optimised": false}}
}

func (f *Fake) keypairJSON(k *keypair) map[string]any {
	env := map[string]any{"name": k.Env}
	if e := f.env(k.Env); e != nil {
		env = map[string]any{"id": e.ID, "name": e.Name, "region": e.Region, "created_at": ts(e.CreatedAt),
			"features": map[string]any{"green_status": "GREEN", "network_optimised": false}}
	}
	return map[string]any{"id": k.ID, "name": k.Name, "environment": env, "public_key": k.PublicKey,
		"fingerprint": fmt.Sprintf("SHA256:fake%d", k.ID), "created_at": ts(k.CreatedAt)}
}

func (f *Fake) volumeJSON(v *Volume, single bool) map[string]any {
	atts := []any{}
	if v.AttachedTo != 0 {
		atts = append(atts, map[string]any{"id": v.ID + 5000, "instance_id": v.AttachedTo, "device": v.Device, "status": "ATTACHED", "protected": false})
	}
	out := map[string]any{
		"id": v.ID, "name": v.Name, "size": v.Size, "status": volStatus(v, f.o.Now()), "volume_type": v.Type,
		"description": v.Description, "bootable": false, "created_at": ts(v.CreatedAt), "updated_at": ts(v.CreatedAt),
		"environment": map[string]any{"name": v.Environment, "region": v.Region, "features": map[string]any{}},
		"attachments": atts,
	}
	if single {
		out["os_image"] = ""
	}
	return out
}

func (f *Fake) vmJSON(v *VM) map[string]any {
	st := f.statusOf(v)
	states := map[string][2]string{
		"CREATING": {"NOSTATE", "building"}, "BUILD": {"NOSTATE", "building"}, "ACTIVE": {"RUNNING", "active"},
		"STOPPING": {"RUNNING", "active"}, "SHUTOFF": {"SHUTDOWN", "stopped"}, "STARTING": {"SHUTDOWN", "stopped"},
		"HIBERNATING": {"RUNNING", "active"}, "HIBERNATED": {"SHUTDOWN", "shelved_offloaded"},
		"RESTORING": {"SHUTDOWN", "shelved_offloaded"}, "REBOOTING": {"RUNNING", "active"},
		"DELETING": {"RUNNING", "active"}, "ERROR": {"NOSTATE", "error"},
	}[st]
	power, vmState := states[0], states[1]
	if power == "" {
		power, vmState = "NOSTATE", "error"
	}
	// A public address is assigned when the VM becomes ACTIVE, and a new
	// one after a hibernation that did not retain it.
	if st == "ACTIVE" && v.wantIP && v.FloatingIP == "" {
		f.ipSeq++
		v.FloatingIP = fmt.Sprintf("203.0.%d.%d", 113+f.ipSeq/250, f.ipSeq%250+1)
	}
	var env map[string]any
	if e := f.env(v.Environment); e != nil {
		env = map[string]any{"id": e.ID, "name": e.Name, "region": e.Region, "org_id": 1,
			"features": map[string]any{"green_status": "GREEN", "network_optimised": false}}
	} else {
		env = map[string]any{"name": v.Environment, "region": v.Region}
	}
	fl := f.flavor(v.Flavor, v.Region)
	flavor := map[string]any{"name": v.Flavor}
	if fl != nil {
		flavor = map[string]any{"id": 1, "name": fl.Name, "cpu": fl.CPU, "ram": fl.RAM, "disk": fl.Disk, "ephemeral": fl.Ephemeral,
			"gpu": fl.GPU, "gpu_count": fl.GPUCount, "labels": []any{}, "features": map[string]any{}}
	}
	rules := []any{}
	for i, r := range v.Rules {
		rules = append(rules, map[string]any{"id": v.ID*100 + i, "direction": r.Direction, "ethertype": r.Ethertype, "protocol": r.Protocol,
			"remote_ip_prefix": r.RemoteIPPrefix, "port_range_min": r.PortRangeMin, "port_range_max": r.PortRangeMax,
			"status": "SUCCESS", "created_at": ts(v.CreatedAt)})
	}
	atts := []any{}
	for _, vol := range f.volumes {
		if vol.AttachedTo == v.ID {
			atts = append(atts, map[string]any{"id": vol.ID + 5000, "device": vol.Device, "status": "ATTACHED", "protected": false,
				"created_at": ts(vol.CreatedAt),
				"volume":     map[string]any{"id": vol.ID, "name": vol.Name, "size": vol.Size, "volume_type": vol.Type, "bootable": false, "description": vol.Description}})
		}
	}
	ipStatus := "NOT_ATTACHED"
	if v.FloatingIP != "" {
		ipStatus = "ATTACHED"
	}
	return map[string]any{
		"id": v.ID, "name": v.Name, "status": st, "power_state": power, "vm_state": vmState,
		"fixed_ip": v.FixedIP, "floating_ip": v.FloatingIP, "floating_ip_status": ipStatus,
		"environment": env, "flavor": flavor, "image": map[string]any{"name": v.Image}, "keypair": map[string]any{"name": v.KeyName},
		"labels": []any{}, "locked": false, "os": v.Image, "created_at": ts(v.CreatedAt), "requires_public_ip": v.wantIP,
		"security_rules": rules, "volume_attachments": atts, "features": map[string]any{},
	}
}

// writePage writes one page of items with the list envelope.
func (f *Fake) writePage(w http.ResponseWriter, r *http.Request, key string, items []any) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	size, _ := strconv.Atoi(r.URL.Query().Get("pageSize"))
	if page < 1 {
		page = 1
	}
	if size < 1 || size > f.o.MaxPageSize {
		size = f.o.MaxPageSize
	}
	start := min((page-1)*size, len(items))
	end := min(start+size, len(items))
	pageItems := append([]any{}, items[start:end]...)
	writeOK(w, map[string]any{"message": "Success", key: pageItems, "count": len(items), "page": page, "page_size": size})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 2<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeOK(w http.ResponseWriter, body map[string]any) {
	body["status"] = true
	writeJSON(w, http.StatusOK, body)
}

func writeError(w http.ResponseWriter, status int, reason, msg string) {
	body := map[string]any{"status": false, "message": msg}
	if reason != "" {
		body["error_reason"] = reason
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body) //nolint:errcheck
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}
