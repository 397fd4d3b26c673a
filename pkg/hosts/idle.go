package hosts

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// IdleStopKind says how a host of provider p stops once it has been idle
// past its policy: StopReal, the VM powers itself off (a stopped VM is
// not billed for compute); StopHibernate, the control plane stops it
// through the cloud's API (a plain power-off is billed in full there);
// StopNone, it cannot be stopped — an adopted machine is the user's, and
// some clouds cannot stop VMs at all. Hosts that are not bootstrapped
// (local, sim) have their own agent settings.
func IdleStopKind(p provider.Provider, h model.Host) provider.StopKind {
	if h.Spec.Address != "" {
		return provider.StopNone
	}
	c := p.Capabilities()
	if c.Adopt {
		return provider.StopNone
	}
	if !c.Bootstrap || c.Simulated || c.Stop == "" {
		return provider.StopNone
	}
	return c.Stop
}

// IdleStop is a host stopped for being idle past its policy.
type IdleStop struct {
	Host string `json:"host"`
	Name string `json:"name"`
	// IdleSince is the host's last project activity.
	IdleSince *time.Time `json:"idle_since,omitempty"`
	Job       string     `json:"job,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// StopIdleHosts stops, through their cloud's API, the running hosts whose
// agents say the control plane stops them (IdleStopByControlPlane) and
// report them idle past their policy. Hosts that stop themselves are left
// to do so. It is the worker's periodic duty; a host that cannot be asked
// or stopped now is reported and tried again next time.
func (s *Service) StopIdleHosts(ctx context.Context) ([]IdleStop, error) {
	policies, err := s.Store.ListIdlePolicies(ctx)
	if err != nil {
		return nil, fmt.Errorf("idle stop: %w", err)
	}
	ids := make([]string, 0, len(policies))
	for id := range policies {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []IdleStop
	for _, id := range ids {
		h, err := s.Store.GetHost(ctx, id)
		if errkind.Is(err, errkind.NotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("idle stop: %w", err)
		}
		if h.DeletedAt != nil || h.Status != model.StatusRunning {
			continue
		}
		client, err := s.AgentClient(ctx, h)
		if err != nil {
			out = append(out, IdleStop{Host: h.ID, Name: h.Name, Error: err.Error()})
			continue
		}
		p, err := client.Idle(ctx)
		if err != nil {
			out = append(out, IdleStop{Host: h.ID, Name: h.Name, Error: fmt.Sprintf("ask its agent: %v", err)})
			continue
		}
		if p.StoppedBy != agentapi.IdleStopByControlPlane || p.StopAfterSeconds <= 0 || p.StopsAt == nil || s.Now().Before(*p.StopsAt) {
			continue
		}
		is := IdleStop{Host: h.ID, Name: h.Name, IdleSince: p.LastActivity}
		sub, err := s.Stop(ctx, h.ID, StopOptions{})
		switch {
		case err != nil:
			is.Error = err.Error()
		case sub.Job != nil:
			is.Job = sub.Job.ID
		}
		out = append(out, is)
	}
	return out, nil
}
