// Package openapicheck checks what a provider and its fake exchange
// against the cloud's published OpenAPI spec, with kin-openapi: each
// request must be an operation of the spec with its parameters and body,
// each reply a documented status with a body of the documented schema.
// Unlike a plain OpenAPI validator it also refuses object members the
// spec does not list (a misspelt member is otherwise silently ignored by
// both sides), unknown query parameters, and a body the operation does
// not take. Only tests import it: each fake sits behind a Recorder, so
// every exchange of every test is checked.
package openapicheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider/fakeapi"
)

// Spec is a loaded OpenAPI document.
type Spec struct {
	doc      *openapi3.T
	router   routers.Router
	basePath string // the server path prefix the requests carry, e.g. /api/v1
}

// Load reads the spec in file; basePath is the server path prefix the
// requests carry (e.g. /api/v1), which the spec's paths omit.
func Load(t testing.TB, file, basePath string) *Spec {
	t.Helper()
	s, err := New(file, basePath)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// New is Load for callers without a testing.TB (a testscript's setup).
func New(file, basePath string) (*Spec, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(file)
	if err != nil {
		return nil, fmt.Errorf("load spec %s: %v", file, err)
	}
	// Requests are matched on their path less basePath, whatever host the
	// test server has.
	doc.Servers = nil
	// Credentials are not what this checks (the fakes check them), and
	// Hyperstack's spec requires a security scheme it never defines.
	doc.Security = nil
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			op.Security = nil
		}
	}
	strict(doc)
	// The published specs carry examples that break their own schemas
	// (Lambda's prices as strings, Hyperstack's metadata "{}"): the
	// examples are not what is checked.
	router, err := legacy.NewRouter(doc, openapi3.DisableExamplesValidation())
	if err != nil {
		return nil, fmt.Errorf("spec %s: %v", file, err)
	}
	if doc.Paths.Len() == 0 {
		return nil, fmt.Errorf("spec %s has no operations", file)
	}
	return &Spec{doc: doc, router: router, basePath: basePath}, nil
}

// strict makes every object schema of the document that lists its
// members and says nothing of others refuse others (additionalProperties
// false), except the branches of an allOf of several schemas, which each
// list only part of the members.
func strict(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef, branch bool)
	walk = func(ref *openapi3.SchemaRef, branch bool) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if !branch && len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties.Has = openapi3.Ptr(false)
		}
		for _, p := range s.Properties {
			walk(p, false)
		}
		walk(s.Items, false)
		walk(s.AdditionalProperties.Schema, false)
		for _, b := range s.AllOf {
			walk(b, len(s.AllOf) > 1)
		}
		for _, list := range []openapi3.SchemaRefs{s.OneOf, s.AnyOf} {
			for _, b := range list {
				walk(b, false)
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for _, mt := range op.RequestBody.Value.Content {
					walk(mt.Schema, false)
				}
			}
			for _, r := range op.Responses.Map() {
				if r.Value != nil {
					for _, mt := range r.Value.Content {
						walk(mt.Schema, false)
					}
				}
			}
		}
	}
}

// AllowRequestMembers lets the request body of op ("POST /path", as the
// spec writes the path) carry members beyond the spec, e.g. fields newer
// versions of the API accept. They are added to the body's schema, so
// wherever else that schema is used they are allowed too.
func (s *Spec) AllowRequestMembers(op string, members ...string) {
	method, path, _ := strings.Cut(op, " ")
	o := s.doc.Paths.Find(path).GetOperation(method)
	if o == nil || o.RequestBody == nil || o.RequestBody.Value == nil {
		panic(fmt.Sprintf("openapicheck: %s has no request body in the spec", op))
	}
	schema := o.RequestBody.Value.Content.Get("application/json").Schema.Value
	for _, m := range members {
		if _, ok := schema.Properties[m]; !ok {
			schema.WithPropertyRef(m, openapi3.NewSchemaRef("", openapi3.NewSchema()))
		}
	}
}

func (s *Spec) options() *openapi3filter.Options {
	o := &openapi3filter.Options{
		MultiError:                        true,
		AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
		RejectWhenRequestBodyNotSpecified: true,
		SkipSettingDefaults:               true,
	}
	// An OpenAPI 3.1 document is checked as JSON Schema 2020-12, whose
	// errors have no details to leave out.
	if !strings.HasPrefix(s.doc.OpenAPI, "3.1") {
		o.SchemaValidationOptions = []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()}
	}
	return o
}

// checkRequest validates one request against the spec: a documented
// operation, its parameters (and no others) and its body. It returns the
// validation input for the reply's check (nil: not an operation).
func (s *Spec) checkRequest(r *http.Request, body []byte) (*openapi3filter.RequestValidationInput, string, []string) {
	local := r.Clone(r.Context())
	// Routed on the path as sent, so that an escaped slash stays within
	// its parameter (an SSH key's fingerprint holds base64's "/"); the
	// parameters are unescaped after.
	path := r.URL.EscapedPath()
	local.URL.Path, local.URL.RawPath = strings.TrimPrefix(path, s.basePath), ""
	local.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := s.router.FindRoute(local)
	if err != nil {
		return nil, "", []string{fmt.Sprintf("%s %s is not an operation of the spec (%v)", r.Method, path, err)}
	}
	for k, v := range params {
		if u, err := url.PathUnescape(v); err == nil {
			params[k] = u
		}
	}
	name := route.Method + " " + route.Path
	var errs []string
	known := map[string]bool{}
	for _, list := range []openapi3.Parameters{route.PathItem.Parameters, route.Operation.Parameters} {
		for _, p := range list {
			if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
				known[p.Value.Name] = true
			}
		}
	}
	for q := range local.URL.Query() {
		if !known[q] {
			errs = append(errs, fmt.Sprintf("%s: query parameter %q is not in the spec", name, q))
		}
	}
	in := &openapi3filter.RequestValidationInput{Request: local, PathParams: params, Route: route, Options: s.options()}
	if len(bytes.TrimSpace(body)) > 0 && route.Operation.RequestBody == nil {
		errs = append(errs, name+": sends a body the spec does not define")
	} else {
		errs = append(errs, describe(name+" request", openapi3filter.ValidateRequest(context.Background(), in))...)
	}
	return in, name, errs
}

// checkResponse validates a reply: a documented status (429 is allowed
// everywhere: rate limiting is documented in prose, not per operation)
// and its body.
func (s *Spec) checkResponse(in *openapi3filter.RequestValidationInput, name string, status int, header http.Header, body []byte) []string {
	if in.Route.Operation.Responses.Status(status) == nil && in.Route.Operation.Responses.Default() == nil {
		if status == http.StatusTooManyRequests {
			return nil
		}
		return []string{fmt.Sprintf("%s: status %d is not documented", name, status)}
	}
	err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: s.options(),
	})
	return describe(fmt.Sprintf("%s %d reply", name, status), err)
}

// describe turns kin-openapi's (nested) errors into one line each, saying
// where in the body each is ("at /security_rules/0").
func describe(where string, err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	var walk func(prefix string, err error)
	walk = func(prefix string, err error) {
		var multi openapi3.MultiError
		var req *openapi3filter.RequestError
		var resp *openapi3filter.ResponseError
		var schema *openapi3.SchemaError
		switch {
		case errors.As(err, &multi):
			for _, e := range multi {
				walk(prefix, e)
			}
		case errors.As(err, &req) && req.Err != nil:
			p := prefix
			if req.Parameter != nil {
				p += fmt.Sprintf(": %s parameter %q", req.Parameter.In, req.Parameter.Name)
			}
			walk(p, req.Err)
		case errors.As(err, &resp) && resp.Err != nil:
			walk(prefix, resp.Err)
		case errors.As(err, &schema):
			at := "/" + strings.Join(schema.JSONPointer(), "/")
			out = append(out, fmt.Sprintf("%s at %s: %s", prefix, at, schemaReason(schema)))
		default:
			out = append(out, prefix+": "+err.Error())
		}
	}
	walk(where, err)
	return out
}

func schemaReason(e *openapi3.SchemaError) string {
	if e.Origin != nil {
		return e.Origin.Error()
	}
	if e.Reason != "" {
		return e.Reason
	}
	return "does not match the schema's " + e.SchemaField
}

// Recorder is middleware that checks every exchange against the spec and
// remembers the violations and the operations seen. Replies marked with
// fakeapi.FaultHeader (injected faults) are exempt from the reply check.
type Recorder struct {
	spec *Spec
	next http.Handler

	mu         sync.Mutex
	violations []string
	seen       map[string]int
}

// NewRecorder checks every exchange with next against spec.
func NewRecorder(spec *Spec, next http.Handler) *Recorder {
	return &Recorder{spec: spec, next: next, seen: map[string]int{}}
}

func (c *Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	in, name, errs := c.spec.checkRequest(r, body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	if in != nil && rec.Header().Get(fakeapi.FaultHeader) == "" {
		errs = append(errs, c.spec.checkResponse(in, name, rec.Code, rec.Header(), rec.Body.Bytes())...)
	}
	c.mu.Lock()
	c.violations = append(c.violations, errs...)
	if in != nil {
		c.seen[name]++
	}
	c.mu.Unlock()
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes()) //nolint:errcheck
}

// Report returns the violations so far and how often each operation
// ("GET /path") was seen.
func (c *Recorder) Report() ([]string, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]int{}
	for k, v := range c.seen {
		seen[k] = v
	}
	return slices.Clone(c.violations), seen
}

// RequireExercised fails t if any exchange so far broke the spec or if an
// operation in ops ("GET /path") was never seen, and logs the operations
// checked. A test that drives every call a provider makes ends with it,
// pinning which operations the spec check covered.
func (c *Recorder) RequireExercised(t testing.TB, ops ...string) {
	t.Helper()
	violations, seen := c.Report()
	if len(violations) > 0 {
		t.Fatalf("violations:\n  %s", strings.Join(violations, "\n  "))
	}
	for _, op := range ops {
		if seen[op] == 0 {
			t.Errorf("operation %s was not exercised", op)
		}
	}
	var checked []string
	for op := range seen {
		checked = append(checked, op)
	}
	sort.Strings(checked)
	t.Logf("checked operations: %v", checked)
}

// Exchange checks one canned exchange, a request to target answered with
// status and a JSON reply, and returns the violations found: how a test
// shows the checker catches what it exists to catch.
func (s *Spec) Exchange(method, target, body string, status int, reply string) []string {
	rec := NewRecorder(s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(reply)) //nolint:errcheck
	}))
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec.ServeHTTP(httptest.NewRecorder(), req)
	v, _ := rec.Report()
	return v
}
