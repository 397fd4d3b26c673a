package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

// Migration 6 renames host_jobs to jobs and names the key column for
// what it holds: the jobs queued before the upgrade keep their subjects,
// host or project, and one active job per subject still holds.
func TestJobSubjectMigration(t *testing.T) {
	for _, b := range []struct {
		name string
		open func(t *testing.T) (*SQLStore, error)
	}{
		{"sqlite", func(t *testing.T) (*SQLStore, error) {
			return openSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), Options{})
		}},
		{"postgres", func(t *testing.T) (*SQLStore, error) {
			return openPostgres(context.Background(), pgtest.Shared(t).NewDatabase(t), Options{ConnectTimeout: 10e9})
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := b.open(t)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.migrateTo(ctx, 5); err != nil {
				t.Fatal(err)
			}
			for _, row := range [][]any{{"j1", "h1", "create", "done"}, {"j2", "h1", "start", "queued"}, {"j3", "p1", "project.start", "running"}} {
				if _, err := s.db.ExecContext(ctx, `INSERT INTO host_jobs (id, host_id, action, state, max_attempts, run_after, created_at, updated_at)
 VALUES ($1, $2, $3, $4, 5, 0, 0, 0)`, row...); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.migrate(ctx); err != nil {
				t.Fatal(err)
			}
			want := map[string]model.Subject{"j1": model.HostSubject("h1"), "j2": model.HostSubject("h1"), "j3": model.ProjectSubject("p1")}
			for id, subj := range want {
				j, err := s.GetJob(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if j.Subject != subj {
					t.Errorf("job %s (%s): subject %v, want %v", id, j.Action, j.Subject, subj)
				}
			}
			// The active project job still holds its project.
			_, created, err := s.EnqueueJob(ctx, model.Job{ID: "j4", Subject: model.ProjectSubject("p1"), Action: "project.stop", MaxAttempts: 5})
			if created || err == nil {
				t.Fatalf("a second active job on project p1 was accepted (created %v, err %v)", created, err)
			}
		})
	}
}
