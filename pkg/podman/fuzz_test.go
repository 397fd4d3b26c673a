package podman

import (
	"strings"
	"testing"
)

// `podman ps --format json` output of any shape is read without a panic:
// an error, or one container per JSON object in the list.
func FuzzParsePS(f *testing.F) {
	f.Add(`[{"Id":"abc","Names":["cocalc-project-1"],"Image":"cocalc-base","State":"running","Labels":{"cocalc.project_id":"1"},"StartedAt":1700000000,"Pid":42}]`)
	f.Add(`[]`)
	f.Add(`null`)
	f.Add(`[{"Names":[]}]`)
	f.Add(`{"Id":1}`)
	f.Fuzz(func(t *testing.T, out string) {
		cs, err := parsePS(out)
		if err == nil && len(cs) > strings.Count(out, "{") {
			t.Fatalf("%d containers from %d objects", len(cs), strings.Count(out, "{"))
		}
	})
}
