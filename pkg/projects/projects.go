// Package projects is the control plane's project domain: placement on a
// host the caller may use (owner, collaborator, or the shared pool) with
// headroom checks, project actions through the durable queue (serialized
// per project: a project's jobs use its id as the queue key), and the
// calls to the host agent that carry them out.
package projects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/tokens"
)

// Agents opens clients to host agents; *hosts.Service is one (it refuses
// hosts that are not running, naming `cocalc-hosts start HOST`).
type Agents interface {
	AgentClient(ctx context.Context, h model.Host) (*agentapi.Client, error)
}

// Service is the project domain.
type Service struct {
	Store  store.Store
	Agents Agents
	Now    func() time.Time
	// MaxAttempts bounds retries of one project action.
	MaxAttempts int
	// MemoryOvercommit is how far the memory limits of a host's running
	// projects may add up beyond its memory (1 = not at all).
	MemoryOvercommit float64
	// DiskOvercommit is how far the disk quotas of a host's projects may
	// add up beyond its pool (1 = not at all).
	DiskOvercommit float64
	// Keys loads the signing keys for connect tokens and SSH certificates
	// (nil: the ingress cannot be used); Ingress are its settings
	// (access_list.go, connect.go).
	Keys    func() (*tokens.Keyring, error)
	Ingress IngressSettings
	// Certs gets hosts CA-issued certificates for their HTTPS ingress
	// (ingress.acme_directory; nil: hosts serve self-signed ones).
	Certs CertIssuer
	// KeepSource is how long a moved project's old copy is kept.
	KeepSource time.Duration
	// RelayMoves sends every move's data through the control plane
	// (moves.path relay), never straight from host to host.
	RelayMoves bool
	// Backup are the backup settings (backup.go).
	Backup BackupSettings
}

// New returns a service with defaults.
func New(st store.Store, agents Agents) *Service {
	return &Service{Store: st, Agents: agents, Now: time.Now, MaxAttempts: 3, MemoryOvercommit: 1, DiskOvercommit: 1, KeepSource: 24 * time.Hour}
}

// Defaults for new projects.
var Defaults = model.ProjectLimits{MemoryBytes: 1 << 30, CPUs: 1, PidsLimit: 1024, DiskBytes: 2 << 30}

// DefaultIdleTimeout stops a project after an hour without activity.
const DefaultIdleTimeout = time.Hour

// Image is one of the suggested project images.
type Image struct {
	Name string `json:"name"`
	Note string `json:"note"`
}

// SuggestedImages are the images projects are known to run on. The first
// is the default: it needs no registry.
var SuggestedImages = []Image{
	{Name: "cocalc-base", Note: "small Debian base made on the host from Debian packages: `cocalc-hosts image build cocalc-base --host HOST` (works without a registry)"},
	{Name: "docker.io/library/debian:bookworm", Note: "Debian 12 from Docker Hub"},
	{Name: "docker.io/library/ubuntu:24.04", Note: "Ubuntu 24.04 from Docker Hub"},
	{Name: "docker.io/library/python:3.12-bookworm", Note: "Python 3.12 on Debian 12 from Docker Hub"},
}

// DefaultImage is used without --image.
var DefaultImage = SuggestedImages[0].Name

func suggested(image string) bool {
	for _, s := range SuggestedImages {
		if s.Name == image || "localhost/"+s.Name == image || "localhost/"+s.Name+":latest" == image {
			return true
		}
	}
	return false
}

// Caller is who asks: Account is the caller's own account; As, if set, is
// the account an operator acts for (only admins may).
type Caller struct {
	Account string
	As      string
}

// actor is the account whose rights apply.
type actor struct {
	ID    string
	Admin bool
	// By is the operator acting for ID (empty when acting for oneself).
	By string
}

func invalid(format string, args ...any) error {
	return errkind.Errorf(errkind.Invalid, format, args...)
}

func refused(format string, args ...any) error {
	return errkind.Errorf(errkind.Refused, format, args...)
}

// accountRE leaves the length (at most 128) to CheckAccount: a counted
// repetition compiles into that many copies at every start-up.
var accountRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._@+-]*$`)

// CheckAccount validates an account id.
func CheckAccount(id string) error {
	if len(id) > 128 || !accountRE().MatchString(id) {
		return invalid("invalid account %q: use letters, digits and . _ @ + -", id)
	}
	return nil
}

// who resolves the caller to the account whose rights apply.
func (s *Service) who(ctx context.Context, c Caller) (actor, error) {
	if err := CheckAccount(c.Account); err != nil {
		return actor{}, err
	}
	me, err := s.Store.EnsureAccount(ctx, c.Account)
	if err != nil {
		return actor{}, err
	}
	if c.As == "" || c.As == c.Account {
		return actor{ID: me.ID, Admin: me.Admin}, nil
	}
	if err := CheckAccount(c.As); err != nil {
		return actor{}, err
	}
	if !me.Admin {
		return actor{}, errkind.Errorf(errkind.Forbidden, "--as %s: only admins may act for another account, and %s is not an admin", c.As, c.Account)
	}
	other, err := s.Store.EnsureAccount(ctx, c.As)
	if err != nil {
		return actor{}, err
	}
	return actor{ID: other.ID, Admin: other.Admin, By: me.ID}, nil
}

// liveHost finds a host that is not deleted.
func (s *Service) liveHost(ctx context.Context, idOrName string) (model.Host, error) {
	h, err := s.Store.GetHost(ctx, idOrName)
	if err != nil {
		return h, err
	}
	if h.DeletedAt != nil || h.Status == model.StatusDeprovisioned {
		return h, errkind.Errorf(errkind.NotFound, "host %s was deleted", idOrName)
	}
	return h, nil
}

// mayPlace reports whether a may put projects on h.
func (s *Service) mayPlace(ctx context.Context, a actor, h model.Host) (bool, error) {
	if a.Admin || h.Owner == a.ID || h.Shared {
		return true, nil
	}
	return s.isCollaborator(ctx, a.ID, h)
}

func (s *Service) isCollaborator(ctx context.Context, account string, h model.Host) (bool, error) {
	cs, err := s.Store.ListCollaborators(ctx, h.ID)
	if err != nil {
		return false, err
	}
	for _, c := range cs {
		if c == account {
			return true, nil
		}
	}
	return false, nil
}

// project finds a project a may act on.
func (s *Service) project(ctx context.Context, a actor, id string) (model.Project, error) {
	if err := CheckID(id); err != nil {
		return model.Project{}, err
	}
	p, err := s.Store.GetProject(ctx, id)
	if err != nil {
		return p, err
	}
	if p.Owner != a.ID && !a.Admin {
		return p, refused("project %s belongs to %s; %s may not use it", id, p.Owner, a.ID)
	}
	return p, nil
}

// Resolve turns what a user typed for a project into its id: the id
// itself, the beginning of it (tables and the dashboard show ids, and
// nobody types 36 characters), or the project's title. Only the live
// projects the caller may use count (its own and those it collaborates
// on; an admin's: all), so a reference says nothing about other
// accounts' projects.
func (s *Service) Resolve(ctx context.Context, c Caller, ref string) (string, error) {
	if id := strings.ToLower(ref); model.CanonicalUUID(id) {
		return id, nil
	}
	a, err := s.who(ctx, c)
	if err != nil {
		return "", err
	}
	if ref == "" {
		return "", invalid("empty project id: give a project's id, the beginning of it, or its title (see `cocalc-hosts project list`)")
	}
	account := a.ID
	if a.Admin {
		account = ""
	}
	const shown = 5
	ps, err := s.Store.FindProjects(ctx, ref, account, shown+1)
	if err != nil {
		return "", err
	}
	switch len(ps) {
	case 0:
		return "", &errkind.NotFoundError{Type: "project", Name: ref}
	case 1:
		return ps[0].ID, nil
	}
	matches := make([]string, 0, shown+1)
	for _, p := range ps[:min(len(ps), shown)] {
		m := p.ID
		if p.Title != "" {
			m += " (" + p.Title + ")"
		}
		matches = append(matches, m)
	}
	if len(ps) > shown {
		matches = append(matches, "…")
	}
	return "", invalid("project %q is ambiguous: it matches %s; give more of the id", ref, strings.Join(matches, ", "))
}

// CheckID accepts only canonical UUIDs as project ids: an id becomes a
// path on the host, so nothing else may pass.
func CheckID(id string) error {
	if !model.CanonicalUUID(id) {
		return invalid("invalid project id %q: project ids are UUIDs such as 3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13 (see `cocalc-hosts project list`)", id)
	}
	return nil
}

// ParseBytes reads a size such as 512M, 2G, 10GiB or 1073741824. Units
// are binary (G = GiB), as podman reads them.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "IB"), "B")
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (use K, M, G or T)", s, t[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) {
		return 0, fmt.Errorf("size %q is not a number of bytes such as 512M or 2G", s)
	}
	v := f * mult
	if v > 1<<62 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// FormatBytes writes a size in binary units (1.5 GiB, 128 MiB).
func FormatBytes(b int64) string { return humanize.IBytes(uint64(max(b, 0))) }

// Submitted is a queued project action.
type Submitted struct {
	Project  model.Project `json:"project"`
	Job      *model.Job    `json:"job,omitempty"`
	Note     string        `json:"note,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
}

// payload is what project jobs carry.
type payload struct {
	Start    bool   `json:"start,omitempty"`
	Purge    bool   `json:"purge,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Path     string `json:"path,omitempty"`
	// Backup jobs (backup_handler.go): restore to scratch or onto host
	// ToHost; Scheduled applies the retention policy after a backup.
	ToScratch bool   `json:"to_scratch,omitempty"`
	ToHost    string `json:"to_host,omitempty"`
	Scheduled bool   `json:"scheduled,omitempty"`
	// By is the operator who acted for the project's owner.
	By string `json:"by,omitempty"`
	// MoveID is the move or clone a job carries out.
	MoveID string `json:"move_id,omitempty"`
}

// newJob is a job of action a on project p, due now.
func (s *Service) newJob(p model.Project, a model.Action, pl payload) model.Job {
	now := s.Now()
	b, _ := json.Marshal(pl)
	return model.Job{
		ID: uuid.NewString(), Subject: model.ProjectSubject(p.ID), Action: a, Payload: b,
		MaxAttempts: s.MaxAttempts, RunAfter: now, CreatedAt: now,
	}
}

// enqueue queues action on project p. A project takes one action at a
// time; asking again for the pending action returns its job.
func (s *Service) enqueue(ctx context.Context, p model.Project, a model.Action, pl payload) (Submitted, error) {
	job, created, err := s.Store.EnqueueJob(ctx, s.newJob(p, a, pl))
	var busy *store.BusyError
	if errors.As(err, &busy) {
		return Submitted{}, errkind.Errorf(errkind.Conflict, "project %s has pending work (%s job %s, %s); wait for it (`cocalc-hosts worker --drain` runs queued work) and retry",
			p.ID, busy.Active.Action, busy.Active.ID, busy.Active.State)
	}
	if err != nil {
		return Submitted{}, err
	}
	sub := Submitted{Project: p, Job: &job}
	if !created {
		sub.Note = fmt.Sprintf("%s already pending (job %s)", a, job.ID)
	}
	return sub, nil
}
