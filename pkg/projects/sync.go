package projects

import (
	"context"
	"fmt"

	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// SyncReport is what one SyncAll pass did.
type SyncReport struct {
	// Hosts is how many running hosts with projects were asked.
	Hosts int `json:"hosts"`
	// Unreachable lists the hosts whose agent did not answer; none of
	// their projects was changed.
	Unreachable []HostError `json:"unreachable"`
	// Checked is how many projects a host reported on.
	Checked int `json:"checked"`
	// Updated lists the projects whose record changed (state, last
	// activity or error). A project with a queued or running job is never
	// updated: the job's write wins.
	Updated []string `json:"updated"`
}

// HostError is a host that could not be asked.
type HostError struct {
	Host  string `json:"host"`
	Name  string `json:"name"`
	Error string `json:"error"`
}

// SyncAll brings every live project's record in line with what its host
// reports — the same update as `project list --refresh`, for all
// accounts — so that projects a host stopped by itself (for being idle)
// show as stopped without anyone asking. It is the worker's periodic duty.
func (s *Service) SyncAll(ctx context.Context) (SyncReport, error) {
	ps, err := s.Store.ListProjects(ctx, store.ProjectFilter{})
	if err != nil {
		return SyncReport{}, fmt.Errorf("sync projects: %w", err)
	}
	_, rep := s.refresh(ctx, ps)
	return rep, nil
}
