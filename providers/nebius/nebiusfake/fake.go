// Package nebiusfake is an in-process fake of the parts of the Nebius AI
// Cloud gRPC API that the nebius provider uses: compute InstanceService,
// DiskService and PlatformService, the common OperationService, the
// billing CalculatorService, the capacity ResourceAdviceService and the
// IAM TokenExchangeService. Every request and response is checked against
// the buf.validate rules of the published protos.
//
// It is a real grpc.Server on a loopback port that speaks the published
// protobuf messages of github.com/nebius/gosdk, so tests drive it through
// the real SDK, exactly as production talks to Nebius. It is stateful:
// instances go CREATING → STARTING → RUNNING, RUNNING → STOPPING → STOPPED,
// DELETING → gone, disks CREATING/UPDATING → READY, each step after a
// configurable delay, and mutations return Operations that complete when
// their step does. Dynamic public addresses are released on stop, as on
// Nebius. Requests are checked the way the API checks them (parent, unique
// names, existing and unattached disks, subnet, platform and preset, a disk
// resize only while its instance is stopped) and X-Idempotency-Key is
// honoured for mutations.
//
// Faults are injected per method (Inject): UNAVAILABLE, RESOURCE_EXHAUSTED
// with google.rpc.RetryInfo, DEADLINE_EXCEEDED, hanging calls, quota and
// capacity errors, and errors returned after the call took effect. A
// platform can be put out of capacity (SetCapacity), which makes instance
// creation operations fail the way Nebius reports it.
package nebiusfake

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	billing "github.com/nebius/gosdk/proto/nebius/billing/v1alpha1"
	capacity "github.com/nebius/gosdk/proto/nebius/capacity/v1"
	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"
	iam "github.com/nebius/gosdk/proto/nebius/iam/v1"
)

// Defaults for Options fields left empty.
const (
	DefaultProjectID = "project-e00fakeproject01"
	DefaultSubnetID  = "vpcsubnet-e00fakesubnet01"
	DefaultToken     = "fake-iam-token"
	DefaultRegion    = "eu-north1"
)

// Options configure a fake. Zero delays make every transition happen on
// the next request; tests use a few milliseconds so that intermediate
// states are observable without slowing anything down.
type Options struct {
	ProjectID string // the only parent that exists; default DefaultProjectID
	SubnetID  string // the only subnet that exists; default DefaultSubnetID
	Region    string // the project's region, in capacity advice; default DefaultRegion

	CreateDelay time.Duration // CREATING → STARTING
	BootDelay   time.Duration // STARTING → RUNNING (create and start)
	StopDelay   time.Duration // STOPPING → STOPPED
	DeleteDelay time.Duration // DELETING → gone
	DiskDelay   time.Duration // disk CREATING/UPDATING/DELETING steps

	// Tokens are the static IAM tokens the fake accepts. Empty means
	// {DefaultToken}. Tokens issued by TokenExchange are accepted too.
	Tokens []string
	// ServiceAccount, when set, lets TokenExchange issue tokens for JWTs
	// signed by this account's key.
	ServiceAccount *ServiceAccount

	// Platforms is the PlatformService catalog; nil means DefaultPlatforms.
	Platforms []*compute.Platform
	// Prices per platform name for the CalculatorService; nil means
	// DefaultPrices.
	Prices map[string]Price
	// DiskPrices are USD per GiB-hour of each disk type for the
	// CalculatorService; nil means DefaultDiskPrices.
	DiskPrices map[compute.DiskSpec_DiskType]float64

	// PublicIP, when set, chooses the public address an instance gets
	// each time it starts ("" falls back to TEST-NET-3 addresses): an
	// end-to-end test can hand out the address of a network-namespace VM
	// that really runs sshd.
	PublicIP func(instanceName string) string
}

// Server is a running fake.
type Server struct {
	opts Options
	grpc *grpc.Server
	lis  net.Listener

	mu     sync.Mutex
	events []event
	seq    int // event insertion order, for stable ordering of ties

	instances map[string]*instance // by id
	disks     map[string]*disk     // by id
	ops       map[string]*common.Operation
	idem      map[string]string // method + idempotency key → operation id
	created   map[string]int    // instance name → times an instance was made
	ipSeq     int

	tokens     map[string]bool
	platforms  []*compute.Platform
	prices     map[string]Price
	diskPrices map[compute.DiskSpec_DiskType]float64
	noCap      map[string]bool // platforms without capacity
	estimate   func(*billing.EstimateRequest) (*billing.EstimateResponse, error)

	faults map[string][]*pendingFault
	calls  map[string][]Call

	// validator checks every request and response against the
	// buf.validate rules in the published Nebius protos.
	validator protovalidate.Validator
	// raw lists methods whose answers a test replaced (SetPlatforms,
	// SetEstimate), possibly with malformed ones on purpose: those are
	// sent unchecked.
	raw map[string]bool
}

// Call records one request the fake received.
type Call struct {
	At    time.Time
	Token string // bearer token, "" when none
	Key   string // X-Idempotency-Key, "" when none
	Agent string // user-agent
}

type event struct {
	at  time.Time
	seq int
	fn  func(now time.Time)
}

// Start listens on a loopback port and serves the fake until Close.
func Start(opts Options) (*Server, error) {
	if opts.ProjectID == "" {
		opts.ProjectID = DefaultProjectID
	}
	if opts.SubnetID == "" {
		opts.SubnetID = DefaultSubnetID
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if len(opts.Tokens) == 0 {
		opts.Tokens = []string{DefaultToken}
	}
	if opts.Platforms == nil {
		opts.Platforms = DefaultPlatforms()
	}
	if opts.Prices == nil {
		opts.Prices = DefaultPrices()
	}
	if opts.DiskPrices == nil {
		opts.DiskPrices = DefaultDiskPrices()
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("nebius fake: protovalidate: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("nebius fake: listen: %w", err)
	}
	s := &Server{
		opts: opts, lis: lis,
		instances: map[string]*instance{}, disks: map[string]*disk{}, ops: map[string]*common.Operation{},
		idem: map[string]string{}, created: map[string]int{},
		tokens: map[string]bool{}, platforms: opts.Platforms, prices: opts.Prices, diskPrices: opts.DiskPrices, noCap: map[string]bool{},
		faults: map[string][]*pendingFault{}, calls: map[string][]Call{}, validator: validator,
		raw: map[string]bool{},
	}
	for _, t := range opts.Tokens {
		s.tokens[t] = true
	}
	s.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(s.intercept))
	compute.RegisterInstanceServiceServer(s.grpc, &instanceService{s: s})
	compute.RegisterDiskServiceServer(s.grpc, &diskService{s: s})
	compute.RegisterPlatformServiceServer(s.grpc, &platformService{s: s})
	common.RegisterOperationServiceServer(s.grpc, &operationService{s: s})
	billing.RegisterCalculatorServiceServer(s.grpc, &calculatorService{s: s})
	capacity.RegisterResourceAdviceServiceServer(s.grpc, &capacityService{s: s})
	iam.RegisterTokenExchangeServiceServer(s.grpc, &tokenExchangeService{s: s})
	go func() { _ = s.grpc.Serve(lis) }()
	return s, nil
}

// Addr is the host:port the fake listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ProjectID is the parent id that exists in the fake.
func (s *Server) ProjectID() string { return s.opts.ProjectID }

// SubnetID is the subnet that exists in the fake.
func (s *Server) SubnetID() string { return s.opts.SubnetID }

// Close stops serving; calls in flight are cut off.
func (s *Server) Close() { s.grpc.Stop() }

// ---- time

// at schedules fn to run, under the lock, once the clock passes t. Events
// run lazily, at the start of the next request or inspection, in time
// order, with their own scheduled time as "now": so a chain of steps
// lands at the same instants however often the fake is polled.
func (s *Server) at(t time.Time, fn func(now time.Time)) {
	s.seq++
	s.events = append(s.events, event{at: t, seq: s.seq, fn: fn})
	sort.SliceStable(s.events, func(i, j int) bool {
		if !s.events[i].at.Equal(s.events[j].at) {
			return s.events[i].at.Before(s.events[j].at)
		}
		return s.events[i].seq < s.events[j].seq
	})
}

// advance runs every event due by now. Called with s.mu held.
func (s *Server) advance(now time.Time) {
	for len(s.events) > 0 && !s.events[0].at.After(now) {
		e := s.events[0]
		s.events = s.events[1:]
		e.fn(e.at)
	}
}

// ---- the interceptor: call log, authentication, faults, clock

// exchangeMethod is the one method that needs no bearer token.
const exchangeMethod = "/nebius.iam.v1.TokenExchangeService/Exchange"

func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	token := ""
	if v := md.Get("authorization"); len(v) > 0 {
		token = strings.TrimPrefix(v[0], "Bearer ")
	}
	key := ""
	if v := md.Get("x-idempotency-key"); len(v) > 0 {
		key = v[0]
	}
	agent := strings.Join(md.Get("user-agent"), " ")
	s.mu.Lock()
	s.calls[info.FullMethod] = append(s.calls[info.FullMethod], Call{At: time.Now(), Token: token, Key: key, Agent: agent})
	authed := info.FullMethod == exchangeMethod || s.tokens[token]
	f := s.takeFault(info.FullMethod)
	s.mu.Unlock()

	if !authed {
		if token == "" {
			return nil, status.Error(codes.Unauthenticated, "missing authorization header")
		}
		return nil, status.Error(codes.Unauthenticated, "invalid or expired IAM token")
	}
	if f != nil && !f.After {
		if f.Hang > 0 {
			t := time.NewTimer(f.Hang)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, status.FromContextError(ctx.Err()).Err()
			case <-t.C:
			}
		}
		if f.Code != codes.OK {
			return nil, f.err()
		}
	}

	// Like the real API, reject requests that break the rules the protos
	// declare (required fields, ranges, patterns).
	if m, ok := req.(proto.Message); ok {
		if err := s.validator.Validate(m); err != nil {
			return nil, invalidRequest(err)
		}
	}
	s.mu.Lock()
	s.advance(time.Now())
	resp, err := handler(withKey(ctx, key), req)
	s.mu.Unlock()
	// And never answer with what the protos forbid: that is a bug in
	// the fake, reported loudly.
	s.mu.Lock()
	raw := s.raw[info.FullMethod]
	s.mu.Unlock()
	if m, ok := resp.(proto.Message); ok && err == nil && !raw {
		if verr := s.validator.Validate(m); verr != nil {
			return nil, status.Errorf(codes.Internal, "nebius fake: invalid %s response: %v", info.FullMethod, verr)
		}
	}

	if f != nil && f.After && err == nil {
		return nil, f.err()
	}
	return resp, err
}

type keyCtx struct{}

func withKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyCtx{}, key)
}

// idempotent returns the operation an earlier request with the same
// method and idempotency key started, if any. Called with s.mu held.
func (s *Server) idempotent(ctx context.Context, method string) *common.Operation {
	key, _ := ctx.Value(keyCtx{}).(string)
	if key == "" {
		return nil
	}
	if id, ok := s.idem[method+"\x00"+key]; ok {
		return proto.Clone(s.ops[id]).(*common.Operation)
	}
	return nil
}

// remember records op under the request's idempotency key, so that a
// retry gets the same operation, and returns the caller's copy of op.
func (s *Server) remember(ctx context.Context, method string, op *common.Operation) *common.Operation {
	if key, _ := ctx.Value(keyCtx{}).(string); key != "" {
		s.idem[method+"\x00"+key] = op.GetId()
	}
	return clone(op)
}

// ---- operations

// newOp records a running operation on resourceID for request.
func (s *Server) newOp(now time.Time, description, resourceID string, request proto.Message) *common.Operation {
	reqAny, err := anypb.New(request)
	if err != nil {
		panic(fmt.Sprintf("nebius fake: pack request: %v", err)) // only our own message types reach here
	}
	op := &common.Operation{
		Id: newID("computeoperation"), Description: description, CreatedAt: timestamppb.New(now),
		CreatedBy: "serviceaccount-e00fake", Request: reqAny, ResourceId: resourceID,
	}
	s.ops[op.Id] = op
	return op
}

// finish completes op with st (nil means success).
func finish(op *common.Operation, now time.Time, st *status.Status) {
	if op == nil || op.Status != nil {
		return
	}
	if st == nil {
		st = status.New(codes.OK, "")
	}
	op.Status = st.Proto()
	op.FinishedAt = timestamppb.New(now)
}

func clone(op *common.Operation) *common.Operation { return proto.Clone(op).(*common.Operation) }

// ---- errors in the shape Nebius sends them: a gRPC status carrying a
// nebius.common.v1.ServiceError detail (and google.rpc.RetryInfo when the
// caller should wait).

func serviceError(code codes.Code, msg string, se *common.ServiceError, retryAfter time.Duration) *status.Status {
	st := status.New(code, msg)
	if se != nil {
		if se.Service == "" {
			se.Service = "compute"
		}
		if withDetail, err := st.WithDetails(se); err == nil {
			st = withDetail
		}
	}
	if retryAfter > 0 {
		if withRetry, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
			st = withRetry
		}
	}
	return st
}

func notFound(kind, id string) error {
	return serviceError(codes.NotFound, fmt.Sprintf("%s %s not found", kind, id),
		&common.ServiceError{Code: "NotFound", Details: &common.ServiceError_ResourceNotFound{
			ResourceNotFound: &common.ResourceNotFound{ResourceId: id}}}, 0).Err()
}

func badRequest(field, msg string) error {
	return serviceError(codes.InvalidArgument, field+": "+msg,
		&common.ServiceError{Code: "BadRequest", Details: &common.ServiceError_BadRequest{
			BadRequest: &common.BadRequest{Violations: []*common.BadRequest_Violation{{Field: field, Message: msg}}}}}, 0).Err()
}

func badState(id, msg string) error {
	return serviceError(codes.FailedPrecondition, msg,
		&common.ServiceError{Code: "BadResourceState", Details: &common.ServiceError_BadResourceState{
			BadResourceState: &common.BadResourceState{ResourceId: id, Message: msg}}}, 0).Err()
}

// invalidRequest turns a protovalidate failure into INVALID_ARGUMENT
// with a BadRequest detail naming each field.
func invalidRequest(err error) error {
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		return status.Errorf(codes.InvalidArgument, "invalid request: %v", err)
	}
	br := &common.BadRequest{}
	var msgs []string
	for _, v := range ve.Violations {
		field := protovalidate.FieldPathString(v.Proto.GetField())
		br.Violations = append(br.Violations, &common.BadRequest_Violation{Field: field, Message: v.Proto.GetMessage()})
		msgs = append(msgs, field+": "+v.Proto.GetMessage())
	}
	return serviceError(codes.InvalidArgument, "invalid request: "+strings.Join(msgs, "; "),
		&common.ServiceError{Code: "BadRequest", Details: &common.ServiceError_BadRequest{BadRequest: br}}, 0).Err()
}

func alreadyExists(id, msg string) error {
	return serviceError(codes.AlreadyExists, msg,
		&common.ServiceError{Code: "AlreadyExists", Details: &common.ServiceError_ResourceAlreadyExists{
			ResourceAlreadyExists: &common.ResourceAlreadyExists{ResourceId: id}}}, 0).Err()
}

// notEnoughResources is how a create fails when the region has no room.
func notEnoughResources(resource, requested string) *status.Status {
	return serviceError(codes.ResourceExhausted, "not enough resources to allocate "+requested,
		&common.ServiceError{Code: "NotEnoughResources", Details: &common.ServiceError_NotEnoughResources{
			NotEnoughResources: &common.NotEnoughResources{Violations: []*common.NotEnoughResources_Violation{
				{ResourceType: resource, Requested: requested, Message: "no free capacity in the region; try later or elsewhere"}}}}}, 0)
}

// ---- ids, pages, addresses

const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// newID makes an id shaped like Nebius ids: "<kind>-e00<random>".
func newID(kind string) string {
	b := make([]byte, 14)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return kind + "-e00" + string(b)
}

// page cuts items by page_token (an offset) and page_size.
func page[T any](items []T, size int64, token string) ([]T, string, error) {
	off := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", badRequest("page_token", "invalid page token")
		}
		off = n
	}
	if size <= 0 || size > 1000 {
		size = 100
	}
	end := min(off+int(size), len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[off:end], next, nil
}

// privateIP and publicIP hand out addresses as Nebius reports them,
// with a prefix length. Public ones come from TEST-NET-3 unless
// Options.PublicIP chooses.
func (s *Server) privateIP() string {
	s.ipSeq++
	return fmt.Sprintf("10.0.%d.%d/32", s.ipSeq/250%250, s.ipSeq%250+2)
}

func (s *Server) publicIP(instanceName string) string {
	if s.opts.PublicIP != nil {
		if ip := s.opts.PublicIP(instanceName); ip != "" {
			return ip + "/32"
		}
	}
	s.ipSeq++
	return fmt.Sprintf("203.0.113.%d/32", s.ipSeq%250+2)
}

// ---- inspection for tests

// Calls returns the requests received for a full method name such as
// MethodInstanceCreate.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls[method]...)
}

// Instances returns every instance, sorted by name, as Get would.
func (s *Server) Instances() []*compute.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(time.Now())
	return viewsByName(s.instances)
}

// Instance returns the instance called name.
func (s *Server) Instance(name string) (*compute.Instance, bool) {
	for _, in := range s.Instances() {
		if in.GetMetadata().GetName() == name {
			return in, true
		}
	}
	return nil, false
}

// InstanceCount is how many instances called name exist now.
func (s *Server) InstanceCount(name string) int {
	n := 0
	for _, in := range s.Instances() {
		if in.GetMetadata().GetName() == name {
			n++
		}
	}
	return n
}

// CreatedCount is how many times an instance called name was made since
// the fake started (a create that made a VM counts even if its request
// then failed).
func (s *Server) CreatedCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created[name]
}

// Disks returns every disk, sorted by name.
func (s *Server) Disks() []*compute.Disk {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(time.Now())
	return viewsByName(s.disks)
}

// Disk returns the disk called name.
func (s *Server) Disk(name string) (*compute.Disk, bool) {
	for _, d := range s.Disks() {
		if d.GetMetadata().GetName() == name {
			return d, true
		}
	}
	return nil, false
}

// SetCapacity makes instance creation and start on platform fail
// (ok=false) with RESOURCE_EXHAUSTED / NotEnoughResources in the
// operation, as Nebius reports a region without room, and the capacity
// advisor report 0 available; ok=true restores it.
func (s *Server) SetCapacity(platform string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noCap[platform] = !ok
}

// SetPlatforms replaces the PlatformService catalog, sent as given
// without checking it against the protos (malformed payload tests use
// it); nil restores the default.
func (s *Server) SetPlatforms(p []*compute.Platform) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.platforms = p
	s.raw[MethodPlatformList] = p != nil
	if p == nil {
		s.platforms = s.opts.Platforms
	}
}

// SetEstimate replaces the CalculatorService's answer (malformed payload
// tests use it); nil restores the price model.
func (s *Server) SetEstimate(fn func(*billing.EstimateRequest) (*billing.EstimateResponse, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.estimate = fn
	s.raw[MethodEstimate] = fn != nil
}

// AddToken makes the fake accept another static IAM token.
func (s *Server) AddToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = true
}
