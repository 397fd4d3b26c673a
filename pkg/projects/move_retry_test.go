package projects

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
)

// A move job retried after an earlier attempt switched the placement but
// was cut short before the steps that follow (the source's transfer state
// dropped, the old copy frozen) does those steps, whether or not the old
// copy was deleted meanwhile; it used to return at once, leaving the
// source's transfer snapshots on its pool for good.
func TestMoveRetriedAfterSwitchDropsSourceTransfer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: btrfs pools")
	}
	ctx := context.Background()
	hs := newMoveHosts(t)
	apool, bpool := storagetest.BtrfsPool(t), storagetest.BtrfsPool(t)
	a := hs.add("a", apool, agentapi.StorageBtrfs)
	b := hs.add("b", bpool, agentapi.StorageBtrfs)
	s := New(hs.st, hs.agents)
	s.KeepSource = 24 * time.Hour // the old copy stays: this test deletes it itself
	alice := Caller{Account: "alice"}
	if _, err := s.who(ctx, alice); err != nil {
		t.Fatal(err)
	}
	p := hs.project(a, "docker.io/library/busybox:latest", 64<<20)
	sub, m, err := s.Move(ctx, alice, MoveRequest{Project: p.ID, To: b.Name})
	if err != nil {
		t.Fatal(err)
	}
	mux := &queue.Mux{}
	mux.Handle("project", Handler{S: s})
	if err := queue.NewWorker(hs.st, mux).Run(ctx, true); err != nil {
		t.Fatal(err)
	}
	src := agentapi.NewClient(hs.agents[a.ID])
	out := filepath.Join(apool, "transfer", p.ID)
	for _, phase := range []string{model.MoveDone, model.MoveCleaned} {
		// What an attempt cut short after the switch leaves on the source.
		if _, err := src.TransferSnapshot(ctx, p.ID, "cut-short"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(out); err != nil {
			t.Fatalf("no transfer state to leave: %v", err)
		}
		mm, err := hs.st.GetMove(ctx, m.ID)
		if err != nil || mm.Phase != model.MoveDone {
			t.Fatalf("the move: %+v, %v", mm, err)
		}
		mm.Phase = phase
		if err := hs.st.PutMove(ctx, mm); err != nil {
			t.Fatal(err)
		}
		job := *sub.Job
		job.Attempts = 2
		if _, err := (Handler{S: s}).Run(ctx, job, func(string) {}); err != nil {
			t.Fatalf("phase %s: the retried attempt: %v", phase, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("phase %s: the source's transfer state after the retried attempt: %v", phase, err)
		}
		mm.Phase = model.MoveDone
		if err := hs.st.PutMove(ctx, mm); err != nil {
			t.Fatal(err)
		}
	}
}
