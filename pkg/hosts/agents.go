package hosts

import (
	"context"
	"fmt"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// AgentConnector opens a client to a host's agent. The agent API listens
// only on a unix socket on its host: local hosts are reached directly,
// remote ones by forwarding that socket over SSH.
type AgentConnector interface {
	AgentClient(ctx context.Context, h model.Host) (*agentapi.Client, error)
}

// LocalAgents reaches agents whose socket is on this machine (recorded by
// the local provider in the host's runtime as meta "socket").
type LocalAgents struct{}

func (LocalAgents) AgentClient(_ context.Context, h model.Host) (*agentapi.Client, error) {
	sock := h.Runtime.Meta["socket"]
	if sock == "" {
		return nil, fmt.Errorf("host %s: no agent socket on this machine", h.Name)
	}
	return agentapi.NewClient(sock), nil
}

// AgentClient returns a client for h's agent.
func (s *Service) AgentClient(ctx context.Context, h model.Host) (*agentapi.Client, error) {
	if h.Status != model.StatusRunning {
		return nil, refused("host %s is %s; start it with `cocalc-hosts start %s`", h.Name, h.Status, h.Name)
	}
	// A simulated host is a row in the database: there is no agent to
	// reach, and no project can run on it.
	if r, err := provider.Lookup(h.Provider); err == nil && r.Capabilities.Simulated {
		return nil, refused("host %s is on %s, a simulated cloud: its hosts run no agent and no projects; use a local (`cocalc-hosts create --cloud local`) or cloud host", h.Name, h.Provider)
	}
	c := s.Agents
	if c == nil {
		c = LocalAgents{}
	}
	return c.AgentClient(ctx, h)
}
