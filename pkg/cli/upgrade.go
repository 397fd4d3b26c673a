package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// UpgradeOptions are the inputs of `upgrade`.
type UpgradeOptions struct {
	Host   string
	All    bool
	NoWait bool
}

// UpgradeResult is one host's outcome under `upgrade --all`.
type UpgradeResult struct {
	Host    string     `json:"host"`
	Result  string     `json:"result"` // upgraded, queued, failed, skipped
	Job     *model.Job `json:"job,omitempty"`
	Version string     `json:"agent_version,omitempty"`
	Error   string     `json:"error,omitempty"`
}

func newUpgradeCmd(f *Factory) *cobra.Command {
	o := &UpgradeOptions{}
	cmd := &cobra.Command{
		Use:   "upgrade HOST | --all",
		Short: "Install this version's agent on hosts and restart it",
		Long: `Install the agent of this cocalc-hosts version on a running host that was
bootstrapped over SSH (any cloud, or --cloud ssh), and restart the agent. The
bootstrap scripts and settings are brought up to date too.

Projects keep running: they are podman containers, which the agent does not
own as child processes (the systemd unit has KillMode=process; without
systemd only the agent process is signalled). The restarted agent finds them
again by their labels.`,
		Example: `  cocalc-hosts upgrade gpu1
  cocalc-hosts upgrade --all`,
		ValidArgsFunction: completeHosts(f),
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.All && len(args) > 0:
				return usagef("give a host or --all, not both")
			case !o.All && len(args) != 1:
				return usagef("upgrade needs one host (name or id), or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Host = args[0]
			}
			return runUpgrade(cmd.Context(), f, o)
		},
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "upgrade every running host that was bootstrapped over SSH")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the upgrades; a `worker` runs them")
	return cmd
}

func runUpgrade(ctx context.Context, f *Factory, o *UpgradeOptions) error {
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	if !o.All {
		sub, err := svc.Upgrade(ctx, o.Host)
		if err != nil {
			return err
		}
		return finishSubmitted(ctx, f, sub, o.NoWait)
	}
	hs, err := svc.List(ctx, store.HostFilter{})
	if err != nil {
		return err
	}
	results := []UpgradeResult{}
	var failed []string
	for _, h := range hs {
		if ok, err := svc.IsBootstrapped(ctx, h); err != nil || !ok {
			continue // local and simulated hosts have no remote agent
		}
		r := UpgradeResult{Host: h.Name}
		if h.Status != model.StatusRunning {
			r.Result, r.Error = "skipped", "host is "+string(h.Status)
			results = append(results, r)
			continue
		}
		sub, err := svc.Upgrade(ctx, h.ID)
		if err != nil {
			r.Result, r.Error = "failed", err.Error()
			failed = append(failed, h.Name)
			results = append(results, r)
			continue
		}
		r.Job, r.Result = sub.Job, "queued"
		if !o.NoWait && sub.Job != nil {
			job, err := runJob(ctx, f, *sub.Job, eventPrinter(f))
			if err != nil {
				return err
			}
			r.Job = &job
			if job.State == model.JobFailed {
				r.Result, r.Error = "failed", job.LastError
				failed = append(failed, h.Name)
			} else {
				r.Result = "upgraded"
				if hh, err := svc.Get(ctx, h.ID); err == nil {
					r.Version = hh.Runtime.Meta["agent_version"]
				}
			}
		}
		results = append(results, r)
	}
	err = f.render(results, func(w *Out) error {
		if len(results) == 0 {
			fmt.Fprintln(w, "no hosts bootstrapped over SSH")
		}
		t := w.table("HOST", "RESULT", "AGENT", "ERROR")
		for _, r := range results {
			t.row(r.Host, r.Result, orDash(r.Version), orDash(truncate(r.Error, 80)))
		}
		return t.flush()
	})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return errkind.Errorf(errkind.Failed, "upgrade failed on %s; see `cocalc-hosts logs --boot HOST`", strings.Join(failed, ", "))
	}
	return nil
}
