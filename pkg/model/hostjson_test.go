package model

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestAppendHostJSON checks AppendHostJSON against encoding/json, compact
// and indented, on hosts whose every field is set by reflection (so a
// field added to Host, HostSpec or Runtime and not to the encoder fails
// here), on the zero host (every omitempty left out), and on values whose
// encoding is special: escapes, HTML characters, invalid UTF-8, small and
// huge floats, times with zones and nanoseconds.
func TestAppendHostJSON(t *testing.T) {
	strs := []string{"plain", "", "a<b>&c", "quote\"back\\slash", "tab\tnew\nline\x01", "é 世界 \u2028\u2029", "bad \xff utf8"}
	floats := []float64{0.05, 0, 1e-7, 1e21, 123456789.125, -2.5e-9, 3}
	loc := time.FixedZone("x", -7*3600-30*60)
	times := []time.Time{time.Date(2026, 12, 6, 6, 35, 7, 383000000, time.UTC), time.Time{}, time.Date(1999, 1, 2, 3, 4, 5, 6, loc)}
	hosts := []Host{{}}
	for i := range 7 {
		var h Host
		fill(t, reflect.ValueOf(&h).Elem(), i, strs, floats, times)
		hosts = append(hosts, h)
	}
	for i, h := range hosts {
		want, err := json.MarshalIndent(h, "  ", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendHostJSON([]byte("x"), &h, "  ", "  ")
		if err != nil || string(got) != "x"+string(want) {
			t.Fatalf("host %d indented: %v\ngot  %s\nwant x%s", i, err, got, want)
		}
		want, _ = json.Marshal(h)
		got, err = AppendHostJSON(nil, &h, "", "")
		if err != nil || string(got) != string(want) {
			t.Fatalf("host %d compact: %v\ngot  %s\nwant %s", i, err, got, want)
		}
	}
}

func TestAppendHostJSONRefusesNaN(t *testing.T) {
	h := Host{HourlyPrice: 0}
	h.Spec.BootDiskMonthly = float64NaN()
	if _, err := AppendHostJSON(nil, &h, "", ""); err == nil {
		t.Fatal("NaN encoded; encoding/json refuses it")
	}
}

func float64NaN() float64 { z := 0.0; return z / z }

// fill sets every field under v, choosing values by round i.
func fill(t *testing.T, v reflect.Value, i int, strs []string, floats []float64, times []time.Time) {
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(times[i%len(times)]))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(strs[i%len(strs)])
	case reflect.Int:
		v.SetInt(int64(i*1000 - 3))
	case reflect.Float64:
		v.SetFloat(floats[i%len(floats)])
	case reflect.Bool:
		v.SetBool(i%2 == 0)
	case reflect.Pointer:
		if i%3 == 2 {
			return // nil
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), i, strs, floats, times)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for j := range i % 4 {
			m.SetMapIndex(reflect.ValueOf(fmt.Sprintf("k%d%s", 3-j, strs[(i+j)%len(strs)])), reflect.ValueOf(strs[j%len(strs)]))
		}
		v.Set(m)
	case reflect.Struct:
		for f := range v.NumField() {
			// each field a little apart, so that swapped fields show
			fill(t, v.Field(f), i+f, strs, floats, times)
		}
	default:
		t.Fatalf("fill: a %s field; teach fill and AppendHostJSON about it", v.Type())
	}
}
