// Package gcpfake is an in-process fake of the Google Cloud APIs the gcp
// provider uses: the Compute Engine REST API (instances, disks, zone
// operations, aggregated lists, machine and accelerator types), the Cloud
// Billing Catalog's services.skus.list, and Google's OAuth token endpoint
// for service-account keys.
//
// Compute responses are computepb messages serialized with protojson, as
// the real service sends them (camelCase names, 64-bit integers as
// strings). The fake is stateful and moves through the real sequences
// over time: instances PROVISIONING → STAGING → RUNNING, STOPPING →
// TERMINATED; operations PENDING → RUNNING → DONE. Faults are injected per
// API method (InjectFault): HTTP errors with Retry-After, hanging
// requests, errors returned after the change was made, and operations
// that finish with an error (capacity, quota), with or without
// httpErrorStatusCode.
//
// Tests and the end-to-end suite drive it through the same client code
// the product uses; Creations, Instance, Disk, Requests and RequestIDs let
// them inspect what the fake cloud holds.
package gcpfake

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Options configure a fake.
type Options struct {
	// Project is the only project the fake knows (default "fake-project").
	Project string
	// State sequence timings; zero moves at once. Keep them to a few
	// milliseconds in tests.
	OperationTime    time.Duration // PENDING → RUNNING (halfway) → DONE
	ProvisioningTime time.Duration // PROVISIONING → STAGING
	StagingTime      time.Duration // STAGING → RUNNING
	StoppingTime     time.Duration // STOPPING → TERMINATED (and SUSPENDING → SUSPENDED)
	// MachineTypes and AcceleratorTypes per zone; the keys of
	// MachineTypes are the zones the fake serves. Nil: the defaults.
	MachineTypes     map[string][]*computepb.MachineType
	AcceleratorTypes map[string][]*computepb.AcceleratorType
	// SKUs are the billing catalog's Compute Engine SKUs. Nil: DefaultSKUs.
	SKUs []SKU
	// PageSize caps every list page, to exercise paging (default 500).
	PageSize int
	// RequireAuth makes every API call need a bearer token from the
	// fake's /token endpoint, obtained with a key from ServiceAccountKey.
	RequireAuth bool
	// PublicIP, when set, chooses the external address a VM gets when it
	// starts running (an end-to-end test can point it at a test VM).
	PublicIP func(zone, name string) string
	// Now is the fake's clock (default time.Now); a test that steps
	// through the state sequences replaces it.
	Now func() time.Time
}

// Server is a running fake.
type Server struct {
	// URL is the root to give the clients: option.WithEndpoint(URL) for
	// compute, URL for the billing endpoint, URL+"/token" as token_uri.
	URL string

	srv  *httptest.Server
	opts Options

	mu         sync.Mutex
	seq        uint64
	instances  map[string]*instance // zone/name
	disks      map[string]*disk     // zone/name
	ops        map[string]*operation
	requestIDs map[string]string   // action/requestId → operation key
	seenIDs    map[string][]string // action → request ids in order
	creations  map[string]int      // instance name → VMs made
	requests   map[string]int      // action → count
	events     []event
	faults     []*faultState
	skus       []SKU
	billingRaw []byte
	keys       map[string]any // client_email → public key
	tokens     map[string]bool
}

type instance struct {
	pb  *computepb.Instance
	gen int // bumped on every lifecycle change; stale events check it
}

type disk struct {
	pb *computepb.Disk
}

type operation struct {
	pb         *computepb.Operation
	start      time.Time
	done       time.Time
	errCode    string
	errMsg     string
	httpStatus int32
}

type event struct {
	at  time.Time
	seq uint64
	fn  func()
}

// New starts a fake.
func New(o Options) *Server {
	if o.Project == "" {
		o.Project = "fake-project"
	}
	if o.MachineTypes == nil {
		o.MachineTypes = DefaultMachineTypes()
	}
	if o.AcceleratorTypes == nil {
		o.AcceleratorTypes = DefaultAcceleratorTypes()
	}
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	s := &Server{
		opts: o, instances: map[string]*instance{}, disks: map[string]*disk{}, ops: map[string]*operation{},
		requestIDs: map[string]string{}, seenIDs: map[string][]string{}, creations: map[string]int{},
		requests: map[string]int{}, keys: map[string]any{}, tokens: map[string]bool{},
	}
	s.skus = o.SKUs
	if s.skus == nil {
		s.skus = DefaultSKUs()
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Project is the fake's project id.
func (s *Server) Project() string { return s.opts.Project }

// Zones are the zones the fake serves, sorted.
func (s *Server) Zones() []string {
	zs := make([]string, 0, len(s.opts.MachineTypes))
	for z := range s.opts.MachineTypes {
		zs = append(zs, z)
	}
	sort.Strings(zs)
	return zs
}

// ---- faults

// Fault is a failure injected into matching requests.
type Fault struct {
	// Action is the API method, as "instances.insert", "instances.get",
	// "instances.aggregatedList", "instances.start", "instances.stop",
	// "instances.delete", "disks.insert", "disks.resize",
	// "operations.get", "machineTypes.aggregatedList", "billing.skus",
	// "token". Empty matches every request.
	Action string
	// Zone and Name narrow the match to one zone or resource name.
	Zone, Name string
	// Times is how many requests the fault hits; 0 means once, a
	// negative number means every request.
	Times int

	// Status answers with this HTTP error (e.g. 500, 503, 429, 403).
	Status     int
	Reason     string // errors[0].reason, e.g. "rateLimitExceeded"
	Message    string
	RetryAfter string // Retry-After header value
	// Hang blocks the request this long, or until the client gives up.
	Hang time.Duration
	// AfterApply performs the request before failing it (with Status, or
	// by hanging): the change happens, the client sees an error.
	AfterApply bool
	// OpError lets the request succeed but makes its operation end DONE
	// with this error code (e.g. ZONE_RESOURCE_POOL_EXHAUSTED,
	// QUOTA_EXCEEDED) and without the change. OpHTTPStatus sets the
	// operation's httpErrorStatusCode; zero leaves it out, which the SDK's
	// Wait does not notice.
	OpError      string
	OpMessage    string
	OpHTTPStatus int32
}

type faultState struct {
	Fault
	left int
}

// InjectFault adds a fault; faults are tried in the order added.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := f.Times
	if left == 0 {
		left = 1
	}
	s.faults = append(s.faults, &faultState{Fault: f, left: left})
}

// ClearFaults removes every fault not used up yet.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) takeFault(rt route) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.left == 0 {
			continue
		}
		if (f.Action != "" && f.Action != rt.action) || (f.Zone != "" && f.Zone != rt.zone) || (f.Name != "" && f.Name != rt.name) {
			continue
		}
		if f.left > 0 {
			f.left--
		}
		cp := f.Fault
		return &cp
	}
	return nil
}

type opFaultKey struct{}

// ---- inspection

// Creations is how many VMs named name the fake has made. Anything but
// one for a host means a duplicate (or none).
func (s *Server) Creations(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creations[name]
}

// Requests is how many requests reached action (see Fault.Action).
func (s *Server) Requests(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[action]
}

// RequestIDs are the requestId parameters action received, in order.
func (s *Server) RequestIDs(action string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seenIDs[action]...)
}

// Instance returns the VM called name, in any zone, as the API shows it.
func (s *Server) Instance(name string) (*computepb.Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	for _, in := range s.instances {
		if in.pb.GetName() == name {
			return s.instanceView(in), true
		}
	}
	return nil, false
}

// InstanceNames lists every VM, sorted.
func (s *Server) InstanceNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	var out []string
	for _, in := range s.instances {
		out = append(out, in.pb.GetName())
	}
	sort.Strings(out)
	return out
}

// Disk returns the disk called name, in any zone.
func (s *Server) Disk(name string) (*computepb.Disk, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	for _, d := range s.disks {
		if d.pb.GetName() == name {
			return proto.Clone(d.pb).(*computepb.Disk), true
		}
	}
	return nil, false
}

// SetStatus forces a VM's status, as the cloud does on its own (a spot VM
// reclaimed to TERMINATED, a host error to REPAIRING).
func (s *Server) SetStatus(name, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	for _, in := range s.instances {
		if in.pb.GetName() == name {
			in.gen++
			s.setStatus(in, status)
			return nil
		}
	}
	return fmt.Errorf("no instance %s", name)
}

// SetSKUs replaces the billing catalog.
func (s *Server) SetSKUs(skus []SKU) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skus, s.billingRaw = skus, nil
}

// SetBillingResponse makes services.skus.list answer with body as it is
// (one page), to test payloads that are malformed.
func (s *Server) SetBillingResponse(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.billingRaw = append([]byte(nil), body...)
}

// ---- routing

type route struct {
	action  string
	project string
	zone    string
	kind    string // instances, disks, operations, machineTypes, acceleratorTypes
	name    string
	verb    string
}

func parseRoute(r *http.Request) (route, bool) {
	p := r.URL.Path
	if p == "/token" && r.Method == http.MethodPost {
		return route{action: "token"}, true
	}
	if strings.HasPrefix(p, "/v1/services/") && strings.HasSuffix(p, "/skus") && r.Method == http.MethodGet {
		return route{action: "billing.skus", name: strings.TrimSuffix(strings.TrimPrefix(p, "/v1/services/"), "/skus")}, true
	}
	rest, ok := strings.CutPrefix(p, "/compute/v1/projects/")
	if !ok {
		return route{}, false
	}
	seg := strings.Split(rest, "/")
	rt := route{project: seg[0]}
	switch {
	case len(seg) == 3 && seg[1] == "aggregated" && r.Method == http.MethodGet:
		rt.kind = seg[2]
		rt.action = rt.kind + ".aggregatedList"
		return rt, true
	case len(seg) >= 4 && seg[1] == "zones":
		rt.zone, rt.kind = seg[2], seg[3]
	default:
		return route{}, false
	}
	switch {
	case len(seg) == 4 && r.Method == http.MethodGet:
		rt.verb = "list"
	case len(seg) == 4 && r.Method == http.MethodPost:
		rt.verb = "insert"
	case len(seg) == 5 && r.Method == http.MethodGet:
		rt.name, rt.verb = seg[4], "get"
	case len(seg) == 5 && r.Method == http.MethodDelete:
		rt.name, rt.verb = seg[4], "delete"
	case len(seg) == 6 && r.Method == http.MethodPost:
		rt.name, rt.verb = seg[4], seg[5]
	default:
		return route{}, false
	}
	rt.action = rt.kind + "." + rt.verb
	return rt, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rt, ok := parseRoute(r)
	if !ok {
		writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The fake has no %s %s", r.Method, r.URL.Path), "")
		return
	}
	s.mu.Lock()
	s.requests[rt.action]++
	if id := r.URL.Query().Get("requestId"); id != "" {
		s.seenIDs[rt.action] = append(s.seenIDs[rt.action], id)
	}
	s.mu.Unlock()

	if s.opts.RequireAuth && rt.action != "token" && !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "authError",
			"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "")
		return
	}
	// GCE refuses a requestId that is not a UUID (or is the zero UUID)
	// rather than ignoring it, which would lose the idempotency.
	if id := r.URL.Query().Get("requestId"); id != "" {
		if u, err := uuid.Parse(id); err != nil || len(id) != 36 || u == uuid.Nil {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("Invalid value for field 'requestId': '%s'. The request ID must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).", id), "")
			return
		}
	}
	// Read the body now, so a fault that applies the request first and
	// then hangs or fails does not race the client closing it.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "badRequest", "cannot read body", "")
		return
	}

	f := s.takeFault(rt)
	if f == nil {
		s.dispatch(w, r, rt, body)
		return
	}
	ctx := r.Context()
	if f.OpError != "" {
		ctx = context.WithValue(ctx, opFaultKey{}, f)
	}
	var rec *httptest.ResponseRecorder
	if f.AfterApply {
		rec = httptest.NewRecorder()
		s.dispatch(rec, r.WithContext(ctx), rt, body)
	}
	if f.Hang > 0 {
		t := time.NewTimer(f.Hang)
		select {
		case <-r.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	if f.Status != 0 {
		msg := f.Message
		if msg == "" {
			msg = http.StatusText(f.Status)
		}
		reason := f.Reason
		if reason == "" {
			reason = defaultReason(f.Status)
		}
		writeError(w, f.Status, reason, msg, f.RetryAfter)
		return
	}
	if rec != nil {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	s.dispatch(w, r.WithContext(ctx), rt, body)
}

func defaultReason(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "rateLimitExceeded"
	case http.StatusUnauthorized:
		return "authError"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "notFound"
	case http.StatusConflict:
		return "alreadyExists"
	case http.StatusServiceUnavailable:
		return "backendError"
	}
	if status >= 500 {
		return "backendError"
	}
	return "invalid"
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, rt route, body []byte) {
	switch rt.action {
	case "token":
		s.token(w, r, body)
		return
	case "billing.skus":
		s.billingSKUs(w, r, rt)
		return
	}
	if rt.project != s.opts.Project {
		writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The resource 'projects/%s' was not found", rt.project), "")
		return
	}
	if rt.zone != "" {
		if _, ok := s.opts.MachineTypes[rt.zone]; !ok {
			writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The resource 'projects/%s/zones/%s' was not found", rt.project, rt.zone), "")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	var res proto.Message
	var herr *httpError
	switch rt.action {
	case "instances.insert":
		res, herr = s.insertInstance(r, rt, body)
	case "instances.get":
		res, herr = s.getInstance(rt)
	case "instances.list":
		res, herr = s.listInstances(r, rt)
	case "instances.aggregatedList":
		res, herr = s.aggregatedInstances(r)
	case "instances.start", "instances.stop", "instances.suspend", "instances.resume":
		res, herr = s.lifecycle(r, rt)
	case "instances.delete":
		res, herr = s.deleteInstance(r, rt)
	case "disks.insert":
		res, herr = s.insertDisk(r, rt, body)
	case "disks.get":
		res, herr = s.getDisk(rt)
	case "disks.list":
		res, herr = s.listDisks(r, rt)
	case "disks.aggregatedList":
		res, herr = s.aggregatedDisks(r)
	case "disks.delete":
		res, herr = s.deleteDisk(r, rt)
	case "disks.resize":
		res, herr = s.resizeDisk(r, rt, body)
	case "operations.get":
		res, herr = s.getOperation(rt)
	case "machineTypes.get", "machineTypes.list", "machineTypes.aggregatedList",
		"acceleratorTypes.get", "acceleratorTypes.list", "acceleratorTypes.aggregatedList":
		res, herr = s.types(r, rt)
	default:
		herr = errf(http.StatusNotFound, "notFound", "the fake does not implement %s", rt.action)
	}
	if herr != nil {
		writeError(w, herr.code, herr.reason, herr.msg, "")
		return
	}
	writeProto(w, res)
}

// ---- wire helpers

type httpError struct {
	code   int
	reason string
	msg    string
}

func errf(code int, reason, format string, args ...any) *httpError {
	return &httpError{code: code, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// writeError writes Google's JSON error shape.
func writeError(w http.ResponseWriter, code int, reason, msg, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]any{
			"code":    code,
			"message": msg,
			"errors":  []map[string]string{{"message": msg, "domain": "global", "reason": reason}},
		},
	})
}

var marshal = protojson.MarshalOptions{}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := marshal.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "backendError", err.Error(), "")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Write(b)
}

// unmarshal is strict: a field the API does not have is the client's bug.
var unmarshal = protojson.UnmarshalOptions{}

func (s *Server) link(parts ...string) string {
	return s.URL + "/compute/v1/projects/" + s.opts.Project + "/" + strings.Join(parts, "/")
}

func (s *Server) zoneLink(zone string) string { return s.link("zones", zone) }

// resourceIn parses a full or partial URL such as
// projects/p/zones/z/disks/d or zones/z/machineTypes/t into zone and name.
func resourceIn(url, collection string) (zone, name string, ok bool) {
	seg := strings.Split(strings.Trim(url, "/"), "/")
	for i := 0; i+3 < len(seg); i++ {
		if seg[i] == "zones" && seg[i+2] == collection {
			return seg[i+1], seg[i+3], i+4 == len(seg)
		}
	}
	return "", "", false
}

var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ---- time

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

func (s *Server) after(d time.Duration, fn func()) {
	s.seq++
	s.events = append(s.events, event{at: s.now().Add(d), seq: s.seq, fn: fn})
}

// advance runs every event that is due, in time order. Callers hold mu.
func (s *Server) advance() {
	for {
		now := s.now()
		best := -1
		for i, e := range s.events {
			if e.at.After(now) {
				continue
			}
			if best < 0 || e.at.Before(s.events[best].at) || (e.at.Equal(s.events[best].at) && e.seq < s.events[best].seq) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		e := s.events[best]
		s.events = append(s.events[:best], s.events[best+1:]...)
		e.fn()
	}
}

func (s *Server) nextID() uint64 {
	s.seq++
	return 1000000000000000000 + s.seq*7919
}

func rfc3339(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000-07:00") }
