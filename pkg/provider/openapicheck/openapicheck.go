// Package openapicheck is a small OpenAPI 3.0 checker for provider
// tests: it loads the published spec, matches each request to an
// operation, and checks request and reply bodies against the schemas
// (types, required members, enums, lengths, nullability; unknown members
// are errors unless allowed by name). It checks what a provider and its
// fake exchange, not every corner of OpenAPI. Only tests import it: each
// fake sits behind a Recorder, so every exchange of every test is checked
// against the cloud's published spec.
package openapicheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider/fakeapi"
)

// Spec is a loaded OpenAPI document.
type Spec struct {
	doc      map[string]any
	basePath string // the server path prefix, e.g. /api/v1
	ops      []specOp
	// extraRequest lists members a request body may carry beyond the
	// spec, by operation ("POST /core/virtual-machines").
	extraRequest map[string][]string
	// specBugs are violations that are the spec's own mistakes, by the
	// text of the violation; each is explained where it is added.
	specBugs map[string]bool
}

type specOp struct {
	method, path string
	re           *regexp.Regexp
	op           map[string]any
}

// Load reads the spec in file; basePath is the server path prefix the
// requests carry (e.g. /api/v1), which the spec's paths omit.
func Load(t testing.TB, file, basePath string) *Spec {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse spec %s: %v", file, err)
	}
	s := &Spec{doc: doc, basePath: basePath, extraRequest: map[string][]string{}, specBugs: map[string]bool{}}
	paths, _ := doc["paths"].(map[string]any)
	for p, item := range paths {
		methods, _ := item.(map[string]any)
		for m, op := range methods {
			opm, ok := op.(map[string]any)
			if !ok || m == "parameters" {
				continue
			}
			re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(p), `[^/]+`) + "$")
			s.ops = append(s.ops, specOp{method: strings.ToUpper(m), path: p, re: re, op: opm})
		}
	}
	// Literal paths win over templated ones (/instances/x vs a template).
	sort.Slice(s.ops, func(i, j int) bool { return strings.Count(s.ops[i].path, "{") < strings.Count(s.ops[j].path, "{") })
	if len(s.ops) == 0 {
		t.Fatalf("spec %s has no operations", file)
	}
	return s
}

func (s *Spec) find(method, urlPath string) (specOp, bool) {
	p := strings.TrimPrefix(urlPath, s.basePath)
	for _, o := range s.ops {
		if o.method == method && o.re.MatchString(p) {
			return o, true
		}
	}
	return specOp{}, false
}

func (s *Spec) resolve(v any) map[string]any {
	m, _ := v.(map[string]any)
	for m != nil {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var cur any = s.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		m, _ = cur.(map[string]any)
	}
	return m
}

// jsonSchema returns the application/json schema of a request body or
// response object, or nil.
func (s *Spec) jsonSchema(obj any) map[string]any {
	o := s.resolve(obj)
	content, _ := o["content"].(map[string]any)
	js, _ := content["application/json"].(map[string]any)
	if js == nil {
		return nil
	}
	return s.resolve(js["schema"])
}

// validate checks v (decoded with UseNumber) against schema and returns
// the violations, each naming where it is.
func (s *Spec) validate(v any, schema map[string]any, where string, strict bool, extra []string) []string {
	schema = s.resolve(schema)
	if schema == nil {
		return nil
	}
	if v == nil {
		if n, _ := schema["nullable"].(bool); n {
			return nil
		}
		if _, typed := schema["type"]; !typed && schema["properties"] == nil {
			return nil
		}
		return []string{where + ": null where the spec does not allow it"}
	}
	var errs []string
	for _, key := range []string{"allOf"} {
		if list, ok := schema[key].([]any); ok {
			for _, sub := range list {
				errs = append(errs, s.validate(v, s.resolve(sub), where, false, nil)...)
			}
		}
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		if list, ok := schema[key].([]any); ok {
			matched := false
			for _, sub := range list {
				if len(s.validate(v, s.resolve(sub), where, false, nil)) == 0 {
					matched = true
				}
			}
			if !matched {
				errs = append(errs, where+": matches none of "+key)
			}
		}
	}
	if enum, ok := schema["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", where, v, enum))
		}
	}
	typ, _ := schema["type"].(string)
	if typ == "" && schema["properties"] != nil {
		typ = "object"
	}
	switch typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want an object, got %T", where, v))
		}
		if req, ok := schema["required"].([]any); ok {
			for _, r := range req {
				if _, ok := obj[r.(string)]; !ok {
					errs = append(errs, fmt.Sprintf("%s: required member %q is missing", where, r))
				}
			}
		}
		props, _ := schema["properties"].(map[string]any)
		addl := schema["additionalProperties"]
		for k, val := range obj {
			if ps, ok := props[k]; ok {
				errs = append(errs, s.validate(val, s.resolve(ps), where+"."+k, strict, nil)...)
				continue
			}
			switch a := addl.(type) {
			case map[string]any:
				errs = append(errs, s.validate(val, s.resolve(a), where+"."+k, strict, nil)...)
			case bool:
				if !a {
					errs = append(errs, fmt.Sprintf("%s: member %q is not allowed", where, k))
				}
			default:
				if strict && props != nil && !containsStr(extra, k) {
					errs = append(errs, fmt.Sprintf("%s: member %q is not in the spec", where, k))
				}
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want an array, got %T", where, v))
		}
		if n, ok := num(schema["minItems"]); ok && float64(len(arr)) < n {
			errs = append(errs, fmt.Sprintf("%s: %d items, want at least %v", where, len(arr), n))
		}
		if n, ok := num(schema["maxItems"]); ok && float64(len(arr)) > n {
			errs = append(errs, fmt.Sprintf("%s: %d items, want at most %v", where, len(arr), n))
		}
		for i, it := range arr {
			errs = append(errs, s.validate(it, s.resolve(schema["items"]), fmt.Sprintf("%s[%d]", where, i), strict, nil)...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want a string, got %T (%v)", where, v, v))
		}
		if n, ok := num(schema["minLength"]); ok && float64(len([]rune(str))) < n {
			errs = append(errs, fmt.Sprintf("%s: %q is shorter than %v", where, str, n))
		}
		if n, ok := num(schema["maxLength"]); ok && float64(len([]rune(str))) > n {
			errs = append(errs, fmt.Sprintf("%s: longer than %v characters", where, n))
		}
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want a %s, got %T (%v)", where, typ, v, v))
		}
		if typ == "integer" {
			if _, err := n.Int64(); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %s is not an integer", where, n))
			}
		}
		f, _ := n.Float64()
		if m, ok := num(schema["minimum"]); ok && f < m {
			errs = append(errs, fmt.Sprintf("%s: %v is below the minimum %v", where, f, m))
		}
		if m, ok := num(schema["maximum"]); ok && f > m {
			errs = append(errs, fmt.Sprintf("%s: %v is above the maximum %v", where, f, m))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: want a boolean, got %T", where, v))
		}
	}
	return errs
}

func num(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// checkRequest validates one request against the spec: a documented
// operation, its required path and query parameters, and its body.
func (s *Spec) checkRequest(r *http.Request, body []byte) (specOp, []string) {
	o, ok := s.find(r.Method, r.URL.Path)
	if !ok {
		return o, []string{fmt.Sprintf("%s %s is not an operation of the spec", r.Method, r.URL.Path)}
	}
	name := o.method + " " + o.path
	var errs []string
	known := map[string]bool{}
	params, _ := o.op["parameters"].([]any)
	for _, p := range params {
		pm := s.resolve(p)
		if pm["in"] == "query" {
			known[pm["name"].(string)] = true
			if req, _ := pm["required"].(bool); req && !r.URL.Query().Has(pm["name"].(string)) {
				errs = append(errs, fmt.Sprintf("%s: required query parameter %s missing", name, pm["name"]))
			}
		}
	}
	for q := range r.URL.Query() {
		if !known[q] {
			errs = append(errs, fmt.Sprintf("%s: query parameter %q is not in the spec", name, q))
		}
	}
	rb, hasBody := o.op["requestBody"]
	switch {
	case hasBody && len(bytes.TrimSpace(body)) == 0:
		if req, _ := s.resolve(rb)["required"].(bool); req {
			errs = append(errs, name+": the request body is required")
		}
	case hasBody:
		v, err := decodeJSON(body)
		if err != nil {
			return o, append(errs, fmt.Sprintf("%s: request body is not JSON: %v", name, err))
		}
		errs = append(errs, s.validate(v, s.jsonSchema(rb), name+" request", true, s.extraRequest[name])...)
	case len(bytes.TrimSpace(body)) > 0:
		errs = append(errs, name+": sends a body the spec does not define")
	}
	return o, errs
}

// checkResponse validates a reply of o: a documented status (429 is
// allowed everywhere: rate limiting is documented in prose, not per
// operation) and, for JSON content, its schema.
func (s *Spec) checkResponse(o specOp, status int, body []byte) []string {
	name := o.method + " " + o.path
	responses, _ := o.op["responses"].(map[string]any)
	resp, ok := responses[fmt.Sprint(status)]
	if !ok {
		if status == http.StatusTooManyRequests {
			return nil
		}
		return []string{fmt.Sprintf("%s: status %d is not documented", name, status)}
	}
	schema := s.jsonSchema(resp)
	if schema == nil {
		return nil
	}
	v, err := decodeJSON(body)
	if err != nil {
		return []string{fmt.Sprintf("%s: %d reply is not JSON: %v", name, status, err)}
	}
	return s.validate(v, schema, fmt.Sprintf("%s %d reply", name, status), true, nil)
}

// AllowRequestMembers lets request bodies of op ("POST /path", as the
// spec writes the path) carry members beyond the spec, e.g. fields newer
// versions of the API accept. It replaces what was allowed before.
func (s *Spec) AllowRequestMembers(op string, members ...string) {
	s.extraRequest[op] = members
}

// IgnoreViolation drops a violation, by its exact text, that is the
// spec's own mistake; the caller explains why where it calls this.
func (s *Spec) IgnoreViolation(text string) {
	s.specBugs[text] = true
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
	r.Body = io.NopCloser(bytes.NewReader(body))
	o, errs := c.spec.checkRequest(r, body)
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	if o.op != nil && rec.Header().Get(fakeapi.FaultHeader) == "" {
		errs = append(errs, c.spec.checkResponse(o, rec.Code, rec.Body.Bytes())...)
	}
	c.mu.Lock()
	for _, e := range errs {
		if !c.spec.specBugs[e] {
			c.violations = append(c.violations, e)
		}
	}
	if o.op != nil {
		c.seen[o.method+" "+o.path]++
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
	return append([]string(nil), c.violations...), seen
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
// status and reply, and returns the violations found: how a test shows
// the checker catches what it exists to catch.
func (s *Spec) Exchange(method, target, body string, status int, reply string) []string {
	rec := NewRecorder(s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(reply)) //nolint:errcheck
	}))
	rec.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, target, strings.NewReader(body)))
	v, _ := rec.Report()
	return v
}
