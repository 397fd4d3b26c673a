package projects

import (
	"context"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Get returns project id's record as stored, without asking its host
// (Show asks): what a caller re-reads after one of its jobs ended.
func (s *Service) Get(ctx context.Context, c Caller, id string) (model.Project, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return model.Project{}, err
	}
	return s.project(ctx, a, id)
}

// Actor returns the account whose rights apply to c, and whether it is an
// admin: what a server checks before it passes a request on.
func (s *Service) Actor(ctx context.Context, c Caller) (account string, admin bool, err error) {
	a, err := s.who(ctx, c)
	return a.ID, a.Admin, err
}
