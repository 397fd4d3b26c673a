package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

// Concurrent creates on one host cannot both take its last disk room.
func TestCreateProjectWithinIsSerialized(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.SQLStore) {
		ctx := context.Background()
		h := newHost("h")
		if err := s.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		const gb = int64(1 << 30)
		var wg sync.WaitGroup
		var mu sync.Mutex
		created, refused := 0, 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := newProject(h.ID, "alice")
				p.Limits.DiskBytes = gb
				_, err := s.CreateProjectWithin(ctx, newProjectWithJob(p, 3*gb))
				var noRoom *store.NoRoomError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					created++
				case errors.As(err, &noRoom):
					refused++
					if noRoom.Promised+gb <= 3*gb {
						t.Errorf("refused with room left: %+v", noRoom)
					}
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		ps, _ := s.ListProjects(ctx, store.ProjectFilter{HostID: h.ID, IncludeDeleted: true})
		if created != 3 || refused != 5 || len(ps) != 3 {
			t.Fatalf("created %d, refused %d, rows %d; want 3, 5, 3", created, refused, len(ps))
		}
		p := newProject("no-such-host", "alice")
		if _, err := s.CreateProjectWithin(ctx, newProjectWithJob(p, gb)); !errkind.Is(err, errkind.NotFound) {
			t.Fatalf("unknown host: %v", err)
		}
	})
}
