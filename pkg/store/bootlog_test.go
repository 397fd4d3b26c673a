package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

func TestBootRunsAndLog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		hostID, other := uuid.NewString(), uuid.NewString()
		run1 := store.BootRun{ID: uuid.NewString(), HostID: hostID, JobID: "j1", Kind: "bootstrap", StartedAt: t0}
		run2 := store.BootRun{ID: uuid.NewString(), HostID: hostID, Kind: "upgrade", StartedAt: t0.Add(time.Minute)}
		for _, r := range []store.BootRun{run1, run2, {ID: uuid.NewString(), HostID: other, Kind: "bootstrap", StartedAt: t0}} {
			if err := s.StartBootRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.FinishBootRun(ctx, run1.ID, t0.Add(30*time.Second), store.BootFailed, "disk holds ext4"); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishBootRun(ctx, "nope", t0, store.BootDone, ""); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("finishing an unknown run: got %v, want not found", err)
		}
		runs, err := s.ListBootRuns(ctx, hostID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 || runs[0].ID != run2.ID || runs[1].ID != run1.ID {
			t.Fatalf("runs newest first: got %+v", runs)
		}
		if runs[0].Result != store.BootRunning || runs[0].FinishedAt != nil {
			t.Fatalf("unfinished run: %+v", runs[0])
		}
		if r := runs[1]; r.Result != store.BootFailed || r.Error != "disk holds ext4" || r.FinishedAt == nil ||
			!r.FinishedAt.Equal(t0.Add(30*time.Second)) || r.JobID != "j1" || !r.StartedAt.Equal(t0) {
			t.Fatalf("finished run lost data: %+v", r)
		}
		if one, _ := s.ListBootRuns(ctx, hostID, 1); len(one) != 1 || one[0].ID != run2.ID {
			t.Fatalf("limit 1: %+v", one)
		}

		var lines []store.BootLine
		for i := range 5 {
			lines = append(lines, store.BootLine{HostID: hostID, RunID: run1.ID, Seq: i, TS: t0.Add(time.Duration(i) * time.Second), Line: fmt.Sprintf("line %d", i)})
		}
		if err := s.AppendBootLog(ctx, lines); err != nil {
			t.Fatal(err)
		}
		// The same batch again (a retry after a lost reply) adds nothing.
		if err := s.AppendBootLog(ctx, lines[3:]); err != nil {
			t.Fatal(err)
		}
		long := strings.Repeat("x", 10000)
		if err := s.AppendBootLog(ctx, []store.BootLine{
			{HostID: hostID, RunID: run2.ID, Seq: 0, TS: t0, Line: long},
			{HostID: other, RunID: "other-run", Seq: 0, TS: t0, Line: "not mine"},
		}); err != nil {
			t.Fatal(err)
		}
		all, err := s.ListBootLog(ctx, store.BootLogFilter{HostID: hostID})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 6 {
			t.Fatalf("%d lines, want 6: %+v", len(all), all)
		}
		for i := range 5 {
			if all[i].Line != fmt.Sprintf("line %d", i) || all[i].Seq != i || all[i].RunID != run1.ID || !all[i].TS.Equal(t0.Add(time.Duration(i)*time.Second)) {
				t.Fatalf("line %d: %+v", i, all[i])
			}
		}
		if got := all[5].Line; len(got) >= len(long) || !strings.HasPrefix(got, "xxxx") || !strings.HasSuffix(got, "(cut)") {
			t.Fatalf("a very long line should be cut, got %d bytes", len(got))
		}
		last2, _ := s.ListBootLog(ctx, store.BootLogFilter{HostID: hostID, RunID: run1.ID, Limit: 2})
		if len(last2) != 2 || last2[0].Line != "line 3" || last2[1].Line != "line 4" {
			t.Fatalf("newest two lines oldest first: %+v", last2)
		}
		after, _ := s.ListBootLog(ctx, store.BootLogFilter{HostID: hostID, AfterID: all[4].ID})
		if len(after) != 1 || after[0].RunID != run2.ID {
			t.Fatalf("lines after id %d: %+v", all[4].ID, after)
		}
	})
}

func TestHostKeyPins(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		hostID := uuid.NewString()
		if _, err := s.GetHostKey(ctx, hostID); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("no pin yet: got %v", err)
		}
		// Contact with an unpinned host records nothing and is no error.
		if err := s.TouchHostContact(ctx, hostID, t0); err != nil {
			t.Fatal(err)
		}
		first := store.HostKeyPin{HostID: hostID, PublicKey: "ssh-ed25519 AAAAfirst", Source: "first_contact", PinnedAt: t0}
		got, err := s.PinHostKey(ctx, first, false)
		if err != nil || got.PublicKey != first.PublicKey || got.Source != "first_contact" || !got.PinnedAt.Equal(t0) || got.LastContactAt != nil {
			t.Fatalf("first pin: %v %+v", err, got)
		}
		// A second first contact (another process) does not replace it.
		got, err = s.PinHostKey(ctx, store.HostKeyPin{HostID: hostID, PublicKey: "ssh-ed25519 AAAAsecond", Source: "first_contact", PinnedAt: t0.Add(time.Second)}, false)
		if err != nil || got.PublicKey != first.PublicKey {
			t.Fatalf("pin without replace must keep the first key: %v %+v", err, got)
		}
		if err := s.TouchHostContact(ctx, hostID, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		// An older contact reported late does not move the time back.
		if err := s.TouchHostContact(ctx, hostID, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		got, _ = s.GetHostKey(ctx, hostID)
		if got.LastContactAt == nil || !got.LastContactAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("last contact: %+v", got.LastContactAt)
		}
		got, err = s.PinHostKey(ctx, store.HostKeyPin{HostID: hostID, PublicKey: "ssh-ed25519 AAAAnew", Source: "repinned", PinnedAt: t0.Add(time.Hour)}, true)
		if err != nil || got.PublicKey != "ssh-ed25519 AAAAnew" || got.Source != "repinned" || !got.PinnedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("re-pin: %v %+v", err, got)
		}
		if _, err := s.PinHostKey(ctx, store.HostKeyPin{HostID: hostID}, true); err == nil {
			t.Fatal("pinning an empty key must fail")
		}
		if err := s.DeleteHostKey(ctx, hostID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetHostKey(ctx, hostID); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})
}

func TestHostKeyFirstContactRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		hostID := uuid.NewString()
		const n = 8
		var wg sync.WaitGroup
		got := make(chan string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := s.PinHostKey(ctx, store.HostKeyPin{HostID: hostID, PublicKey: fmt.Sprintf("ssh-ed25519 K%d", i), Source: "first_contact", PinnedAt: t0}, false)
				if err != nil {
					t.Error(err)
					return
				}
				got <- p.PublicKey
			}()
		}
		wg.Wait()
		close(got)
		seen := map[string]bool{}
		for k := range got {
			seen[k] = true
		}
		if len(seen) != 1 {
			t.Fatalf("racing first contacts saw %d different pins, want every one to see the same: %v", len(seen), seen)
		}
	})
}
