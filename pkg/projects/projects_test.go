package projects

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "1K": 1 << 10, "2G": 2 << 30, "2g": 2 << 30, "10GiB": 10 << 30, "1.5G": 3 << 29,
		"128M": 128 << 20, "1T": 1 << 40, "64MB": 64 << 20, " 3 G ": 3 << 30,
	} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1G", "1X", "G", "1e400", "9999999999T"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
	// What list, show and the refusals print: one decimal below 10 units.
	for b, want := range map[int64]string{3 << 29: "1.5 GiB", 128 << 20: "128 MiB", 1 << 40: "1.0 TiB", 512: "512 B", -1: "0 B"} {
		if s := FormatBytes(b); s != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", b, s, want)
		}
	}
}

func TestCheckID(t *testing.T) {
	if err := CheckID("3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "..", "../../etc/passwd", "3F1C9A52-8D0B-4C7E-9A61-2B5D7E4F0C13", "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13/..", "dev",
		"3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c1", "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13a", "3f1c9a52x8d0b-4c7e-9a61-2b5d7e4f0c13", "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c1g"} {
		err := CheckID(bad)
		if !errkind.Is(err, errkind.Invalid) {
			t.Errorf("CheckID(%q) = %v; want an Invalid error", bad, err)
		}
	}
}

// Account ids are at most 128 characters (checked apart from the pattern).
func TestCheckAccountLength(t *testing.T) {
	if err := CheckAccount("a" + strings.Repeat("b.c", 42) + "d"); err != nil { // 128
		t.Fatal(err)
	}
	for _, bad := range []string{"", ".a", "a b", "a" + strings.Repeat("b", 128)} {
		if err := CheckAccount(bad); !errkind.Is(err, errkind.Invalid) {
			t.Errorf("CheckAccount(%q) = %v; want an Invalid error", bad, err)
		}
	}
}

func TestImages(t *testing.T) {
	for _, im := range []string{"cocalc-base", "localhost/cocalc-base", "localhost/cocalc-base:latest", "docker.io/library/debian:bookworm"} {
		if !suggested(im) {
			t.Errorf("%s not suggested", im)
		}
	}
	if suggested("docker.io/library/alpine:3") {
		t.Error("alpine suggested")
	}
	for im, want := range map[string]bool{"cocalc-base": true, "localhost/x:1": true, "debian:bookworm": true, "docker.io/library/debian:bookworm": false, "ghcr.io/a/b:1": false} {
		if localOnly(im) != want {
			t.Errorf("localOnly(%s) = %v", im, !want)
		}
	}
}

func TestCheckLimits(t *testing.T) {
	if err := checkLimits(Defaults); err != nil {
		t.Fatal(err)
	}
	for _, l := range []model.ProjectLimits{
		{MemoryBytes: 1 << 20, CPUs: 1, PidsLimit: 100, DiskBytes: 1 << 30},
		{MemoryBytes: 1 << 30, CPUs: 0, PidsLimit: 100, DiskBytes: 1 << 30},
		{MemoryBytes: 1 << 30, CPUs: 1, PidsLimit: 1, DiskBytes: 1 << 30},
		{MemoryBytes: 1 << 30, CPUs: 1, PidsLimit: 100, DiskBytes: 1 << 10},
	} {
		if err := checkLimits(l); err == nil {
			t.Errorf("checkLimits(%+v) accepted", l)
		}
	}
}

// Only an agent that cannot be reached (or fails inside) is worth a retry;
// the queue treats unclassified errors as transient, so everything else
// must be classified as final.
func TestClassify(t *testing.T) {
	h := model.Host{Name: "dev"}
	cases := []struct {
		err       error
		retryable bool
	}{
		{&agentapi.Error{Status: 500, Code: agentapi.CodeInternal, Message: "podman crashed"}, true},
		{&agentapi.Error{Status: 404, Code: agentapi.CodeNotFound, Message: "image x is not on this host"}, false},
		{&agentapi.Error{Status: 400, Code: agentapi.CodeInvalid, Message: "bad"}, false},
		{&agentapi.Error{Status: 501, Code: agentapi.CodeUnsupported, Message: "no snapshots"}, false},
		{&agentapi.Error{Status: 200, Code: agentapi.CodeStalled, Message: "direct transfer: no progress for 20s"}, true},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{&net.OpError{Op: "dial", Err: syscall.ENOENT}, true},
		{errkind.Errorf(errkind.Unavailable, "db"), true},
		{errkind.New(errkind.Refused, "host dev is off"), false},
		{errkind.New(errkind.Invalid, "too much memory"), false},
		{errors.New("anything else"), false},
	}
	for _, c := range cases {
		got := classify(h, c.err)
		if errkind.Retryable(got) != c.retryable {
			t.Errorf("classify(%v) = %v (kind %s); retryable should be %v", c.err, got, errkind.Of(got), c.retryable)
		}
	}
	if got := classify(h, &agentapi.Error{Status: 404, Code: agentapi.CodeNotFound, Message: "image x is missing"}); got.Error() != "host dev: image x is missing" {
		t.Errorf("message = %q", got.Error())
	}
}
