package gcpfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/providers/gcp/gcpfake"
)

// clock is a manual clock, so the state sequences are stepped through
// rather than waited for.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func do(t *testing.T, method, url, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: response is not JSON: %s", method, url, raw)
	}
	return resp.StatusCode, m, resp.Header
}

const instanceJSON = `{
  "name": "vm1",
  "machineType": "zones/us-central1-a/machineTypes/e2-standard-2",
  "labels": {"cocalc-hosts-deployment": "d1"},
  "disks": [
    {"boot": true, "autoDelete": true, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb": "20"}},
    {"boot": false, "autoDelete": false, "deviceName": "data", "source": "projects/p1/zones/us-central1-a/disks/vm1-data"}
  ],
  "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]}],
  "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": true, "provisioningModel": "STANDARD"}
}`

// The fake speaks the documented JSON: camelCase names, 64-bit integers
// as strings, operations with string statuses, Google's error shape; and
// it moves through the real state sequences.
func TestWireFormatAndStateSequences(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	srv := gcpfake.New(gcpfake.Options{
		Project: "p1", Now: clk.now,
		OperationTime: 10 * time.Second, ProvisioningTime: 20 * time.Second, StagingTime: 10 * time.Second, StoppingTime: 30 * time.Second,
	})
	defer srv.Close()
	zone := srv.URL + "/compute/v1/projects/p1/zones/us-central1-a"

	code, op, _ := do(t, "POST", zone+"/disks?requestId=11111111-1111-4111-8111-111111111111", `{"name":"vm1-data","sizeGb":"30","type":"zones/us-central1-a/diskTypes/pd-balanced"}`)
	if code != 200 || op["kind"] != "compute#operation" || op["status"] != "PENDING" || op["operationType"] != "insert" {
		t.Fatalf("disk insert: %d %v", code, op)
	}
	if _, isString := op["id"].(string); !isString {
		t.Fatalf("operation id %v (%T) is not a string", op["id"], op["id"])
	}
	opURL := zone + "/operations/" + op["name"].(string)
	clk.add(5 * time.Second)
	if _, o, _ := do(t, "GET", opURL, ""); o["status"] != "RUNNING" {
		t.Fatalf("operation halfway: %v", o["status"])
	}
	clk.add(5 * time.Second)
	if _, o, _ := do(t, "GET", opURL, ""); o["status"] != "DONE" || o["progress"] != float64(100) {
		t.Fatalf("operation at the end: %v", o)
	}
	_, d, _ := do(t, "GET", zone+"/disks/vm1-data", "")
	if d["sizeGb"] != "30" || d["status"] != "READY" || !strings.HasSuffix(d["selfLink"].(string), "/zones/us-central1-a/disks/vm1-data") {
		t.Fatalf("disk: %v", d)
	}
	// The same request id again is the same operation, not a second disk.
	code, again, _ := do(t, "POST", zone+"/disks?requestId=11111111-1111-4111-8111-111111111111", `{"name":"vm1-data","sizeGb":"30"}`)
	if code != 200 || again["name"] != op["name"] {
		t.Fatalf("repeated request id: %d %v", code, again)
	}
	for _, id := range []string{"retry-1", "00000000-0000-0000-0000-000000000000"} {
		if code, _, _ := do(t, "POST", zone+"/disks?requestId="+id, `{"name":"vm2-data","sizeGb":"30"}`); code != 400 {
			t.Fatalf("requestId %s was accepted (%d)", id, code)
		}
	}
	code, e, _ := do(t, "POST", zone+"/disks", `{"name":"vm1-data","sizeGb":"30"}`)
	errObj, _ := e["error"].(map[string]any)
	if code != 409 || errObj["code"] != float64(409) || errObj["errors"].([]any)[0].(map[string]any)["reason"] != "alreadyExists" {
		t.Fatalf("duplicate disk: %d %v", code, e)
	}
	if code, _, _ := do(t, "POST", zone+"/disks", `{"name":"x","sizeGB":"30"}`); code != 400 {
		t.Fatalf("an unknown field was accepted (%d)", code)
	}

	code, op, _ = do(t, "POST", zone+"/instances", instanceJSON)
	if code != 200 {
		t.Fatalf("instance insert: %d %v", code, op)
	}
	var seen []string
	for i := 0; i < 4; i++ {
		_, vm, _ := do(t, "GET", zone+"/instances/vm1", "")
		seen = append(seen, vm["status"].(string))
		clk.add(10 * time.Second)
	}
	if strings.Join(seen, " ") != "PROVISIONING PROVISIONING STAGING RUNNING" {
		t.Fatalf("boot sequence %v", seen)
	}
	_, vm, _ := do(t, "GET", zone+"/instances/vm1", "")
	nic := vm["networkInterfaces"].([]any)[0].(map[string]any)
	natIP := nic["accessConfigs"].([]any)[0].(map[string]any)["natIP"]
	if _, ok := vm["id"].(string); !ok || natIP == nil || nic["networkIP"] == nil {
		t.Fatalf("running VM: id %v, natIP %v, networkIP %v", vm["id"], natIP, nic["networkIP"])
	}
	data := vm["disks"].([]any)[1].(map[string]any)
	if data["deviceName"] != "data" || data["diskSizeGb"] != "30" || data["autoDelete"] != false {
		t.Fatalf("attached data disk %v", data)
	}
	// An attached disk cannot be deleted.
	if code, _, _ := do(t, "DELETE", zone+"/disks/vm1-data", ""); code != 400 {
		t.Fatalf("deleting an attached disk: %d", code)
	}

	do(t, "POST", zone+"/instances/vm1/stop", "")
	var stopSeq []string
	for i := 0; i < 2; i++ {
		_, vm, _ := do(t, "GET", zone+"/instances/vm1", "")
		stopSeq = append(stopSeq, vm["status"].(string))
		clk.add(30 * time.Second)
	}
	if strings.Join(stopSeq, " ") != "STOPPING TERMINATED" {
		t.Fatalf("stop sequence %v", stopSeq)
	}

	_, list, _ := do(t, "GET", srv.URL+`/compute/v1/projects/p1/aggregated/instances?filter=labels.cocalc-hosts-deployment+%3D+%22d1%22`, "")
	items := list["items"].(map[string]any)
	if got := items["zones/us-central1-a"].(map[string]any)["instances"].([]any); len(got) != 1 {
		t.Fatalf("aggregated list by label: %v", items)
	}
	if w := items["zones/us-central1-b"].(map[string]any)["warning"].(map[string]any); w["code"] != "NO_RESULTS_ON_PAGE" {
		t.Fatalf("empty zone scope: %v", w)
	}
	_, none, _ := do(t, "GET", srv.URL+`/compute/v1/projects/p1/aggregated/instances?filter=labels.cocalc-hosts-deployment+%3D+%22d2%22`, "")
	for z, scoped := range none["items"].(map[string]any) {
		if scoped.(map[string]any)["instances"] != nil {
			t.Fatalf("another deployment's filter matched in %s", z)
		}
	}

	do(t, "DELETE", zone+"/instances/vm1", "")
	clk.add(10 * time.Second)
	if code, _, _ := do(t, "GET", zone+"/instances/vm1", ""); code != 404 {
		t.Fatalf("deleted VM: %d", code)
	}
	if _, ok := srv.Disk("vm1"); ok {
		t.Fatal("the auto-delete boot disk survived its VM")
	}
	if d, ok := srv.Disk("vm1-data"); !ok || len(d.GetUsers()) != 0 {
		t.Fatalf("the data disk should survive, detached: %v", d)
	}
}

// GPU VMs must not live-migrate, as on GCE.
func TestGPURules(t *testing.T) {
	srv := gcpfake.New(gcpfake.Options{Project: "p1"})
	defer srv.Close()
	zone := srv.URL + "/compute/v1/projects/p1/zones/us-central1-a"
	body := strings.Replace(instanceJSON, "e2-standard-2", "g2-standard-4", 1)
	body = strings.Replace(body, `},
    {"boot": false, "autoDelete": false, "deviceName": "data", "source": "projects/p1/zones/us-central1-a/disks/vm1-data"}`, "}", 1)
	code, e, _ := do(t, "POST", zone+"/instances", body)
	if code != 400 || !strings.Contains(e["error"].(map[string]any)["message"].(string), "live migration") {
		t.Fatalf("a GPU VM with MIGRATE: %d %v", code, e)
	}
	body = strings.Replace(body, `"MIGRATE"`, `"TERMINATE"`, 1)
	if code, e, _ := do(t, "POST", zone+"/instances", body); code != 200 {
		t.Fatalf("a GPU VM with TERMINATE: %d %v", code, e)
	}
}

func TestBillingShape(t *testing.T) {
	srv := gcpfake.New(gcpfake.Options{PageSize: 10})
	defer srv.Close()
	code, page, _ := do(t, "GET", srv.URL+"/v1/services/6F81-5844-456A/skus?currencyCode=USD", "")
	if code != 200 || page["nextPageToken"] == "" {
		t.Fatalf("first page: %d, next %v", code, page["nextPageToken"])
	}
	sku := page["skus"].([]any)[0].(map[string]any)
	price := sku["pricingInfo"].([]any)[0].(map[string]any)["pricingExpression"].(map[string]any)["tieredRates"].([]any)[0].(map[string]any)["unitPrice"].(map[string]any)
	if _, ok := price["units"].(string); !ok || price["currencyCode"] != "USD" {
		t.Fatalf("unitPrice %v: units must be a string", price)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/v1/services/0000-0000-0000/skus", ""); code != 404 {
		t.Fatalf("unknown service: %d", code)
	}
	if gcpfake.USD(2.933908) != (gcpfake.Money{CurrencyCode: "USD", Units: "2", Nanos: 933908000}) {
		t.Fatalf("USD(2.933908) = %+v", gcpfake.USD(2.933908))
	}
}

func TestFaults(t *testing.T) {
	srv := gcpfake.New(gcpfake.Options{Project: "p1"})
	defer srv.Close()
	zone := srv.URL + "/compute/v1/projects/p1/zones/us-central1-a"
	srv.InjectFault(gcpfake.Fault{Action: "instances.get", Status: 429, RetryAfter: "5", Times: 2})
	for i := 0; i < 2; i++ {
		code, _, h := do(t, "GET", zone+"/instances/none", "")
		if code != 429 || h.Get("Retry-After") != "5" {
			t.Fatalf("request %d: %d, Retry-After %q", i, code, h.Get("Retry-After"))
		}
	}
	if code, _, _ := do(t, "GET", zone+"/instances/none", ""); code != 404 {
		t.Fatalf("the fault outlived its count: %d", code)
	}
	// An error after the change: the disk exists although the client saw 500.
	srv.InjectFault(gcpfake.Fault{Action: "disks.insert", Status: 500, AfterApply: true})
	if code, _, _ := do(t, "POST", zone+"/disks", `{"name":"ghost","sizeGb":"10"}`); code != 500 {
		t.Fatalf("want the injected 500, got %d", code)
	}
	if _, ok := srv.Disk("ghost"); !ok {
		t.Fatal("AfterApply did not apply the request")
	}
	if srv.Requests("disks.insert") != 1 || srv.Requests("instances.get") != 3 {
		t.Fatalf("request counts %d, %d", srv.Requests("disks.insert"), srv.Requests("instances.get"))
	}
}
