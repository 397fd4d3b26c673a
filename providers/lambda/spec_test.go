package lambda

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/openapicheck"
)

// TestExchangesMatchSpec drives every call the provider makes through
// the spec checker and requires that each operation it uses was checked
// (every test checks its own exchanges too; this one pins the coverage).
func TestExchangesMatchSpec(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.HostKey = &provider.HostKey{PrivatePEM: "-----BEGIN OPENSSH PRIVATE KEY-----\nX\n-----END OPENSSH PRIVATE KEY-----", Public: "ssh-ed25519 AAAA h"}
	if err := e.p.CheckCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e.p, in.Ref(hostID), provider.StateRunning)
	e.fake.MarkUnhealthy(in.ID)
	if _, err := e.p.Start(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Status(ctx, provider.Ref{Name: spec.Name, InstanceID: "00000000000000000000000000000000"}); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := e.p.Delete(ctx, in.Ref(hostID), false); err != nil {
		t.Fatal(err)
	}
	e.spec.RequireExercised(t,
		"GET /instance-types", "GET /instances", "GET /instances/{id}", "POST /instance-operations/launch",
		"POST /instance-operations/terminate", "POST /instance-operations/restart", "GET /ssh-keys", "POST /ssh-keys",
	)
}

// The checker must catch what it exists to catch.
func TestSpecCheckerCatchesViolations(t *testing.T) {
	spec := openapicheck.Load(t, specFile, "/api/v1")
	spec.AllowRequestMembers("POST /instance-operations/launch", "user_data")
	for name, tc := range map[string]struct {
		method, path, body string
		status             int
		reply              string
		mention            string
	}{
		"unknown path":        {"GET", "/api/v1/instance", "", 200, `{}`, "not an operation"},
		"unknown method":      {"DELETE", "/api/v1/instances", "", 200, `{}`, "not an operation"},
		"missing required":    {"POST", "/api/v1/instance-operations/launch", `{"region_name":"r","instance_type_name":"t"}`, 200, `{"data":{"instance_ids":[]}}`, `"ssh_key_names" is missing`},
		"two ssh keys":        {"POST", "/api/v1/instance-operations/launch", `{"region_name":"r","instance_type_name":"t","ssh_key_names":["a","b"]}`, 200, `{"data":{"instance_ids":[]}}`, "maximum number of items is 1"},
		"unknown member":      {"POST", "/api/v1/instance-operations/launch", `{"region_name":"r","instance_type_name":"t","ssh_key_names":["a"],"user_date":"x"}`, 200, `{"data":{"instance_ids":[]}}`, `property "user_date" is unsupported`},
		"quantity 2":          {"POST", "/api/v1/instance-operations/launch", `{"region_name":"r","instance_type_name":"t","ssh_key_names":["a"],"quantity":2}`, 200, `{"data":{"instance_ids":[]}}`, "number must be at most 1"},
		"wrong reply type":    {"GET", "/api/v1/instances", "", 200, `{"data":{}}`, "value must be an array"},
		"bad status enum":     {"GET", "/api/v1/instances/abc", "", 200, `{"data":{"id":"a","status":"running","ssh_key_names":[],"file_system_names":[]}}`, "not one of"},
		"undocumented status": {"GET", "/api/v1/instances", "", 404, `{"error":{"code":"global/unknown","message":"m"}}`, "not documented"},
		"bad error code":      {"GET", "/api/v1/instances/abc", "", 404, `{"error":{"code":"nope","message":"m"}}`, "not one of"},
		"integer as string":   {"GET", "/api/v1/instance-types", "", 200, `{"data":{"t":{"instance_type":{"name":"t","description":"d","gpu_description":"g","price_cents_per_hour":"80","specs":{"vcpus":1,"memory_gib":1,"storage_gib":1,"gpus":1}},"regions_with_capacity_available":[]}}}`, "at /data/t/instance_type/price_cents_per_hour: value must be an integer"},
		"body on a GET":       {"GET", "/api/v1/instances", `{"x":1}`, 200, `{"data":[]}`, "body the spec does not define"},
		"query not in spec":   {"GET", "/api/v1/instances?page=2", "", 200, `{"data":[]}`, `query parameter "page"`},
	} {
		v := spec.Exchange(tc.method, tc.path, tc.body, tc.status, tc.reply)
		if !strings.Contains(strings.Join(v, "\n"), tc.mention) {
			t.Errorf("%s: violations %q do not mention %q", name, v, tc.mention)
		}
	}
}
