package options

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEachSortedTrimmedStopsAtFirstError(t *testing.T) {
	m := map[string]string{"b": " 2 ", "a": "1", "c": "3"}
	var seen []string
	stop := errors.New("stop")
	err := Each(m, func(k, v string) error {
		seen = append(seen, k+"="+v)
		if k == "b" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Each returned %v, want the error set returned", err)
	}
	if want := []string{"a=1", "b=2"}; !reflect.DeepEqual(seen, want) {
		t.Fatalf("set saw %v, want %v (sorted, trimmed, stopped at b)", seen, want)
	}
}

func TestUnknownListsKnownKeys(t *testing.T) {
	known := map[string]string{"zone": "", "endpoint": "", "project": ""}
	if got, want := Unknown("zones", known).Error(), `unknown option "zones" (known: endpoint, project, zone)`; got != want {
		t.Fatalf("Unknown = %q, want %q", got, want)
	}
	if got, want := UnknownFor("gcp", "zones", known).Error(), `unknown option "zones" for provider gcp (known: endpoint, project, zone)`; got != want {
		t.Fatalf("UnknownFor = %q, want %q", got, want)
	}
}

func TestValues(t *testing.T) {
	if b, err := Bool("k", "true"); err != nil || !b {
		t.Fatalf("Bool(true) = %v, %v", b, err)
	}
	if n, err := NonNegativeInt("k", "0"); err != nil || n != 0 {
		t.Fatalf("NonNegativeInt(0) = %v, %v", n, err)
	}
	if n, err := PositiveInt("k", "8"); err != nil || n != 8 {
		t.Fatalf("PositiveInt(8) = %v, %v", n, err)
	}
	if d, err := PositiveDuration("k", "2s", "2s"); err != nil || d != 2*time.Second {
		t.Fatalf("PositiveDuration(2s) = %v, %v", d, err)
	}
	if d, err := NonNegativeDuration("k", "0s", "2s"); err != nil || d != 0 {
		t.Fatalf("NonNegativeDuration(0s) = %v, %v", d, err)
	}
	if f, err := Rate("k", "0.25"); err != nil || f != 0.25 {
		t.Fatalf("Rate(0.25) = %v, %v", f, err)
	}
	if u, err := HTTPURL("k", "http://127.0.0.1:8080/v1//", "x"); err != nil || u != "http://127.0.0.1:8080/v1" {
		t.Fatalf("HTTPURL = %q, %v", u, err)
	}
	if l := List(" a, ,b ,"); !reflect.DeepEqual(l, []string{"a", "b"}) {
		t.Fatalf("List = %q", l)
	}
}

// Providers' tests and users' scripts match these messages, so they are
// pinned exactly.
func TestRefusalsNameKeyAndValue(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{second(Bool("public_ip", "yes please")), `option public_ip="yes please": want true or false`},
		{second(NonNegativeInt("retries", "-1")), `option retries="-1": want a non-negative integer`},
		{second(PositiveInt("data_disk_gb", "0")), `option data_disk_gb="0": want a positive integer`},
		{second(PositiveDuration("timeout", "0s", "5s")), `option timeout="0s": want a positive Go duration such as 5s`},
		{second(PositiveDuration("timeout", "soon", "5s")), `option timeout="soon": want a positive Go duration such as 5s`},
		{second(NonNegativeDuration("latency", "-1s", "250ms or 2s")), `option latency="-1s": want a non-negative Go duration such as 250ms or 2s`},
		{second(Rate("error_rate", "1.5")), `option error_rate="1.5": want a probability between 0 and 1`},
		{second(HTTPURL("endpoint", "compute.local", "https://x")), `option endpoint="compute.local": want an http(s) URL such as https://x`},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("got %v, want %q", c.err, c.want)
		}
	}
	if strings.Contains(Unknown("a", nil).Error(), "provider") {
		t.Errorf("Unknown names a provider it was not given")
	}
}

func second[T any](_ T, err error) error { return err }
