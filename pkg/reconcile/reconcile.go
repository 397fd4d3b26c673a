// Package reconcile compares what the clouds say with what the store says
// and repairs the store: status drift (a VM stopped behind our back), VMs
// that vanished (after Strikes consecutive misses, never on one look), and
// VMs nobody owns (orphans, deleted only when asked).
//
// Safety rules, each because the alternative loses data or money:
//   - A provider whose List fails changes nothing: an API error says
//     nothing about the VMs.
//   - Hosts with an active job are skipped: the job owns them, and its
//     worker writes the host row when it finishes.
//   - Instances are listed before hosts and jobs are read, so a VM made
//     after our host listing cannot be mistaken for an orphan.
//   - Every write re-reads the host and its jobs first, and leaves the host
//     alone if anything changed since the listing (see write).
//
// The package never prints; the CLI renders the Report.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// DefaultStrikes is how many consecutive passes must miss a VM before its
// host is marked deprovisioned. One miss can be a cloud's eventually
// consistent list; two in a row, minutes apart, is the VM being gone.
const DefaultStrikes = 2

// Pass is what a caller may choose of a reconcile pass (Options carry
// the parts it runs on as well).
type Pass struct {
	DryRun        bool `json:"dry_run"`
	DeleteOrphans bool `json:"delete_orphans"`
}

// Options configure one reconcile pass.
type Options struct {
	Store store.Store
	// Providers are the configured providers by name. Hosts of providers
	// not listed here are not checked.
	Providers map[string]provider.Provider
	// DryRun computes the same report but writes nothing and deletes
	// nothing.
	DryRun bool
	// DeleteOrphans deletes instances that belong to no live host.
	DeleteOrphans bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Strikes is the number of consecutive misses that mark a host
	// deprovisioned; zero means DefaultStrikes.
	Strikes int
	// BeforeWrite, when set, may adjust a host about to be written with a
	// new status or address (the host service republishes or removes its
	// DNS record there). It is not called on dry runs.
	BeforeWrite func(ctx context.Context, h *model.Host)
}

// Report is what a pass found and did. Its JSON field names are a public
// contract (the CLI prints it with --json): do not rename them.
type Report struct {
	DryRun    bool             `json:"dry_run"`
	CheckedAt time.Time        `json:"checked_at"`
	Providers []ProviderReport `json:"providers"`
}

// ProviderReport is one provider's part of a pass.
type ProviderReport struct {
	Provider string `json:"provider"`
	// Instances is how many instances the provider listed.
	Instances int `json:"instances"`
	// HostsChecked counts hosts compared with the provider's list.
	HostsChecked int `json:"hosts_checked"`
	// SkippedPending counts hosts left alone because a job holds them.
	SkippedPending int `json:"skipped_pending"`
	// SkippedChanged counts hosts that changed while the pass ran; the
	// next pass looks at them again.
	SkippedChanged int          `json:"skipped_changed"`
	Updated        []Update     `json:"updated"`
	Missing        []Missing    `json:"missing"`
	Orphans        []Orphan     `json:"orphans"`
	Unexpected     []Unexpected `json:"unexpected"`
	// Error is why the provider could not be checked; when set, nothing
	// was changed for its hosts.
	Error string `json:"error"`
}

// Update is a host whose row was brought in line with its VM.
type Update struct {
	HostID string       `json:"host_id"`
	Name   string       `json:"name"`
	From   model.Status `json:"from"`
	To     model.Status `json:"to"`
	// Changes names the fields that changed: status, instance_id,
	// public_ip, private_ip, data_disk, zone, missing_count.
	Changes []string `json:"changes"`
}

// Missing is a host whose VM the provider did not list.
type Missing struct {
	HostID  string `json:"host_id"`
	Name    string `json:"name"`
	Strikes int    `json:"strikes"`
	// Marked says the host was (or, in a dry run, would be) marked
	// deprovisioned on this pass.
	Marked bool `json:"marked"`
}

// Orphan is an instance of this deployment that belongs to no live host.
type Orphan struct {
	Provider   string            `json:"provider"`
	InstanceID string            `json:"instance_id"`
	Name       string            `json:"name"`
	HostID     string            `json:"host_id"`
	Labels     map[string]string `json:"labels"`
	Deleted    bool              `json:"deleted"`
	Error      string            `json:"error"`
}

// Unexpected is an instance that belongs to a live host but is not the
// host's VM: a duplicate, or a VM of a host marked deprovisioned. These
// are never deleted automatically, since a person has to decide which
// copy holds the data.
type Unexpected struct {
	InstanceID string         `json:"instance_id"`
	Name       string         `json:"name"`
	HostID     string         `json:"host_id"`
	State      provider.State `json:"state"`
	// Reason is "duplicate" or "host_deprovisioned".
	Reason string `json:"reason"`
}

// errChanged says a host changed between the listing and the write.
var errChanged = errors.New("host changed during reconcile")

// Run makes one reconcile pass over every configured provider, in name
// order. The error is for failures of the store or of ctx; provider
// failures are recorded in the report. On error the report holds what
// was done up to that point.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Store == nil {
		return Report{}, fmt.Errorf("reconcile: no store")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Strikes < 0 {
		return Report{}, fmt.Errorf("reconcile: strikes must be positive, got %d", o.Strikes)
	}
	if o.Strikes == 0 {
		o.Strikes = DefaultStrikes
	}
	names := make([]string, 0, len(o.Providers))
	for n := range o.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	rep := Report{DryRun: o.DryRun, CheckedAt: o.Now().UTC(), Providers: []ProviderReport{}}
	for _, name := range names {
		pr, err := reconcileProvider(ctx, o, name, o.Providers[name])
		rep.Providers = append(rep.Providers, pr)
		if err != nil {
			return rep, fmt.Errorf("reconcile %s: %w", name, err)
		}
	}
	return rep, nil
}

func reconcileProvider(ctx context.Context, o Options, name string, p provider.Provider) (ProviderReport, error) {
	pr := ProviderReport{
		Provider: name, Updated: []Update{}, Missing: []Missing{}, Orphans: []Orphan{}, Unexpected: []Unexpected{},
	}
	if p == nil {
		pr.Error = "provider is not configured"
		return pr, nil
	}
	insts, err := p.List(ctx)
	if err != nil {
		pr.Error = fmt.Sprintf("list instances: %v", err)
		return pr, nil
	}
	pr.Instances = len(insts)
	hostList, err := o.Store.ListHosts(ctx, store.HostFilter{Provider: name})
	if err != nil {
		return pr, err
	}
	// One query for all active jobs, after the host listing: a job
	// enqueued for a listed host by now is in the set.
	jobs, err := o.Store.ListJobs(ctx, store.JobFilter{Subject: model.Subject{Kind: model.SubjectHost}, ActiveOnly: true})
	if err != nil {
		return pr, err
	}
	active := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		active[j.Subject.ID] = true
	}

	byHost := make(map[string][]provider.Instance, len(insts))
	var unowned []provider.Instance
	for _, in := range insts {
		// A terminated instance is on its way out of the list; it is
		// neither a host's VM nor an orphan to delete.
		if in.State == provider.StateTerminated {
			continue
		}
		if hid := hostIDOf(in); hid != "" {
			byHost[hid] = append(byHost[hid], in)
		} else {
			unowned = append(unowned, in)
		}
	}
	live := make(map[string]bool, len(hostList))
	for _, h := range hostList {
		live[h.ID] = true
	}

	now := o.Now()
	for _, h := range hostList {
		if err := ctx.Err(); err != nil {
			return pr, err
		}
		if active[h.ID] {
			pr.SkippedPending++
			continue
		}
		cands := byHost[h.ID]
		if h.Status == model.StatusDeprovisioned {
			for _, in := range cands {
				pr.Unexpected = append(pr.Unexpected, unexpected(in, h.ID, "host_deprovisioned"))
			}
			continue
		}
		pr.HostsChecked++
		if len(cands) == 0 {
			if err := missing(ctx, o, name, h, now, &pr); err != nil {
				return pr, err
			}
			continue
		}
		in, dups := pick(h, cands)
		for _, d := range dups {
			pr.Unexpected = append(pr.Unexpected, unexpected(d, h.ID, "duplicate"))
		}
		if err := found(ctx, o, name, h, in, now, &pr); err != nil {
			return pr, err
		}
	}

	for hid, list := range byHost {
		if live[hid] || active[hid] {
			continue
		}
		unowned = append(unowned, list...)
	}
	sort.Slice(unowned, func(i, j int) bool { return unowned[i].Name < unowned[j].Name })
	for _, in := range unowned {
		orph := Orphan{Provider: name, InstanceID: in.ID, Name: in.Name, HostID: hostIDOf(in), Labels: in.Labels}
		if orph.Labels == nil {
			orph.Labels = map[string]string{}
		}
		if o.DeleteOrphans && !o.DryRun {
			if err := deleteOrphan(ctx, o, name, p, in, &orph); err != nil {
				return pr, err
			}
		}
		pr.Orphans = append(pr.Orphans, orph)
	}
	return pr, nil
}

// found brings h in line with its instance in.
func found(ctx context.Context, o Options, name string, h model.Host, in provider.Instance, now time.Time, pr *ProviderReport) error {
	nh := h
	var changes []string
	if st := hosts.StatusFromState(in.State); st != h.Status {
		nh.Status = st
		changes = append(changes, "status")
	}
	changes = append(changes, applyRuntime(&nh, in)...)
	logged := len(changes) > 0 // status and runtime changes go to cloud_vm_log
	if h.MissingCount != 0 {
		nh.MissingCount = 0
		changes = append(changes, "missing_count")
	}
	if len(changes) == 0 {
		return nil
	}
	nh.UpdatedAt = now
	var entry *model.LogEntry
	if logged {
		note := ""
		if nh.Status != h.Status {
			note = fmt.Sprintf("VM %s is %s at %s; host status was %s", in.Name, in.State, name, h.Status)
		}
		entry = logEntry(name, nh, now, note)
	}
	ok, err := write(ctx, o, h, nh, entry)
	if err != nil {
		return err
	}
	if !ok {
		pr.SkippedChanged++
		return nil
	}
	pr.Updated = append(pr.Updated, Update{HostID: h.ID, Name: h.Name, From: h.Status, To: nh.Status, Changes: changes})
	return nil
}

// missing counts a strike against h, whose VM the provider did not list,
// and marks it deprovisioned on the last one.
func missing(ctx context.Context, o Options, name string, h model.Host, now time.Time, pr *ProviderReport) error {
	// A host deleted keeping its disk is off with no instance id, and a
	// failed create leaves an error with none: their VMs are absent on
	// purpose, so absence is no news.
	if h.Runtime.InstanceID == "" && (h.Status == model.StatusOff || h.Status == model.StatusError) {
		return nil
	}
	nh := h
	nh.MissingCount = h.MissingCount + 1
	nh.UpdatedAt = now
	marked := nh.MissingCount >= o.Strikes
	var entry *model.LogEntry
	if marked {
		nh.Status = model.StatusDeprovisioned
		nh.LastError = fmt.Sprintf("VM not found at %s on %d consecutive checks", name, nh.MissingCount)
		// The addresses belonged to the vanished VM and may be reused.
		nh.Runtime.PublicIP, nh.Runtime.PrivateIP = "", ""
		entry = logEntry(name, nh, now, nh.LastError)
	}
	ok, err := write(ctx, o, h, nh, entry)
	if err != nil {
		return err
	}
	if !ok {
		pr.SkippedChanged++
		return nil
	}
	pr.Missing = append(pr.Missing, Missing{HostID: h.ID, Name: h.Name, Strikes: nh.MissingCount, Marked: marked})
	return nil
}

// write stores nh (and its log entry) in place of h, unless this is a dry
// run. The store writes only if the row is unchanged since the listing and
// no job is active, so a worker's newer row is never overwritten with our
// stale copy; a skipped write returns (false, nil).
func write(ctx context.Context, o Options, h, nh model.Host, entry *model.LogEntry) (bool, error) {
	if o.DryRun {
		return true, nil
	}
	if o.BeforeWrite != nil {
		o.BeforeWrite(ctx, &nh)
	}
	ok, err := o.Store.UpdateHostIfIdle(ctx, nh, h.UpdatedAt, entry)
	if err != nil {
		return false, fmt.Errorf("update host %s: %w", h.ID, err)
	}
	return ok, nil
}

// deleteOrphan deletes in, after checking again that no host claimed it
// since the listing.
func deleteOrphan(ctx context.Context, o Options, name string, p provider.Provider, in provider.Instance, orph *Orphan) error {
	if orph.HostID != "" {
		h, err := o.Store.GetHost(ctx, orph.HostID)
		switch {
		case err == nil && h.DeletedAt == nil && h.Provider == name:
			orph.Error = "host appeared during reconcile; not deleted"
			return nil
		case err != nil && !errkind.Is(err, errkind.NotFound):
			return fmt.Errorf("re-read host %s of orphan %s: %w", orph.HostID, in.Name, err)
		}
		jobs, err := o.Store.ListJobs(ctx, store.JobFilter{Subject: model.HostSubject(orph.HostID), ActiveOnly: true, Limit: 1})
		if err != nil {
			return fmt.Errorf("jobs of host %s of orphan %s: %w", orph.HostID, in.Name, err)
		}
		if len(jobs) > 0 {
			orph.Error = fmt.Sprintf("host has pending work (%s job %s); not deleted", jobs[0].Action, jobs[0].ID)
			return nil
		}
	}
	err := p.Delete(ctx, in.Ref(orph.HostID), false)
	switch {
	case err == nil || errkind.Is(err, errkind.NotFound):
		orph.Deleted = true
	default:
		orph.Error = fmt.Sprintf("delete: %v", err)
	}
	return nil
}

// applyRuntime copies what the provider reports about in into h, the way
// the queue's workers do, and names the fields that changed. Empty values
// from a running VM are not copied: some clouds' list calls leave out
// addresses that their status calls report.
func applyRuntime(h *model.Host, in provider.Instance) []string {
	var changes []string
	set := func(field string, dst *string, v string) {
		if *dst != v {
			*dst = v
			changes = append(changes, field)
		}
	}
	if in.ID != "" && in.ID != h.Runtime.InstanceID {
		set("instance_id", &h.Runtime.InstanceID, in.ID)
		h.Runtime.Meta = in.Meta // meta describes one instance
	}
	if in.State == provider.StateStopped {
		set("public_ip", &h.Runtime.PublicIP, "")
		set("private_ip", &h.Runtime.PrivateIP, "")
	} else {
		if in.PublicIP != "" {
			set("public_ip", &h.Runtime.PublicIP, in.PublicIP)
		}
		if in.PrivateIP != "" {
			set("private_ip", &h.Runtime.PrivateIP, in.PrivateIP)
		}
	}
	if in.DataDisk != "" {
		set("data_disk", &h.Runtime.DataDisk, in.DataDisk)
	}
	if in.Zone != "" {
		set("zone", &h.Zone, in.Zone)
	}
	return changes
}

// pick chooses the host's VM among the instances that claim it: the one
// whose ID the host records, else the first listed. The rest are
// duplicates.
func pick(h model.Host, cands []provider.Instance) (provider.Instance, []provider.Instance) {
	best := 0
	for i, in := range cands {
		if in.ID != "" && in.ID == h.Runtime.InstanceID {
			best = i
			break
		}
	}
	dups := make([]provider.Instance, 0, len(cands)-1)
	for i, in := range cands {
		if i != best {
			dups = append(dups, in)
		}
	}
	return cands[best], dups
}

func logEntry(providerName string, h model.Host, now time.Time, note string) *model.LogEntry {
	spec, _ := json.Marshal(h.Spec) // plain structs: Marshal cannot fail
	rt, _ := json.Marshal(h.Runtime)
	return &model.LogEntry{
		HostID: h.ID, TS: now, Action: "reconcile", Status: "changed", Provider: providerName,
		Spec: spec, Runtime: rt, Error: note, HostStatus: h.Status,
	}
}

func unexpected(in provider.Instance, hostID, reason string) Unexpected {
	return Unexpected{InstanceID: in.ID, Name: in.Name, HostID: hostID, State: in.State, Reason: reason}
}

// hostIDOf is the host an instance belongs to: its label, or failing
// that the host id encoded in its name.
func hostIDOf(in provider.Instance) string {
	if in.HostID != "" {
		return in.HostID
	}
	return provider.HostIDFromName(in.Name)
}
