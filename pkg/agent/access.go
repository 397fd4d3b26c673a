package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// DefaultMaxStale is how long a host keeps using an access list the
// control plane has not refreshed, when the list does not say.
const DefaultMaxStale = 10 * time.Minute

// accessCache is the host's copy of its access list: who may reach which
// project through the ingress. It is kept on the pool (0600) so that an
// agent restarted while the control plane is unreachable keeps serving
// until the list goes stale.
type accessCache struct {
	hostID string
	path   string
	now    func() time.Time

	mu   sync.RWMutex
	view *accessView // nil until the first list
}

// accessView is one access list, indexed for the ingress.
type accessView struct {
	list     agentapi.AccessList
	received time.Time
	maxStale time.Duration
	verifier *tokens.Verifier
	projects map[string]*agentapi.ProjectAccess
	admins   map[string]bool
	// keys maps an account key's fingerprint to its accounts.
	keys map[string][]string
}

// savedAccess is what is kept on disk.
type savedAccess struct {
	List       agentapi.AccessList `json:"list"`
	ReceivedAt time.Time           `json:"received_at"`
}

func newAccessCache(hostID, path string, now func() time.Time) *accessCache {
	return &accessCache{hostID: hostID, path: path, now: now}
}

// load reads the saved list, if any; a damaged one is ignored (the
// control plane sends a new one) but reported.
func (a *accessCache) load() error {
	b, err := secrets.Read(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var s savedAccess
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("access list %s: %w", a.path, err)
	}
	v, err := a.index(s.List, s.ReceivedAt)
	if err != nil {
		return fmt.Errorf("access list %s: %w", a.path, err)
	}
	a.mu.Lock()
	a.view = v
	a.mu.Unlock()
	return nil
}

// put replaces the list with l, received now, and saves it.
func (a *accessCache) put(l agentapi.AccessList) error {
	now := a.now()
	v, err := a.index(l, now)
	if err != nil {
		return perr(agentapi.CodeInvalid, "%v", err)
	}
	b, err := json.Marshal(savedAccess{List: l, ReceivedAt: now.UTC()})
	if err != nil {
		return err
	}
	if err := secrets.Write(a.path, b); err != nil {
		return fmt.Errorf("save access list: %w", err)
	}
	a.mu.Lock()
	a.view = v
	a.mu.Unlock()
	return nil
}

// seed uses l, from the agent's config, as if it had been received when
// it was issued: a host bootstrapped long ago with no push since is stale.
func (a *accessCache) seed(l agentapi.AccessList) error {
	v, err := a.index(l, l.IssuedAt)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.view = v
	a.mu.Unlock()
	return nil
}

func (a *accessCache) index(l agentapi.AccessList, received time.Time) (*accessView, error) {
	if l.HostID != a.hostID {
		return nil, fmt.Errorf("access list for host %s, but this is host %s", l.HostID, a.hostID)
	}
	v := &accessView{list: l, received: received, maxStale: time.Duration(l.MaxStaleSeconds) * time.Second,
		verifier: tokens.NewVerifier(a.hostID, l.Keys, a.now),
		projects: map[string]*agentapi.ProjectAccess{}, admins: map[string]bool{}, keys: map[string][]string{}}
	if v.maxStale <= 0 {
		v.maxStale = DefaultMaxStale
	}
	for i := range l.Projects {
		p := &l.Projects[i]
		if err := storage.CheckID(p.ID); err != nil {
			return nil, err
		}
		v.projects[p.ID] = p
	}
	for _, ad := range l.Admins {
		v.admins[ad] = true
	}
	for acct, lines := range l.SSHKeys {
		for _, line := range lines {
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
			if err != nil {
				return nil, fmt.Errorf("ssh key of %s: %w", acct, err)
			}
			fp := ssh.FingerprintSHA256(k)
			v.keys[fp] = append(v.keys[fp], acct)
		}
	}
	return v, nil
}

// current returns the list in force, or why there is none: never
// received, or stale because the control plane has not refreshed it.
func (a *accessCache) current() (*accessView, error) {
	a.mu.RLock()
	v := a.view
	a.mu.RUnlock()
	if v == nil {
		return nil, errNoAccessList
	}
	if age := a.now().Sub(v.received); age > v.maxStale {
		return nil, &staleError{since: v.received, maxStale: v.maxStale}
	}
	return v, nil
}

var errNoAccessList = errors.New("this host has no access list from the control plane yet; try again shortly")

// staleError: the control plane has not refreshed the list for longer
// than the host may keep using it.
type staleError struct {
	since    time.Time
	maxStale time.Duration
}

func (e *staleError) Error() string {
	return fmt.Sprintf("this host's access list was last refreshed at %s, longer ago than %s (is the control plane reachable?); access is refused until it is refreshed",
		e.since.UTC().Format(time.RFC3339), e.maxStale)
}

// status says what the cache holds.
func (a *accessCache) status() agentapi.AccessStatus {
	a.mu.RLock()
	v := a.view
	a.mu.RUnlock()
	if v == nil {
		return agentapi.AccessStatus{Stale: true}
	}
	issued, received := v.list.IssuedAt, v.received
	_, err := a.current()
	return agentapi.AccessStatus{IssuedAt: &issued, ReceivedAt: &received, Stale: err != nil, Projects: len(v.projects)}
}

// mayUse checks that account may use project now.
func (v *accessView) mayUse(account, project string) error {
	if v.admins[account] {
		return nil
	}
	if p := v.projects[project]; p != nil && slices.Contains(p.Accounts, account) {
		return nil
	}
	return &tokens.Error{Reason: tokens.Revoked, Msg: fmt.Sprintf("account %s may not use project %s on this host (never granted, or revoked)", account, project)}
}

// accountsForKey returns the accounts with the public key k that may
// use project.
func (v *accessView) accountsForKey(k ssh.PublicKey, project string) []string {
	var out []string
	for _, acct := range v.keys[ssh.FingerprintSHA256(k)] {
		if v.mayUse(acct, project) == nil {
			out = append(out, acct)
		}
	}
	return out
}

// startSpec is how to start project on login, or nil.
func (v *accessView) startSpec(project string) *agentapi.StartProjectRequest {
	if p := v.projects[project]; p != nil {
		return p.Start
	}
	return nil
}

// Access API handlers.

func (s *server) accessRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+agentapi.AccessPath, s.reply(s.handlePutAccess))
	mux.HandleFunc("GET "+agentapi.AccessPath, s.reply(s.handleAccess))
}

// maxAccessBody bounds an access list (a host with thousands of projects
// and keys stays far below it).
const maxAccessBody = 16 << 20

func (s *server) handlePutAccess(r *http.Request) (any, error) {
	var l agentapi.AccessList
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAccessBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, perr(agentapi.CodeInvalid, "bad access list: %v", err)
	}
	if err := s.access.put(l); err != nil {
		return nil, err
	}
	return s.accessStatus(), nil
}

func (s *server) handleAccess(r *http.Request) (any, error) {
	return s.accessStatus(), nil
}

func (s *server) accessStatus() agentapi.AccessStatus {
	st := s.access.status()
	if s.ingress != nil {
		st.Ingress = s.ingress.info()
	}
	return st
}
