// Package lambdafake is an in-process fake of the Lambda Cloud API v1, for
// tests of the lambda provider and of anything that drives it (the CLI,
// end-to-end scripts). It follows the published OpenAPI spec 1.5.3
// (request and reply shapes, the {"data": ...} envelope, error codes) and
// is stateful: instances boot, become active, terminate and disappear
// over configurable times, computed from timestamps on each request so no
// goroutine has to drive them.
//
// Tests inject faults (5xx, 429 with Retry-After, hangs, capacity errors,
// and errors returned after the request took effect) with InjectFault and
// inspect the state with Instances, CountByName and Requests.
//
// Serve it with httptest.NewServer(fake) and point the provider's
// endpoint option at URL(srv.URL).
package lambdafake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider/fakeapi"
)

// FaultHeader marks replies made by an injected fault, so a test that
// checks replies against the spec can tell them from the fake's own.
const FaultHeader = fakeapi.FaultHeader

// BasePath is where the API lives on the fake's server.
const BasePath = "/api/v1"

// DefaultAPIKey is the key the fake accepts unless Options.APIKey says
// otherwise.
const DefaultAPIKey = "secret_fake-lambda-key"

// URL is the API base URL of a fake served at serverURL.
func URL(serverURL string) string { return strings.TrimRight(serverURL, "/") + BasePath }

// Options shape a fake. Zero durations make transitions immediate.
type Options struct {
	APIKey string
	// BootTime is how long a launched or restarted instance is "booting".
	BootTime time.Duration
	// TerminateTime is how long a terminated instance is "terminating".
	TerminateTime time.Duration
	// TerminatedTTL is how long a terminated instance is still listed
	// (status "terminated") before it disappears, as on the real API.
	TerminatedTTL time.Duration
	// InstanceTypes is the catalog; nil means DefaultInstanceTypes().
	InstanceTypes []InstanceType
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// InstanceType is one type of the fake's catalog.
type InstanceType struct {
	Name           string
	Description    string
	GPUDescription string
	PriceCents     int
	VCPUs          int
	MemoryGiB      int
	StorageGiB     int
	GPUs           int
	// Regions lists where the type has capacity now.
	Regions []string
}

// DefaultInstanceTypes is a catalog shaped like Lambda's.
func DefaultInstanceTypes() []InstanceType {
	return []InstanceType{
		{Name: "gpu_1x_a10", Description: "1x A10 (24 GB PCIe)", GPUDescription: "A10 (24 GB PCIe)", PriceCents: 75,
			VCPUs: 30, MemoryGiB: 200, StorageGiB: 1400, GPUs: 1, Regions: []string{"us-east-1", "us-west-1"}},
		{Name: "gpu_1x_a100_sxm4", Description: "1x A100 (40 GB SXM4)", GPUDescription: "A100 (40 GB SXM4)", PriceCents: 129,
			VCPUs: 30, MemoryGiB: 200, StorageGiB: 512, GPUs: 1, Regions: []string{"us-east-1"}},
		{Name: "gpu_8x_a100_80gb_sxm4", Description: "8x A100 (80 GB SXM4)", GPUDescription: "A100 (80 GB SXM4)", PriceCents: 1432,
			VCPUs: 240, MemoryGiB: 1800, StorageGiB: 19500, GPUs: 8, Regions: []string{}},
		{Name: "gpu_1x_h100_pcie", Description: "1x H100 (80 GB PCIe)", GPUDescription: "H100 (80 GB PCIe)", PriceCents: 249,
			VCPUs: 26, MemoryGiB: 200, StorageGiB: 1000, GPUs: 1, Regions: []string{"us-west-3"}},
		{Name: "gpu_8x_h100_sxm5", Description: "8x H100 (80 GB SXM5)", GPUDescription: "H100 (80 GB SXM5)", PriceCents: 2392,
			VCPUs: 208, MemoryGiB: 1800, StorageGiB: 22000, GPUs: 8, Regions: []string{"us-south-1"}},
	}
}

var regionDescriptions = map[string]string{
	"us-east-1": "Virginia, USA", "us-west-1": "California, USA", "us-west-3": "Utah, USA",
	"us-south-1": "Texas, USA", "us-east-3": "Washington DC, USA",
}

// Fault is an injected failure. The first fault matching a request is
// used and its count decremented.
type Fault struct {
	// Method and Path select requests: Path is the route below /api/v1
	// as the spec writes it ("/instance-operations/launch",
	// "/instances/{id}"). Empty matches any.
	Method, Path string
	// Status is the HTTP status of the reply (default 500).
	Status int
	// Code is the Lambda error code in the body (default global/unknown).
	Code string
	// RetryAfter is sent as the Retry-After header when not empty.
	RetryAfter string
	// Hang delays the reply this long, or until the client gives up.
	Hang time.Duration
	// AfterEffect performs the request first, then replies with the
	// fault: the "error after create" case.
	AfterEffect bool
	// Times is how many requests the fault hits (0 means 1).
	Times int
}

// Instance is the fake's record of one instance.
type Instance struct {
	ID           string
	Name         string
	Region       string
	InstanceType string
	SSHKeyNames  []string
	UserData     string
	Image        string
	IP           string
	LaunchedAt   time.Time
	readyAt      time.Time
	terminatedAt time.Time // zero while alive
	unhealthy    bool
	Restarts     int
}

// Status is the instance's status at now.
func (f *Fake) statusAt(in *Instance, now time.Time) string {
	switch {
	case in.terminatedAt.IsZero() && now.Before(in.readyAt):
		return "booting"
	case in.terminatedAt.IsZero() && in.unhealthy:
		return "unhealthy"
	case in.terminatedAt.IsZero():
		return "active"
	case now.Before(in.terminatedAt.Add(f.o.TerminateTime)):
		return "terminating"
	default:
		return "terminated"
	}
}

func (f *Fake) goneAt(in *Instance) time.Time {
	return in.terminatedAt.Add(f.o.TerminateTime + f.o.TerminatedTTL)
}

type sshKey struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// Fake is the fake API; it is an http.Handler.
type Fake struct {
	o   Options
	api *fakeapi.Router[Fault]

	mu        sync.Mutex
	types     []InstanceType
	instances []*Instance
	keys      []sshKey
	launched  map[string]int // instance name → launches
	ipSeq     int
	replyName string // when set, every instance reply carries this name
}

// New makes a fake with o.
func New(o Options) *Fake {
	if o.APIKey == "" {
		o.APIKey = DefaultAPIKey
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	types := o.InstanceTypes
	if types == nil {
		types = DefaultInstanceTypes()
	}
	f := &Fake{o: o, types: append([]InstanceType(nil), types...), launched: map[string]int{}}
	f.api = fakeapi.NewRouter(BasePath, f.authorized,
		func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusUnauthorized, "global/invalid-api-key", "API key is invalid, expired, or deleted.")
		},
		func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "global/object-does-not-exist", "no such endpoint: "+r.Method+" "+r.URL.Path)
		},
		serveFault)
	f.route("GET /instance-types", f.instanceTypes)
	f.route("GET /instances", f.listInstances)
	f.route("GET /instances/{id}", f.getInstance)
	f.route("POST /instance-operations/launch", f.launch)
	f.route("POST /instance-operations/terminate", f.terminate)
	f.route("POST /instance-operations/restart", f.restart)
	f.route("GET /ssh-keys", f.listKeys)
	f.route("POST /ssh-keys", f.addKey)
	f.route("DELETE /ssh-keys/{id}", f.deleteKey)
	f.route("GET /file-systems", f.listFileSystems)
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

// serveFault replies with an injected fault in Lambda's error format.
func serveFault(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, fault Fault) {
	failure := fakeapi.Failure{Status: fault.Status, RetryAfter: fault.RetryAfter, Hang: fault.Hang, AfterEffect: fault.AfterEffect}
	fakeapi.Serve(w, r, h, failure, func(w http.ResponseWriter, status int) {
		code := fault.Code
		if code == "" {
			code = "global/unknown"
		}
		writeError(w, status, code, fmt.Sprintf("injected fault (HTTP %d)", status))
	})
}

func (f *Fake) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return tok == f.o.APIKey
	}
	if u, _, ok := r.BasicAuth(); ok { // the spec also allows Basic <key>:
		return u == f.o.APIKey
	}
	return false
}

// InjectFault adds a fault for the next matching requests.
func (f *Fake) InjectFault(ft Fault) { f.api.Inject(ft.Method, ft.Path, ft.Times, ft) }

// SetCapacity sets the regions where typeName has capacity (none: sold out).
func (f *Fake) SetCapacity(typeName string, regions ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.types {
		if f.types[i].Name == typeName {
			f.types[i].Regions = append([]string{}, regions...)
		}
	}
}

// Requests counts the requests served for a route ("POST
// /instance-operations/launch"), faults included.
func (f *Fake) Requests(pattern string) int { return f.api.Requests(pattern) }

// Instances returns copies of every instance record still known,
// terminated ones included until they disappear.
func (f *Fake) Instances() []Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	out := make([]Instance, 0, len(f.instances))
	for _, in := range f.instances {
		out = append(out, *in)
	}
	return out
}

// CountByName counts the instances called name that are not terminated
// or terminating: more than one means a client made a duplicate.
func (f *Fake) CountByName(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, in := range f.instances {
		if in.Name == name && in.terminatedAt.IsZero() {
			n++
		}
	}
	return n
}

// Launches counts every launch that made an instance called name, gone
// ones included.
func (f *Fake) Launches(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.launched[name]
}

// SSHKeyNames lists the registered SSH keys' names.
func (f *Fake) SSHKeyNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, k := range f.keys {
		out = append(out, k.Name)
	}
	sort.Strings(out)
	return out
}

// AddForeignInstance records an active instance made outside this
// deployment (another deployment's key, or a person's), which List must
// not return.
func (f *Fake) AddForeignInstance(name, region, typeName, keyName string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := &Instance{ID: newID(), Name: name, Region: region, InstanceType: typeName, SSHKeyNames: []string{keyName},
		LaunchedAt: f.o.Now(), readyAt: f.o.Now(), IP: f.nextIP()}
	f.instances = append(f.instances, in)
	return in.ID
}

// SetReplyName makes every instance in the replies carry name, as a mock
// server that answers with the spec's example ("training-node-1") does;
// "" restores the real names.
func (f *Fake) SetReplyName(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replyName = name
}

// MarkUnhealthy makes an active instance report "unhealthy" until it is
// restarted.
func (f *Fake) MarkUnhealthy(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in := f.find(id); in != nil {
		in.unhealthy = true
		return true
	}
	return false
}

// expire drops instances whose terminated listing has run out.
func (f *Fake) expire() {
	now := f.o.Now()
	kept := f.instances[:0]
	for _, in := range f.instances {
		if in.terminatedAt.IsZero() || now.Before(f.goneAt(in)) {
			kept = append(kept, in)
		}
	}
	f.instances = kept
}

// ---- handlers

func (f *Fake) instanceTypes(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data := map[string]any{}
	for _, t := range f.types {
		regions := []any{}
		for _, r := range t.Regions {
			regions = append(regions, regionJSON(r))
		}
		data[t.Name] = map[string]any{"instance_type": typeJSON(t), "regions_with_capacity_available": regions}
	}
	writeData(w, data)
}

func (f *Fake) listInstances(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	out := []any{}
	for _, in := range f.instances {
		out = append(out, f.instanceJSON(in))
	}
	writeData(w, out)
}

func (f *Fake) getInstance(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	in := f.find(r.PathValue("id"))
	if in == nil {
		writeError(w, http.StatusNotFound, "global/object-does-not-exist", "Specified instance does not exist.")
		return
	}
	writeData(w, f.instanceJSON(in))
}

// launchRequest is the spec's InstanceCreateInstancesRequest plus the
// fields newer versions of the API accept.
type launchRequest struct {
	RegionName       string          `json:"region_name"`
	InstanceTypeName string          `json:"instance_type_name"`
	SSHKeyNames      []string        `json:"ssh_key_names"`
	FileSystemNames  []string        `json:"file_system_names"`
	Quantity         *int            `json:"quantity"`
	Name             *string         `json:"name"`
	UserData         string          `json:"user_data"`
	Image            json.RawMessage `json:"image"`
	Tags             json.RawMessage `json:"tags"`
	Hostname         string          `json:"hostname"`
}

func (f *Fake) launch(w http.ResponseWriter, r *http.Request) {
	var req launchRequest
	if !decode(w, r, &req) {
		return
	}
	invalid := func(format string, args ...any) {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", fmt.Sprintf(format, args...))
	}
	switch {
	case req.RegionName == "" || req.InstanceTypeName == "":
		invalid("region_name and instance_type_name are required")
		return
	case len(req.SSHKeyNames) != 1:
		invalid("exactly one SSH key must be specified, got %d", len(req.SSHKeyNames))
		return
	case len(req.FileSystemNames) > 0:
		writeError(w, http.StatusBadRequest, "instance-operations/launch/file-systems-not-supported", "the fake has no file systems")
		return
	case req.Quantity != nil && *req.Quantity != 1:
		invalid("quantity must be 1")
		return
	case req.Name != nil && (len(*req.Name) < 1 || len(*req.Name) > 64):
		invalid("name must be 1-64 characters")
		return
	case len(req.UserData) > 1<<20:
		invalid("user_data exceeds 1 MB")
		return
	}
	var image string
	if len(req.Image) > 0 {
		var im struct {
			Family string `json:"family"`
			ID     string `json:"id"`
		}
		if err := json.Unmarshal(req.Image, &im); err != nil || (im.Family == "") == (im.ID == "") {
			invalid("image must be {\"family\": F} or {\"id\": I}")
			return
		}
		image = im.Family + im.ID
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.hasKey(req.SSHKeyNames[0]) {
		invalid("SSH key %q does not exist", req.SSHKeyNames[0])
		return
	}
	var typ *InstanceType
	known := map[string]bool{}
	for i := range f.types {
		for _, r := range f.types[i].Regions {
			known[r] = true
		}
		if f.types[i].Name == req.InstanceTypeName {
			typ = &f.types[i]
		}
	}
	for r := range regionDescriptions {
		known[r] = true
	}
	if typ == nil {
		invalid("instance type %q does not exist", req.InstanceTypeName)
		return
	}
	if !known[req.RegionName] {
		invalid("region %q does not exist", req.RegionName)
		return
	}
	if !contains(typ.Regions, req.RegionName) {
		writeError(w, http.StatusBadRequest, "instance-operations/launch/insufficient-capacity",
			"Not enough capacity to fulfill launch request.")
		return
	}
	now := f.o.Now()
	in := &Instance{
		ID: newID(), Region: req.RegionName, InstanceType: typ.Name, SSHKeyNames: req.SSHKeyNames,
		UserData: req.UserData, Image: image, LaunchedAt: now, readyAt: now.Add(f.o.BootTime), IP: f.nextIP(),
	}
	if req.Name != nil {
		in.Name = *req.Name
	}
	f.instances = append(f.instances, in)
	f.launched[in.Name]++
	writeData(w, map[string]any{"instance_ids": []string{in.ID}})
}

func (f *Fake) terminate(w http.ResponseWriter, r *http.Request) {
	f.operate(w, r, "terminated_instances", func(in *Instance, now time.Time) {
		if in.terminatedAt.IsZero() {
			in.terminatedAt = now
		}
	})
}

func (f *Fake) restart(w http.ResponseWriter, r *http.Request) {
	f.operate(w, r, "restarted_instances", func(in *Instance, now time.Time) {
		in.readyAt = now.Add(f.o.BootTime)
		in.unhealthy = false
		in.Restarts++
	})
}

func (f *Fake) operate(w http.ResponseWriter, r *http.Request, key string, change func(*Instance, time.Time)) {
	var req struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.InstanceIDs == nil {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "instance_ids is required")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	now := f.o.Now()
	var targets []*Instance
	for _, id := range req.InstanceIDs {
		in := f.find(id)
		if in == nil || (!in.terminatedAt.IsZero() && key != "terminated_instances") {
			writeError(w, http.StatusNotFound, "global/object-does-not-exist", fmt.Sprintf("instance %s does not exist", id))
			return
		}
		targets = append(targets, in)
	}
	out := []any{}
	for _, in := range targets {
		change(in, now)
		out = append(out, f.instanceJSON(in))
	}
	writeData(w, map[string]any{key: out})
}

func (f *Fake) listKeys(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []sshKey{}
	out = append(out, f.keys...)
	writeData(w, out)
}

func (f *Fake) addKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Name == "" || len(req.Name) > 64 || len(req.PublicKey) > 4096 {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "name must be 1-64 characters and public_key at most 4096")
		return
	}
	if req.PublicKey == "" {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "the fake does not generate key pairs; send public_key")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hasKey(req.Name) {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", fmt.Sprintf("an SSH key named %q already exists", req.Name))
		return
	}
	k := sshKey{ID: newID(), Name: req.Name, PublicKey: req.PublicKey}
	f.keys = append(f.keys, k)
	writeData(w, k)
}

func (f *Fake) deleteKey(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PathValue("id")
	for i, k := range f.keys {
		if k.ID == id {
			f.keys = append(f.keys[:i], f.keys[i+1:]...)
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	writeError(w, http.StatusBadRequest, "global/object-does-not-exist", "SSH key does not exist")
}

func (f *Fake) listFileSystems(w http.ResponseWriter, r *http.Request) {
	writeData(w, []any{})
}

// ---- helpers (callers hold f.mu)

func (f *Fake) find(id string) *Instance {
	for _, in := range f.instances {
		if in.ID == id {
			return in
		}
	}
	return nil
}

func (f *Fake) hasKey(name string) bool {
	for _, k := range f.keys {
		if k.Name == name {
			return true
		}
	}
	return false
}

func (f *Fake) typeByName(name string) InstanceType {
	for _, t := range f.types {
		if t.Name == name {
			return t
		}
	}
	return InstanceType{Name: name}
}

func (f *Fake) nextIP() string {
	f.ipSeq++
	return fmt.Sprintf("198.51.%d.%d", 100+f.ipSeq/250, 1+f.ipSeq%250)
}

// instanceJSON is the spec's instance object. The address is reported
// once the instance is active, as Lambda does after boot.
func (f *Fake) instanceJSON(in *Instance) map[string]any {
	status := f.statusAt(in, f.o.Now())
	var ip, hostname any
	if status == "active" {
		ip = in.IP
		hostname = strings.ReplaceAll(in.IP, ".", "-") + ".cloud.lambdalabs.com"
	}
	var name any
	if in.Name != "" {
		name = in.Name
	}
	if f.replyName != "" {
		name = f.replyName
	}
	return map[string]any{
		"id": in.ID, "name": name, "ip": ip, "status": status, "hostname": hostname,
		"ssh_key_names": in.SSHKeyNames, "file_system_names": []string{},
		"region": regionJSON(in.Region), "instance_type": typeJSON(f.typeByName(in.InstanceType)),
		"jupyter_token": nil, "jupyter_url": nil,
	}
}

func typeJSON(t InstanceType) map[string]any {
	return map[string]any{
		"name": t.Name, "description": t.Description, "gpu_description": t.GPUDescription,
		"price_cents_per_hour": t.PriceCents,
		"specs":                map[string]any{"vcpus": t.VCPUs, "memory_gib": t.MemoryGiB, "storage_gib": t.StorageGiB, "gpus": t.GPUs},
	}
}

func regionJSON(name string) map[string]any {
	d := regionDescriptions[name]
	if d == "" {
		d = "Region " + name
	}
	return map[string]any{"name": name, "description": d}
}

// decode reads a JSON body strictly: a field the API does not know is a
// client bug the fake should surface, not ignore.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 2<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeData(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": data}) //nolint:errcheck
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg}}) //nolint:errcheck
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b) //nolint:errcheck
	return hex.EncodeToString(b)
}
