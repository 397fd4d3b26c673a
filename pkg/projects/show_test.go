package projects

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// A host whose agent takes the connection but never answers (overloaded,
// or wedged) costs Show only part of the caller's time: what the store
// knows comes back before the caller's deadline, with the reason the host
// said nothing.
func TestShowWithStuckAgent(t *testing.T) {
	ctx := context.Background()
	hs := newMoveHosts(t)
	sock := filepath.Join(t.TempDir(), "stuck.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c // kept open, never read or answered
		}
	}()
	t.Cleanup(func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	h := model.Host{ID: uuid.NewString(), Name: "stuck", Owner: "alice", Provider: "local", Region: "local",
		Status: model.StatusRunning, Spec: model.HostSpec{MachineType: "local", DiskGB: 10}, CreatedAt: hs.t0, UpdatedAt: hs.t0}
	if err := hs.st.CreateHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	hs.agents[h.ID] = sock
	p := model.Project{ID: uuid.NewString(), Title: "paper", Owner: "alice", HostID: h.ID, Image: "cocalc-base",
		Limits: Defaults, State: model.ProjectRunning, CreatedAt: hs.t0, UpdatedAt: hs.t0}
	if err := hs.st.CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	s := New(hs.st, hs.agents)
	alice := Caller{Account: "alice"}

	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	d, err := s.Show(dctx, alice, p.ID)
	if err != nil {
		t.Fatalf("show with a stuck host: %v (want the record and the host's silence as agent_error)", err)
	}
	if dctx.Err() != nil {
		t.Fatal("show used up the caller's whole time: nothing left for the caller's next step")
	}
	if d.Title != "paper" || d.HostName != "stuck" || d.Agent != nil {
		t.Fatalf("detail = %+v, want the stored project on host stuck without an agent answer", d)
	}
	if !strings.Contains(d.AgentError, "host stuck did not answer in time") {
		t.Fatalf("agent_error = %q, want it to say the host did not answer in time", d.AgentError)
	}
}
