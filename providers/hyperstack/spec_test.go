package hyperstack

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// TestExchangesMatchSpec drives every kind of call the provider makes
// through the spec checker and pins which operations were checked.
func TestExchangesMatchSpec(t *testing.T) {
	e := newEnv(t, fastFake(), nil)
	ctx := ctxT(t)
	if err := e.p.CheckCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	hostID := uuid.NewString()
	spec := testSpec(hostID)
	spec.HostKey = &provider.HostKey{PrivatePEM: "-----BEGIN OPENSSH PRIVATE KEY-----\nX\n-----END OPENSSH PRIVATE KEY-----", Public: "ssh-ed25519 AAAA h"}
	in, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Stop(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.p, in.Ref(hostID), provider.StateStopped)
	if _, err := e.p.Start(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.p, in.Ref(hostID), provider.StateRunning)
	id, _ := strconv.Atoi(in.ID)
	e.fake.SetStatus(id, "SHUTOFF")
	if _, err := e.p.Start(ctx, in.Ref(hostID)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.List(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Delete(ctx, in.Ref(hostID), false); err != nil {
		t.Fatal(err)
	}
	e.spec.RequireExercised(t,
		"GET /core/environments", "POST /core/environments", "GET /core/keypairs", "POST /core/keypairs",
		"GET /core/flavors", "GET /pricebook", "GET /core/volumes", "POST /core/volumes", "DELETE /core/volumes/{volume_id}",
		"GET /core/virtual-machines", "POST /core/virtual-machines", "GET /core/virtual-machines/{vm_id}",
		"DELETE /core/virtual-machines/{vm_id}", "POST /core/virtual-machines/{vm_id}/attach-volumes",
		"GET /core/virtual-machines/{vm_id}/hibernate", "GET /core/virtual-machines/{vm_id}/hibernate-restore",
		"GET /core/virtual-machines/{vm_id}/start", "POST /core/virtual-machines/{vm_id}/sg-rules",
	)
}

// The checker must catch what it exists to catch.
func TestSpecCheckerCatchesViolations(t *testing.T) {
	spec := loadSpec(t)
	for name, tc := range map[string]struct {
		method, path, body string
		status             int
		reply              string
		mention            string
	}{
		"POST for a GET action": {"POST", "/v1/core/virtual-machines/1/hibernate", "", 200, `{}`, "not an operation"},
		"missing required":      {"POST", "/v1/core/volumes", `{"name":"v","environment_name":"e","size":1}`, 200, `{"status":true}`, `"volume_type" is missing`},
		"string for integer":    {"POST", "/v1/core/volumes", `{"name":"v","environment_name":"e","size":"1","volume_type":"t"}`, 200, `{"status":true}`, "at /size: value must be an integer"},
		"unknown member":        {"POST", "/v1/core/environments", `{"name":"e","region":"r","zone":"z"}`, 200, `{"status":true}`, `property "zone" is unsupported`},
		"bad protocol":          {"POST", "/v1/core/virtual-machines", `{"name":"n","environment_name":"e","flavor_name":"f","key_name":"k","count":1,"security_rules":[{"direction":"ingress","ethertype":"IPv4","protocol":"tcpp","remote_ip_prefix":"0.0.0.0/0"}]}`, 200, `{"status":true,"instances":[]}`, "not one of"},
		"rule without its VM":   {"POST", "/v1/core/virtual-machines", `{"name":"n","environment_name":"e","flavor_name":"f","key_name":"k","count":1,"security_rules":[{"direction":"ingress","ethertype":"IPv4","protocol":"tcp","remote_ip_prefix":"0.0.0.0/0"}]}`, 200, `{"status":true,"instances":[]}`, `at /security_rules/0/virtual_machine_id: property "virtual_machine_id" is missing`},
		"reply member unknown":  {"GET", "/v1/core/virtual-machines/1", "", 200, `{"status":true,"instance":{"id":1,"nmae":"x"}}`, `at /instance: property "nmae" is unsupported`},
		"reply wrong type":      {"GET", "/v1/pricebook", "", 200, `{"data":[]}`, "value must be an array"},
		"undocumented status":   {"GET", "/v1/core/keypairs", "", 404, `{"status":false,"message":"m"}`, "not documented"},
		"unknown query":         {"GET", "/v1/core/flavors?region_name=X", "", 200, `{"status":true,"data":[]}`, `query parameter "region_name"`},
	} {
		v := spec.Exchange(tc.method, tc.path, tc.body, tc.status, tc.reply)
		if !strings.Contains(strings.Join(v, "\n"), tc.mention) {
			t.Errorf("%s: violations %q do not mention %q", name, v, tc.mention)
		}
	}
}
