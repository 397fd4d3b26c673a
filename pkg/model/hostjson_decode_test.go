package model

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestDecodeHost checks DecodeHostSpec and DecodeRuntime against
// json.Unmarshal on what the store writes (every field set by reflection,
// which must all be read the quick way: a field added to HostSpec or
// Runtime and not to the decoder fails here) and on JSON it does not
// write (see decodeSeeds), which must decode as json.Unmarshal decodes it.
func TestDecodeHost(t *testing.T) {
	strs := []string{"plain", "", "with space/slash:colon", "sim-east1", "x"}
	floats := []float64{0.05, 0, 1e-7, 1e21, 123456789.125, -2.5e-9, 3}
	for i := range 7 {
		var h Host
		fill(t, reflect.ValueOf(&h).Elem(), i, strs, floats, []time.Time{{}})
		spec, _ := json.Marshal(h.Spec)
		var s HostSpec
		if d := (jsonDecoder{b: spec}); !d.whole(func(k []byte) bool { return d.spec(k, &s) }) {
			t.Errorf("spec %s: not read the quick way", spec)
		}
		runtime, _ := json.Marshal(h.Runtime)
		var r Runtime
		if d := (jsonDecoder{b: runtime}); !d.whole(func(k []byte) bool { return d.runtime(k, &r) }) {
			t.Errorf("runtime %s: not read the quick way", runtime)
		}
		checkDecode(t, spec)
		checkDecode(t, runtime)
	}
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
}

// decodeSeeds are JSON texts (and not quite JSON) the store does not
// write, each decoded as json.Unmarshal decodes it.
var decodeSeeds = []string{
	`{}`, ` { } `, `null`, ``, `[]`, `{"cpus":2}x`, `{"cpus":2,}`, `{"cpus" 2}`, `{"cpus":2`,
	"{\n \"machine_type\": \"a\",\t\"cpus\": 4 }\n",
	`{"CPUs":2,"Machine_Type":"a"}`, `{"unknown":1,"cpus":2}`, `{"cpus":2,"cpus":3}`,
	`{"cpus":1.0}`, `{"cpus":1e3}`, `{"cpus":-0}`, `{"cpus":01}`, `{"cpus":-}`, `{"cpus":9999999999999999999999}`,
	`{"cpus":123456789012345678}`, `{"cpus":"2"}`, `{"cpus":null}`, `{"cpus":true}`,
	`{"spot":true,"reverse":false}`, `{"spot":truex}`, `{"spot":tru}`, `{"spot":1}`,
	`{"disk_price_gb_month":0.08}`, `{"disk_price_gb_month":-0}`, `{"disk_price_gb_month":1e400}`,
	`{"disk_price_gb_month":1.}`, `{"disk_price_gb_month":.5}`, `{"disk_price_gb_month":1e}`, `{"disk_price_gb_month":1E+2}`,
	`{"disk_price_gb_month":00.5}`, `{"boot_disk_monthly":2.5e-3}`,
	`{"image":"a\"b"}`, `{"image":"a\u00e9"}`, "{\"image\":\"caf\xc3\xa9\"}", "{\"image\":\"bad \xff\"}", "{\"image\":\"tab\there\"}",
	`{"image":"<&>"}`, `{"image":2}`, `{"image":null}`,
	`{"meta":{"a":"1","b":"2"}}`, `{"meta":{}}`, `{"meta":null}`, `{"meta":{"a":1}}`, `{"meta":{"a":"1"},"meta":{"b":"2"}}`,
	`{"meta":{"a":"1","a":"2"}}`, `{"meta":{"\u0061":"x"}}`, `{"meta":{"":""}}`, `{"meta":[]}`,
	`{"ssh_port":22,"ssh_host":"h","instance_id":"i"}`, `{"ssh_port":65536000000}`,
}

// checkDecode decodes b as a spec and as a runtime, with the decoders and
// with json.Unmarshal, and fails unless both give the same.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	var s1, s2 HostSpec
	e1, e2 := DecodeHostSpec(b, &s1), json.Unmarshal(b, &s2)
	if !reflect.DeepEqual(s1, s2) || !sameError(e1, e2) {
		t.Errorf("spec %q: got %+v, %v; json.Unmarshal %+v, %v", b, s1, e1, s2, e2)
	}
	var r1, r2 Runtime
	e1, e2 = DecodeRuntime(b, &r1), json.Unmarshal(b, &r2)
	if !reflect.DeepEqual(r1, r2) || !sameError(e1, e2) {
		t.Errorf("runtime %q: got %+v, %v; json.Unmarshal %+v, %v", b, r1, e1, r2, e2)
	}
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Error() == b.Error()
}

// FuzzDecodeHost: go test ./pkg/model -run '^$' -fuzz FuzzDecodeHost
func FuzzDecodeHost(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"machine_type":"sim-small","disk_price_gb_month":0.08,"disk_price_source":"simulated (sim-east1)"}`))
	f.Add([]byte(`{"instance_id":"sim-1","public_ip":"100.1.2.3","meta":{"disk_gb":"10","machine_type":"sim-small"}}`))
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}
