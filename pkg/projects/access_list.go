package projects

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// IngressSettings are the control plane's side of the hosts' ingress.
type IngressSettings struct {
	// TokenTTL is the life of a connect token (`project open`).
	TokenTTL time.Duration
	// CertValidity is the life of an SSH certificate.
	CertValidity time.Duration
	// MaxStale is how long a host keeps using an access list that was not
	// refreshed (ingress.acl_max_stale).
	MaxStale time.Duration
}

// DefaultIngress are the defaults of IngressSettings.
var DefaultIngress = IngressSettings{TokenTTL: 15 * time.Minute, CertValidity: 30 * time.Minute, MaxStale: 10 * time.Minute}

// errNoKeys: the control plane was made without signing keys.
var errNoKeys = errors.New("this control plane has no signing keys configured (tokens.signing_keys)")

func (s *Service) keyring() (*tokens.Keyring, error) {
	if s.Keys == nil {
		return nil, errNoKeys
	}
	return s.Keys()
}

// AccessList is who may reach which project on host h, with the public
// keys that check their credentials. memCap is the host's memory cap for
// projects a login starts (0: unchecked).
func (s *Service) AccessList(ctx context.Context, h model.Host, memCap int64) (agentapi.AccessList, error) {
	kr, err := s.keyring()
	if err != nil {
		return agentapi.AccessList{}, err
	}
	now := s.Now()
	admins, err := s.Store.ListAdmins(ctx)
	if err != nil {
		return agentapi.AccessList{}, err
	}
	accounts, err := s.Store.ProjectAccounts(ctx, h.ID)
	if err != nil {
		return agentapi.AccessList{}, err
	}
	ps, err := s.Store.ListProjects(ctx, store.ProjectFilter{HostID: h.ID})
	if err != nil {
		return agentapi.AccessList{}, err
	}
	l := agentapi.AccessList{HostID: h.ID, IssuedAt: now.UTC(), MaxStaleSeconds: int64(s.ingress().MaxStale / time.Second),
		Keys: kr.Public(now), Admins: admins, Projects: []agentapi.ProjectAccess{}}
	if l.Admins == nil {
		l.Admins = []string{}
	}
	everyone := map[string]bool{}
	for _, a := range admins {
		everyone[a] = true
	}
	for _, p := range ps {
		pa := agentapi.ProjectAccess{ID: p.ID, Accounts: accounts[p.ID]}
		// A login may start a project that is stopped, as `project start`
		// would; not one in the middle of another action.
		if p.State == model.ProjectStopped || p.State == model.ProjectRunning {
			st := startRequest(p, memCap)
			pa.Start = &st
		}
		for _, a := range pa.Accounts {
			everyone[a] = true
		}
		l.Projects = append(l.Projects, pa)
	}
	names := make([]string, 0, len(everyone))
	for a := range everyone {
		names = append(names, a)
	}
	sort.Strings(names)
	keys, err := s.Store.ListSSHKeys(ctx, names)
	if err != nil {
		return agentapi.AccessList{}, err
	}
	for _, k := range keys {
		if l.SSHKeys == nil {
			l.SSHKeys = map[string][]string{}
		}
		l.SSHKeys[k.Account] = append(l.SSHKeys[k.Account], k.PublicKey)
	}
	return l, nil
}

// startRequest is how project p is started on its host.
func startRequest(p model.Project, memCap int64) agentapi.StartProjectRequest {
	return agentapi.StartProjectRequest{
		Image: p.Image, IdleTimeoutSeconds: p.IdleTimeoutSeconds,
		Limits:         agentapi.Limits{MemoryBytes: p.Limits.MemoryBytes, CPUs: p.Limits.CPUs, PidsLimit: p.Limits.PidsLimit, DiskBytes: p.Limits.DiskBytes},
		MemoryCapBytes: memCap,
	}
}

func (s *Service) ingress() IngressSettings {
	in := s.Ingress
	if in.TokenTTL <= 0 {
		in.TokenTTL = DefaultIngress.TokenTTL
	}
	if in.CertValidity <= 0 {
		in.CertValidity = DefaultIngress.CertValidity
	}
	if in.MaxStale <= 0 {
		in.MaxStale = DefaultIngress.MaxStale
	}
	return in
}

// PushAccess gives running host h its current access list and records
// what its agent says about its ingress.
func (s *Service) PushAccess(ctx context.Context, h model.Host) (model.HostIngress, error) {
	client, err := s.client(ctx, h)
	if err != nil {
		return model.HostIngress{}, err
	}
	res, err := client.Resources(ctx)
	if err != nil {
		return model.HostIngress{}, hostErr(h, err)
	}
	l, err := s.AccessList(ctx, h, int64(float64(res.MemoryTotalBytes)*s.MemoryOvercommit))
	if err != nil {
		return model.HostIngress{}, err
	}
	st, err := client.PutAccess(ctx, l)
	if err != nil {
		return model.HostIngress{}, hostErr(h, err)
	}
	in := model.HostIngress{HostID: h.ID, HTTPSAddr: st.Ingress.HTTPSAddr, SSHAddr: st.Ingress.SSHAddr,
		TLSCertSHA256: st.Ingress.TLSCertSHA256, SSHHostKey: st.Ingress.SSHHostKey, Error: st.Ingress.Error, PushedAt: s.Now().UTC(),
		Cert: hostCert(st.Ingress.Cert)}
	if err := s.Store.PutHostIngress(ctx, in); err != nil {
		return in, err
	}
	return in, nil
}

// PushReport is what one PushAllAccess pass did.
type PushReport struct {
	Pushed      int         `json:"pushed"`
	Unreachable []HostError `json:"unreachable"`
}

// PushAllAccess refreshes the access list of every running host: the
// worker's duty every ingress.acl_ttl, so that a revocation reaches the
// hosts within that time, and hosts never go stale while the control
// plane runs.
func (s *Service) PushAllAccess(ctx context.Context) (PushReport, error) {
	rep := PushReport{Unreachable: []HostError{}}
	if s.Keys == nil {
		return rep, nil
	}
	hs, err := s.Store.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return rep, fmt.Errorf("push access lists: %w", err)
	}
	for _, h := range hs {
		if h.Status != model.StatusRunning {
			continue
		}
		if _, err := s.PushAccess(ctx, h); err != nil {
			rep.Unreachable = append(rep.Unreachable, HostError{Host: h.ID, Name: h.Name, Error: err.Error()})
			continue
		}
		rep.Pushed++
	}
	return rep, nil
}

// pushSoon refreshes host's list after a change of access, so that it
// takes effect at once; when the host cannot be reached the worker's next
// pass brings it (within ingress.acl_ttl). It returns a warning, or "".
func (s *Service) pushSoon(ctx context.Context, hostID string) string {
	if s.Keys == nil {
		return ""
	}
	h, err := s.Store.GetHost(ctx, hostID)
	if err != nil || h.Status != model.StatusRunning {
		return ""
	}
	if _, err := s.PushAccess(ctx, h); err != nil {
		return fmt.Sprintf("host %s was not told yet (%v); the worker tells it within ingress.acl_ttl", h.Name, err)
	}
	return ""
}
