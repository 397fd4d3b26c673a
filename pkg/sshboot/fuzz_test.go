package sshboot

import (
	"strings"
	"testing"
)

// Whatever a machine prints to the preflight check (a hostile or broken
// machine may print anything) is read as facts, an error line or
// nothing, never a panic.
func FuzzParsePreflight(f *testing.F) {
	f.Add("ARCH=x86_64\nDISTRO=debian\nDISTRO_VERSION=12\nINIT=systemd\nGZIP=yes\nBIN_AVAIL_KB=1000000\nSTATE_AVAIL_KB=99\n")
	f.Add("ARCH=aarch64\nERROR: no systemd\n")
	f.Add("BIN_AVAIL_KB=99999999999999999999\nARCH=\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, out string) {
		lines := strings.Split(out, "\n")
		got, errLine, told := parsePreflight(lines)
		if errLine != "" {
			if !strings.HasPrefix(errLine, "ERROR: ") || told {
				t.Fatalf("error line %q (told %v) from %q", errLine, told, out)
			}
			return
		}
		arch := "" // the last ARCH= line wins
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "ARCH="); ok {
				arch = v
			}
		}
		if told != (arch != "") {
			t.Fatalf("told %v for %q", told, out)
		}
		if got.gzip && !strings.Contains(out, "GZIP=yes") {
			t.Fatalf("gzip from %q", out)
		}
		_ = lastLine(out)
	})
}
