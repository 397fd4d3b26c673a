package cli

import (
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

// A move's progress messages (pkg/projects/move.go) count each volume's
// bytes; the dashboard's bar adds the finished volumes up, against the
// project's size, keeps it through steps without bytes, and grows the
// total when more crosses than it said.
func TestTransferProgressCountsVolumes(t *testing.T) {
	var got []tui.Progress
	p := transferProgress(4<<30, func(p tui.Progress) { got = append(got, p) })
	for _, m := range []string{
		"snapshot s1: 512 MiB sent, 100 MiB/s",
		"snapshot s1: 1.0 GiB sent in 10.0s (102 MiB/s)",
		"live home: 256 MiB sent, 90 MiB/s",
		"cut-over: committing on b",
	} {
		p(tui.Progress{Message: m})
	}
	want := []int64{512 << 20, 1 << 30, 1<<30 + 256<<20, 1<<30 + 256<<20}
	for i, w := range want {
		if got[i].Bytes != w || got[i].Total != 4<<30 {
			t.Errorf("%q: %d of %d bytes, want %d of %d", got[i].Message, got[i].Bytes, got[i].Total, w, int64(4<<30))
		}
	}
	p = transferProgress(1<<20, func(p tui.Progress) { got = append(got, p) })
	p(tui.Progress{Message: "snapshot s1: 2.0 MiB sent, 1 MiB/s"})
	if last := got[len(got)-1]; last.Total != last.Bytes || last.Bytes != 2<<20 {
		t.Errorf("more than the size: %d of %d", last.Bytes, last.Total)
	}
	p = transferProgress(0, func(p tui.Progress) { got = append(got, p) })
	p(tui.Progress{Message: "snapshot s1: 2.0 MiB sent, 1 MiB/s"})
	if last := got[len(got)-1]; last.Total != 0 {
		t.Errorf("an unknown size drew a bar: %d of %d", last.Bytes, last.Total)
	}
}
