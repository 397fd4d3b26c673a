package projects

import (
	"context"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
)

// Exec runs a command in a running project and returns its exit code.
// Output streams to eio as it comes.
func (s *Service) Exec(ctx context.Context, c Caller, id string, req agentapi.ExecRequest, eio agentapi.ExecIO) (int, error) {
	if len(req.Command) == 0 {
		return -1, invalid("no command given: cocalc-hosts project exec %s -- COMMAND [ARGS...]", id)
	}
	_, p, err := s.liveFor(ctx, c, id)
	if err != nil {
		return -1, err
	}
	h, err := s.hostOf(ctx, p, "run commands in")
	if err != nil {
		return -1, err
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return -1, err
	}
	code, err := client.Exec(ctx, p.ID, req, eio)
	if agentapi.IsCode(err, agentapi.CodeNotRunning) {
		// The host stopped it (idle) or it was never started: say so,
		// and fix the record on the way.
		s.observe(ctx, p, agentapi.ProjectStatus{ID: p.ID, State: agentapi.ProjectStopped})
		return -1, refused("project %s is not running; start it with `cocalc-hosts project start %s`", p.ID, p.ID)
	}
	if err != nil {
		return -1, hostErr(h, err)
	}
	return code, nil
}

// hostFor finds a live host and checks that a owns it (or is an admin).
func (s *Service) ownedHost(ctx context.Context, a actor, host, what string) (model.Host, error) {
	h, err := s.liveHost(ctx, host)
	if err != nil {
		return h, err
	}
	if h.Owner != a.ID && !a.Admin {
		return h, refused("only the owner of host %s (%s) or an admin may %s; %s is neither", h.Name, h.Owner, what, a.ID)
	}
	return h, nil
}

// AddCollaborator lets account place projects on host.
func (s *Service) AddCollaborator(ctx context.Context, c Caller, host, account string) (model.Host, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return model.Host{}, err
	}
	if err := CheckAccount(account); err != nil {
		return model.Host{}, err
	}
	h, err := s.ownedHost(ctx, a, host, "change its collaborators")
	if err != nil {
		return h, err
	}
	if account == h.Owner {
		return h, invalid("%s owns host %s already", account, h.Name)
	}
	if _, err := s.Store.EnsureAccount(ctx, account); err != nil {
		return h, err
	}
	return h, s.Store.AddCollaborator(ctx, h.ID, account)
}

// RemoveCollaborator takes account's right to place projects on host
// away (its projects there stay).
func (s *Service) RemoveCollaborator(ctx context.Context, c Caller, host, account string) (model.Host, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return model.Host{}, err
	}
	h, err := s.ownedHost(ctx, a, host, "change its collaborators")
	if err != nil {
		return h, err
	}
	if err := s.Store.RemoveCollaborator(ctx, h.ID, account); err != nil {
		if errkind.Is(err, errkind.NotFound) {
			return h, errkind.Errorf(errkind.NotFound, "%s is not a collaborator on host %s", account, h.Name)
		}
		return h, err
	}
	return h, nil
}

// Collaborators lists host's collaborators, for its owner, its
// collaborators and admins.
func (s *Service) Collaborators(ctx context.Context, c Caller, host string) (model.Host, []string, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return model.Host{}, nil, err
	}
	h, err := s.liveHost(ctx, host)
	if err != nil {
		return h, nil, err
	}
	cs, err := s.Store.ListCollaborators(ctx, h.ID)
	if err != nil {
		return h, nil, err
	}
	allowed := a.Admin || h.Owner == a.ID
	for _, x := range cs {
		allowed = allowed || x == a.ID
	}
	if !allowed {
		return h, nil, refused("%s may not see the collaborators of host %s", a.ID, h.Name)
	}
	if cs == nil {
		cs = []string{}
	}
	return h, cs, nil
}

// SetShared puts a host in the shared pool (or takes it out); admins only.
func (s *Service) SetShared(ctx context.Context, c Caller, host string, shared bool) (model.Host, error) {
	a, err := s.who(ctx, c)
	if err != nil {
		return model.Host{}, err
	}
	if !a.Admin {
		return model.Host{}, refused("only admins may change the shared pool; %s is not an admin", a.ID)
	}
	h, err := s.liveHost(ctx, host)
	if err != nil {
		return h, err
	}
	if err := s.Store.SetHostShared(ctx, h.ID, shared); err != nil {
		return h, err
	}
	h.Shared = shared
	return h, nil
}

// SetAdmin grants or revokes admin rights. Admins may do it; so may
// anyone while there is no admin at all, which is how the operator of a
// new deployment (who holds the database) makes the first one.
func (s *Service) SetAdmin(ctx context.Context, c Caller, account string, admin bool) error {
	a, err := s.who(ctx, c)
	if err != nil {
		return err
	}
	if err := CheckAccount(account); err != nil {
		return err
	}
	if !a.Admin {
		admins, err := s.Store.ListAdmins(ctx)
		if err != nil {
			return err
		}
		if len(admins) > 0 || !admin {
			return refused("only admins may grant or revoke admin rights; %s is not an admin", a.ID)
		}
	}
	if !admin && account == a.ID {
		admins, err := s.Store.ListAdmins(ctx)
		if err != nil {
			return err
		}
		if len(admins) == 1 {
			return refused("%s is the last admin; grant another account first", account)
		}
	}
	return s.Store.SetAdmin(ctx, account, admin)
}

// Admins lists the admin accounts.
func (s *Service) Admins(ctx context.Context) ([]string, error) {
	out, err := s.Store.ListAdmins(ctx)
	if out == nil {
		out = []string{}
	}
	return out, err
}

// SetHostIdle makes a host stop itself once no project has been active for
// after (0 turns it off). The host must be running: its agent keeps and
// enforces the policy.
func (s *Service) SetHostIdle(ctx context.Context, c Caller, host string, after time.Duration) (agentapi.IdlePolicy, error) {
	if after < 0 || (after > 0 && after < time.Second) {
		return agentapi.IdlePolicy{}, invalid("--after %s: use 0 (off) or at least 1s", after)
	}
	a, err := s.who(ctx, c)
	if err != nil {
		return agentapi.IdlePolicy{}, err
	}
	h, err := s.ownedHost(ctx, a, host, "set its idle stop")
	if err != nil {
		return agentapi.IdlePolicy{}, err
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return agentapi.IdlePolicy{}, err
	}
	p, err := client.SetIdle(ctx, agentapi.IdlePolicy{StopAfterSeconds: int64(after / time.Second)})
	if err != nil {
		return p, hostErr(h, err)
	}
	return p, s.Store.SetIdlePolicy(ctx, h.ID, p.StopAfterSeconds, s.Now())
}

// HostIdle returns a host's idle stop: the agent's view when the host
// runs, else the recorded policy.
func (s *Service) HostIdle(ctx context.Context, c Caller, host string) (model.Host, agentapi.IdlePolicy, error) {
	if _, err := s.who(ctx, c); err != nil {
		return model.Host{}, agentapi.IdlePolicy{}, err
	}
	h, err := s.liveHost(ctx, host)
	if err != nil {
		return h, agentapi.IdlePolicy{}, err
	}
	if h.Status == model.StatusRunning {
		if client, err := s.client(ctx, h); err == nil {
			if p, err := client.Idle(ctx); err == nil {
				return h, p, nil
			}
		}
	}
	v, err := s.Store.GetIdlePolicy(ctx, h.ID)
	return h, agentapi.IdlePolicy{StopAfterSeconds: v}, err
}

// BuildImageRequest makes an image on a host from Debian packages.
type BuildImageRequest struct {
	Host    string
	Name    string
	Suite   string
	Include []string
	Mirror  string
	Rebuild bool
}

// BuildImage builds an image on a host the caller owns or collaborates on
// (or any host, for admins), streaming the tools' output to progress. It
// reports whether the root filesystem came from the host's cache.
func (s *Service) BuildImage(ctx context.Context, c Caller, r BuildImageRequest, progress func(string)) (model.Host, bool, error) {
	if !agentapi.ValidImageName(r.Name) {
		return model.Host{}, false, invalid("invalid image name %q: use a name such as cocalc-base", r.Name)
	}
	if _, err := (podman.BuildSpec{Suite: r.Suite, Include: r.Include, Mirror: r.Mirror}).Normalize(); err != nil {
		return model.Host{}, false, invalid("%v", err)
	}
	a, err := s.who(ctx, c)
	if err != nil {
		return model.Host{}, false, err
	}
	h, err := s.liveHost(ctx, r.Host)
	if err != nil {
		return h, false, err
	}
	ok := a.Admin || h.Owner == a.ID
	if !ok {
		if ok, err = s.isCollaborator(ctx, a.ID, h); err != nil {
			return h, false, err
		}
	}
	if !ok {
		return h, false, refused("%s may not build images on host %s (owned by %s)", a.ID, h.Name, h.Owner)
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return h, false, err
	}
	cached, err := client.BuildImage(ctx, agentapi.BuildImageRequest{Name: r.Name, Suite: r.Suite, Include: r.Include, Mirror: r.Mirror, Rebuild: r.Rebuild}, progress)
	if err != nil {
		return h, cached, hostErr(h, err)
	}
	return h, cached, nil
}

// ImageStatus is a suggested image and whether a host has it.
type ImageStatus struct {
	Image
	Present bool `json:"present"`
}

// Images lists the suggested images and which of them host has.
func (s *Service) Images(ctx context.Context, c Caller, host string) (model.Host, []ImageStatus, error) {
	if _, err := s.who(ctx, c); err != nil {
		return model.Host{}, nil, err
	}
	h, err := s.liveHost(ctx, host)
	if err != nil {
		return h, nil, err
	}
	client, err := s.client(ctx, h)
	if err != nil {
		return h, nil, err
	}
	out := make([]ImageStatus, 0, len(SuggestedImages))
	for _, im := range SuggestedImages {
		info, err := client.Image(ctx, im.Name)
		if err != nil {
			return h, nil, hostErr(h, err)
		}
		out = append(out, ImageStatus{Image: im, Present: info.Present})
	}
	return h, out, nil
}
