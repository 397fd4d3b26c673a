package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/catalog"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// ShowOptions are the inputs of `show`.
type ShowOptions struct {
	Host  string
	Watch bool
}

// HostDetail is `show`'s JSON: the host object plus what is known about it.
type HostDetail struct {
	hosts.Detail
	// Address is how to reach the host: its public DNS name when DNS is
	// configured, else its raw public IP.
	Address string `json:"address,omitempty"`
}

func newShowCmd(f *Factory) *cobra.Command {
	o := &ShowOptions{}
	cmd := hostVerbCmd(f, &cobra.Command{
		Use:   "show HOST",
		Short: "Show one host in detail",
	}, o, &o.Host, runShow)
	cmd.Flags().BoolVar(&o.Watch, "watch", false, "show it again on each change (off a terminal: a JSON line each time the host changes) until interrupted")
	return cmd
}

func runShow(ctx context.Context, f *Factory, o *ShowOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	if !o.Watch {
		return showHost(ctx, f, svc, o.Host)
	}
	h, err := svc.Get(ctx, o.Host)
	if err != nil {
		return err
	}
	// By id from here on: a host of the same name made later is another.
	return runWatch(ctx, f, projects.Caller{}, watchSpec{topic: store.TopicHosts, also: []store.Topic{store.TopicJobs},
		draw: func(ctx context.Context) error { return showHost(ctx, f, svc, h.ID) },
		rows: func(ctx context.Context) ([]store.Event, error) {
			h, err := svc.Get(ctx, h.ID)
			return hostRows([]model.Host{h}), err
		}})
}

func showHost(ctx context.Context, f *Factory, svc HostService, host string) error {
	hd, err := svc.Detail(ctx, host)
	if err != nil {
		return err
	}
	h := hd.Host
	d := HostDetail{Detail: hd, Address: publicAddress(h)}
	return f.render(d, func(w *Out) error {
		kv := func(k, v string) { fmt.Fprintf(w, "%-14s %s\n", k+":", v) }
		kv("name", h.Name)
		kv("id", h.ID)
		kv("owner", h.Owner)
		kv("provider", h.Provider)
		kv("region", orDash(h.Region)+zoneSuffix(h.Zone))
		kv("status", string(h.Status))
		kv("machine", orDash(h.Spec.MachineType))
		if h.Spec.GPUModel != "" {
			kv("gpu", fmt.Sprintf("%d x %s", h.Spec.GPUCount, h.Spec.GPUModel))
		}
		if h.Spec.DiskGB > 0 {
			kv("disk", fmt.Sprintf("%d GB", h.Spec.DiskGB))
		}
		kv("price", fmt.Sprintf("$%.4f/hour at launch", h.HourlyPrice))
		if h.Spec.DiskPricePerGBMonth > 0 && !catalog.DiskIncluded(h.Provider) {
			kv("disk price", fmt.Sprintf("$%.4f/GB-month at launch (%s)", h.Spec.DiskPricePerGBMonth, orDash(h.Spec.DiskPriceSource)))
		}
		if h.Spec.BootDiskMonthly > 0 {
			kv("boot disk", fmt.Sprintf("$%.2f/month at launch, while the VM exists", h.Spec.BootDiskMonthly))
		}
		if h.Runtime.InstanceID != "" {
			kv("instance", h.Runtime.InstanceID)
		}
		if d.Address != "" {
			kv("address", addressLine(h))
		}
		if h.Spec.Reverse {
			kv("path", "reverse: the machine keeps a tunnel to the server (`cocalc-hosts join`), which reaches it and relays its ingress")
			switch t := d.Tunnel; {
			case t != nil && t.Holder != "" && t.ConnectedAt != nil:
				kv("tunnel", fmt.Sprintf("held by %s since %s", t.Holder, t.ConnectedAt.Local().Format("2006-01-02 15:04:05")))
			case t != nil:
				kv("tunnel", "not connected (is `cocalc-hosts join` running on the machine?)")
			}
		} else {
			kv("path", "direct")
		}
		if s := h.Runtime.Meta["storage"]; s != "" {
			note := ""
			if n := h.Runtime.Meta["storage_note"]; n != "" {
				note = " (" + n + ")"
			}
			kv("storage", s+note)
		}
		if d.Agent != nil {
			kv("agent", agentLine(d.Agent))
			if st := d.Agent.Status; st != nil && st.Podman != nil {
				kv("podman", st.Podman.String())
			}
		}
		if d.Ingress != nil {
			kv("ingress", ingressLine(*d.Ingress, f.Now()))
		}
		kv("created", h.CreatedAt.Local().Format("2006-01-02 15:04:05")+" ("+ago(f.Now(), h.CreatedAt)+")")
		kv("last action", orDash(h.LastAction))
		kv("last error", orDash(h.LastError))
		if d.PendingJob != nil {
			kv("pending", fmt.Sprintf("%s (%s, attempt %d)", d.PendingJob.Action, d.PendingJob.State, d.PendingJob.Attempts))
		}
		if len(d.Collaborators) > 0 {
			kv("collaborators", strings.Join(d.Collaborators, ", "))
		}
		if len(h.Runtime.Meta) > 0 {
			keys := make([]string, 0, len(h.Runtime.Meta))
			for k := range h.Runtime.Meta {
				if k != "storage" && k != "storage_note" {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				kv(k, h.Runtime.Meta[k])
			}
		}
		return nil
	})
}

func zoneSuffix(z string) string {
	if z == "" {
		return ""
	}
	return " / " + z
}
