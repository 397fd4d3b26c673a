package storage

import (
	"sort"
	"testing"
	"time"
)

const show62 = `Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive Parent   Child         Path 
--------    ----------    ---------  --------------  ------------- ------   -----         ---- 
0/5              16384        16384            none           none -        -             <toplevel>
0/256         20938752     20938752            none           none 1/256    -             projects/a
0/257         31473664     31473664            none       10485760 1/256    -             snapshots/a/s1
1/256         52412416     52412416        52428800           none -        0/256,0/257   <0 member qgroups>
`

// The layout of btrfs-progs 5.x and older: abbreviated lowercase headers.
const showOld = `qgroupid         rfer         excl     max_rfer     max_excl 
--------         ----         ----     --------     -------- 
0/5             16384        16384         none         none 
0/258        1048576      1048576      2097152         none 
`

func TestParseQgroupShow(t *testing.T) {
	rows, err := parseQgroupShow(show62)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("rows = %v", rows)
	}
	g := rows["1/256"]
	if g.Referenced != 52412416 || g.MaxReferenced != 52428800 || g.MaxExclusive != -1 {
		t.Fatalf("1/256 = %+v", g)
	}
	if s := rows["0/257"]; s.MaxReferenced != -1 || s.MaxExclusive != 10485760 || s.Exclusive != 31473664 {
		t.Fatalf("0/257 = %+v", s)
	}
	old, err := parseQgroupShow(showOld)
	if err != nil {
		t.Fatal(err)
	}
	if q := old["0/258"]; q.Referenced != 1048576 || q.MaxReferenced != 2097152 || q.MaxExclusive != -1 {
		t.Fatalf("old 0/258 = %+v", q)
	}
	parents, err := parseQgroupParents(show62)
	if err != nil {
		t.Fatal(err)
	}
	if p := parents["0/257"]; len(p) != 1 || p[0] != "1/256" {
		t.Fatalf("parents of 0/257 = %v", p)
	}
	if _, ok := parents["1/256"]; ok {
		t.Fatal("1/256 has no parent")
	}
	for _, bad := range []string{"", "ERROR: can't list qgroups: quotas not enabled\n", "Qgroupid Path\n0/5 <toplevel>\n"} {
		if _, err := parseQgroupShow(bad); err == nil {
			t.Errorf("parseQgroupShow(%q) succeeded", bad)
		}
	}
	// Human-readable sizes (--raw ignored by some wrapper) are an error,
	// not silently zero.
	if _, err := parseQgroupShow("Qgroupid Referenced Exclusive\n0/5 16.00KiB 16.00KiB\n"); err == nil {
		t.Error("human-readable sizes were accepted")
	}
}

func TestToPrune(t *testing.T) {
	now := time.Date(2026, 3, 18, 12, 30, 0, 0, time.UTC) // a Wednesday
	var snaps []Snapshot
	// One scheduled snapshot every 30 minutes for 40 days, and one manual.
	for ts := now.AddDate(0, 0, -40); !ts.After(now); ts = ts.Add(30 * time.Minute) {
		snaps = append(snaps, Snapshot{Name: AutoName(ts), CreatedAt: ts, Auto: true})
	}
	snaps = append(snaps, Snapshot{Name: "by-hand", CreatedAt: now.AddDate(0, 0, -39)})
	pruned := toPrune(snaps, Retention{Hourly: 24, Daily: 7, Weekly: 4}, now)
	gone := map[string]bool{}
	for _, s := range pruned {
		if !s.Auto {
			t.Fatalf("pruned a manual snapshot %s", s.Name)
		}
		gone[s.Name] = true
	}
	var kept []time.Time
	for _, s := range snaps {
		if s.Auto && !gone[s.Name] {
			kept = append(kept, s.CreatedAt)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].After(kept[j]) })
	// 24 hourly (the newest of each of the last 24 hours), daily newest of
	// the 7 days (mostly the same as hourly for today), weekly of 4 weeks.
	if kept[0] != now {
		t.Fatalf("newest kept = %v, want %v", kept[0], now)
	}
	hourly := 0
	for _, k := range kept {
		if now.Sub(k) < 24*time.Hour {
			hourly++
		}
	}
	if hourly != 24 {
		t.Fatalf("%d kept in the last 24 hours, want 24", hourly)
	}
	oldest := kept[len(kept)-1]
	if now.Sub(oldest) > 28*24*time.Hour || now.Sub(oldest) < 14*24*time.Hour {
		t.Fatalf("oldest kept %v is not in the fourth week back", oldest)
	}
	// 24 hourly (3/17 13:00 to now); daily adds 3/12..3/16 (today's and
	// yesterday's newest are hourly ones already); weekly adds the weeks
	// of 3/2 and 2/23 (this week's and last week's newest are kept already).
	if len(kept) != 24+5+2 {
		t.Fatalf("kept %d snapshots, want 31", len(kept))
	}
	if got := toPrune(snaps, Retention{}, now); len(got) != len(snaps)-1 {
		t.Fatalf("zero retention pruned %d of %d scheduled", len(got), len(snaps)-1)
	}
}

func TestCleanRestorePath(t *testing.T) {
	for in, want := range map[string]string{"": "", ".": "", "/": "", "a/b": "a/b", "./a//b/": "a/b", "a/../b": "b"} {
		got, err := CleanRestorePath(in)
		if err != nil || got != want {
			t.Errorf("CleanRestorePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"..", "../etc", "/etc/passwd", ".snapshots", ".snapshots/s1/x", "a/../../b", "a\x00b"} {
		if _, err := CleanRestorePath(bad); err == nil {
			t.Errorf("CleanRestorePath(%q) accepted", bad)
		}
	}
}
