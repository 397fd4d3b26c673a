package projects

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// A project is found by its id, the beginning of it or its title, among
// the projects the caller may use only: another account's project is
// neither found nor named in an ambiguity.
func TestResolve(t *testing.T) {
	ctx := context.Background()
	hs := newMoveHosts(t)
	h := model.Host{ID: uuid.NewString(), Name: "h", Owner: "alice", Provider: "local", Region: "local",
		Status: model.StatusRunning, Spec: model.HostSpec{MachineType: "local", DiskGB: 10}, CreatedAt: hs.t0, UpdatedAt: hs.t0}
	if err := hs.st.CreateHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	project := func(id, owner, title string) {
		p := model.Project{ID: id, Title: title, Owner: owner, HostID: h.ID, Image: "cocalc-base",
			Limits: Defaults, State: model.ProjectStopped, CreatedAt: hs.t0, UpdatedAt: hs.t0}
		if err := hs.st.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	const (
		thesis = "1234aaaa-0000-4000-8000-000000000000"
		notes  = "1234bbbb-0000-4000-8000-000000000000"
		bobs   = "1234cccc-0000-4000-8000-000000000000"
	)
	project(thesis, "alice", "thesis")
	project(notes, "alice", "notes")
	project(bobs, "bob", "thesis")
	s := New(hs.st, hs.agents)
	if err := hs.st.SetAdmin(ctx, "root", true); err != nil {
		t.Fatal(err)
	}
	alice, bob, carol, root := Caller{Account: "alice"}, Caller{Account: "bob"}, Caller{Account: "carol"}, Caller{Account: "root"}

	for _, c := range []struct {
		who       Caller
		ref, want string
	}{
		{alice, thesis, thesis}, // a whole id, as it is
		{alice, "1234a", thesis},
		{alice, "thesis", thesis}, // bob's thesis is not alice's to see
		{alice, "notes", notes},
		{bob, "1234", bobs},
		{bob, "thesis", bobs},
		{root, "1234c", bobs}, // an admin may use every project
	} {
		if got, err := s.Resolve(ctx, c.who, c.ref); err != nil || got != c.want {
			t.Errorf("%s resolves %q: %q %v, want %q", c.who.Account, c.ref, got, err, c.want)
		}
	}

	_, err := s.Resolve(ctx, alice, "1234")
	if !errkind.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), thesis+" (thesis)") ||
		!strings.Contains(err.Error(), notes+" (notes)") || strings.Contains(err.Error(), bobs) {
		t.Fatalf("alice's shared prefix: %v, want an invalid error naming her two projects and not bob's", err)
	}
	if _, err := s.Resolve(ctx, root, "thesis"); !errkind.Is(err, errkind.Invalid) {
		t.Fatalf("an admin sees both theses: %v, want ambiguous", err)
	}
	var nf *errkind.NotFoundError
	if _, err := s.Resolve(ctx, alice, "1234c"); !errors.As(err, &nf) || nf.Type != "project" {
		t.Fatalf("bob's project asked by alice: %v, want not found", err)
	}
	if _, err := s.Resolve(ctx, carol, "thesis"); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("carol has no project: %v, want not found", err)
	}
	if err := hs.st.AddProjectCollaborator(ctx, bobs, "carol", hs.t0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Resolve(ctx, carol, "thesis"); err != nil || got != bobs {
		t.Fatalf("a collaborator's project: %q %v, want %q", got, err, bobs)
	}
	if _, err := s.Resolve(ctx, alice, ""); !errkind.Is(err, errkind.Invalid) {
		t.Fatalf("empty reference: %v, want invalid", err)
	}
}
