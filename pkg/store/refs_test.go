package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

// What users type for a host or a project: the beginning of an id (tables
// show short ids) or, for projects, a title.
func TestShortReferences(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		host := func(id, name string) model.Host {
			h := newHost(name)
			h.ID = id
			if err := s.CreateHost(ctx, h); err != nil {
				t.Fatal(err)
			}
			return h
		}
		a1 := host("aaaa1111-0000-4000-8000-000000000000", "one")
		a2 := host("aaaa2222-0000-4000-8000-000000000000", "two")
		gone := host("cccc1111-0000-4000-8000-000000000000", "gone")
		named := host("dddd1111-0000-4000-8000-000000000000", "bbbb")
		host("bbbb1111-0000-4000-8000-000000000000", "other")
		del := t0.Add(time.Hour)
		gone.DeletedAt = &del
		if err := s.UpdateHost(ctx, gone); err != nil {
			t.Fatal(err)
		}

		if h, err := s.GetHost(ctx, "aaaa1"); err != nil || h.ID != a1.ID {
			t.Fatalf("unique prefix: %v %+v", err, h)
		}
		_, err := s.GetHost(ctx, "aaaa")
		if !errkind.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), "one ("+a1.ID+")") || !strings.Contains(err.Error(), "two ("+a2.ID+")") {
			t.Fatalf("shared prefix: %v, want an invalid error naming both hosts", err)
		}
		if _, err := s.GetHost(ctx, "cccc"); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("prefix of a deleted host only: %v, want not found", err)
		}
		if h, err := s.GetHost(ctx, "bbbb"); err != nil || h.ID != named.ID {
			t.Fatalf("a name before an id's beginning: %v %+v", err, h)
		}
		// Not an id's beginning: no LIKE pattern reaches the database.
		for _, ref := range []string{"aaaa%", "_aaa", "AAAA1"} {
			if _, err := s.GetHost(ctx, ref); !errkind.Is(err, errkind.NotFound) {
				t.Fatalf("%q: %v, want not found", ref, err)
			}
		}

		project := func(id, owner, title string) model.Project {
			p := newProject(a1.ID, owner)
			p.ID, p.Title = id, title
			if err := s.CreateProject(ctx, p); err != nil {
				t.Fatal(err)
			}
			return p
		}
		project("eeee1111-0000-4000-8000-000000000000", "alice", "thesis")
		p2 := project("eeee2222-0000-4000-8000-000000000000", "alice", "notes")
		p3 := project("eeee3333-0000-4000-8000-000000000000", "bob", "thesis")
		project("ffff1111-0000-4000-8000-000000000000", "bob", "eeee")
		deleted := project("eeee4444-0000-4000-8000-000000000000", "alice", "old")
		deleted.DeletedAt = &del
		if err := s.UpdateProject(ctx, deleted); err != nil {
			t.Fatal(err)
		}
		if err := s.AddProjectCollaborator(ctx, p3.ID, "carol", t0); err != nil {
			t.Fatal(err)
		}
		ids := func(ref, account string, limit int) string {
			t.Helper()
			ps, err := s.FindProjects(ctx, ref, account, limit)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range ps {
				out = append(out, p.ID[:4]+p.ID[4:8])
			}
			return strings.Join(out, " ")
		}
		for _, c := range []struct {
			ref, account string
			limit        int
			want         string
		}{
			{"eeee", "", 10, "eeee1111 eeee2222 eeee3333 ffff1111"}, // the title eeee too; not the deleted one
			{"eeee", "", 2, "eeee1111 eeee2222"},
			{"eeee", "alice", 10, "eeee1111 eeee2222"},
			{"eeee", "carol", 10, "eeee3333"}, // a collaborator's
			{"eeee2", "", 10, "eeee2222"},
			{"thesis", "", 10, "eeee1111 eeee3333"},
			{"thesis", "bob", 10, "eeee3333"},
			{"old", "", 10, ""},
			{"eeee%", "", 10, ""},
			{p2.ID, "", 10, ""}, // a whole id is not a prefix: GetProject finds it
		} {
			if got := ids(c.ref, c.account, c.limit); got != c.want {
				t.Errorf("FindProjects(%q, %q, %d) = %q, want %q", c.ref, c.account, c.limit, got, c.want)
			}
		}
	})
}
