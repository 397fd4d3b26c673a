package nebiusfake

import (
	"time"

	"google.golang.org/grpc/codes"

	common "github.com/nebius/gosdk/proto/nebius/common/v1"
	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"
)

// Full gRPC method names, for Inject and Calls.
const (
	MethodInstanceGet       = compute.InstanceService_Get_FullMethodName
	MethodInstanceGetByName = compute.InstanceService_GetByName_FullMethodName
	MethodInstanceList      = compute.InstanceService_List_FullMethodName
	MethodInstanceCreate    = compute.InstanceService_Create_FullMethodName
	MethodInstanceDelete    = compute.InstanceService_Delete_FullMethodName
	MethodInstanceStart     = compute.InstanceService_Start_FullMethodName
	MethodInstanceStop      = compute.InstanceService_Stop_FullMethodName
	MethodDiskGet           = compute.DiskService_Get_FullMethodName
	MethodDiskGetByName     = compute.DiskService_GetByName_FullMethodName
	MethodDiskList          = compute.DiskService_List_FullMethodName
	MethodDiskCreate        = compute.DiskService_Create_FullMethodName
	MethodDiskUpdate        = compute.DiskService_Update_FullMethodName
	MethodDiskDelete        = compute.DiskService_Delete_FullMethodName
	MethodPlatformList      = compute.PlatformService_List_FullMethodName
	MethodOperationGet      = common.OperationService_Get_FullMethodName
	MethodEstimate          = "/nebius.billing.v1alpha1.CalculatorService/Estimate"
	MethodResourceAdvice    = "/nebius.capacity.v1.ResourceAdviceService/List"
	MethodTokenExchange     = exchangeMethod
)

// Fault is an injected failure of one call.
type Fault struct {
	// Code is the gRPC status returned; OK with Hang set means the call
	// hangs and then proceeds normally.
	Code    codes.Code
	Message string
	// RetryAfter, when positive, adds a google.rpc.RetryInfo detail.
	RetryAfter time.Duration
	// Detail is an optional nebius.common.v1.ServiceError detail.
	Detail *common.ServiceError
	// Hang delays the reply by this long, or until the caller gives up.
	Hang time.Duration
	// After runs the request first and then returns the error anyway:
	// the call took effect but the client is told it failed.
	After bool
}

func (f Fault) err() error {
	msg := f.Message
	if msg == "" {
		msg = "injected " + f.Code.String()
	}
	return serviceError(f.Code, msg, f.Detail, f.RetryAfter).Err()
}

type pendingFault struct {
	f     Fault
	times int
}

// Inject makes the next `times` calls of method fail with f (times < 0:
// every call until Clear). Faults queued for one method apply in order.
func (s *Server) Inject(method string, times int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[method] = append(s.faults[method], &pendingFault{f: f, times: times})
}

// Clear removes every queued fault.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string][]*pendingFault{}
}

// takeFault pops the fault for the next call of method. Called with s.mu held.
func (s *Server) takeFault(method string) *Fault {
	q := s.faults[method]
	if len(q) == 0 {
		return nil
	}
	pf := q[0]
	f := pf.f
	if pf.times > 0 {
		pf.times--
		if pf.times == 0 {
			s.faults[method] = q[1:]
		}
	}
	return &f
}

// Unavailable is a transient server failure.
func Unavailable() Fault {
	return Fault{Code: codes.Unavailable, Message: "service temporarily unavailable"}
}

// RateLimited is RESOURCE_EXHAUSTED with a TooManyRequests detail and a
// RetryInfo asking the caller to wait retryAfter.
func RateLimited(retryAfter time.Duration) Fault {
	return Fault{Code: codes.ResourceExhausted, Message: "too many requests", RetryAfter: retryAfter,
		Detail: &common.ServiceError{Code: "TooManyRequests", RetryType: common.ServiceError_CALL,
			Details: &common.ServiceError_TooManyRequests{TooManyRequests: &common.TooManyRequests{Violation: "requests per second per project"}}}}
}

// DeadlineExceeded is a server-side timeout.
func DeadlineExceeded() Fault {
	return Fault{Code: codes.DeadlineExceeded, Message: "upstream request timeout"}
}

// Hang delays the call by d (or until the client's deadline), then
// serves it normally.
func Hang(d time.Duration) Fault { return Fault{Hang: d} }

// QuotaExceeded is RESOURCE_EXHAUSTED with a QuotaFailure detail.
func QuotaExceeded() Fault {
	return Fault{Code: codes.ResourceExhausted, Message: "quota exceeded",
		Detail: &common.ServiceError{Code: "QuotaFailure", RetryType: common.ServiceError_NOTHING,
			Details: &common.ServiceError_QuotaFailure{QuotaFailure: &common.QuotaFailure{Violations: []*common.QuotaFailure_Violation{
				{Quota: "compute.instance.gpu.h100", Limit: "0", Requested: "1", Message: "GPU quota exhausted"}}}}}}
}

// Capacity is RESOURCE_EXHAUSTED with a NotEnoughResources detail,
// returned by the call itself (SetCapacity fails the operation instead).
func Capacity() Fault {
	st := notEnoughResources("gpu", "1 x gpu")
	f := Fault{Code: codes.ResourceExhausted, Message: st.Message()}
	f.Detail = &common.ServiceError{Code: "NotEnoughResources", Details: &common.ServiceError_NotEnoughResources{
		NotEnoughResources: &common.NotEnoughResources{Violations: []*common.NotEnoughResources_Violation{
			{ResourceType: "gpu", Requested: "1", Message: "no free capacity"}}}}}
	return f
}

// ErrorAfterCreate serves the call and then reports UNAVAILABLE: the
// resource exists but the client believes the call failed.
func ErrorAfterCreate() Fault {
	return Fault{Code: codes.Unavailable, Message: "connection reset after the request was accepted", After: true}
}

// PermissionDenied is what Nebius answers for a token without access.
func PermissionDenied() Fault {
	return Fault{Code: codes.PermissionDenied, Message: "permission denied"}
}
