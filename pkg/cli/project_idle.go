package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"

	"github.com/spf13/cobra"
)

// IdleStopOptions are the inputs of `idle-stop`.
type IdleStopOptions struct {
	Host  string
	After time.Duration
	Off   bool
}

func newIdleStopCmd(f *Factory) *cobra.Command {
	o := &IdleStopOptions{}
	var set bool
	cmd := &cobra.Command{
		Use:   "idle-stop HOST [--after DURATION | --off]",
		Short: "Stop a host when no project has been active for a while",
		Long: `Make HOST stop itself (its projects first) once no project on it has been
active for DURATION, so an idle GPU host stops costing money. Activity is CPU
use or an open exec/shell session. The host's agent keeps the policy and acts
on it even when the control plane is away. On clouds where a powered-off VM
is still billed (Hyperstack, whose stop is a hibernate) the agent stops the
projects and a running ` + "`cocalc-hosts worker`" + ` stops the host through the
cloud's API. Without flags, show the policy.
Only the host's owner or an admin may change it; the host must be running.`,
		Example: `  cocalc-hosts idle-stop gpu1 --after 30m
  cocalc-hosts idle-stop gpu1 --off`,
		Args:              oneHost,
		ValidArgsFunction: completeHosts(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Host = args[0]
			set = cmd.Flags().Changed("after") || o.Off
			if cmd.Flags().Changed("after") && o.Off {
				return usagef("give --after or --off, not both")
			}
			return runIdleStop(cmd.Context(), f, o, set)
		},
	}
	cmd.Flags().DurationVar(&o.After, "after", 0, "stop after this long without project activity, e.g. 30m")
	cmd.Flags().BoolVar(&o.Off, "off", false, "never stop the host for being idle")
	return cmd
}

// IdleStopResult is `idle-stop -o json`'s document.
type IdleStopResult struct {
	Host             string     `json:"host"`
	StopAfterSeconds int64      `json:"stop_after_seconds"`
	LastActivity     *time.Time `json:"last_activity,omitempty"`
	StopsAt          *time.Time `json:"stops_at,omitempty"`
}

func runIdleStop(ctx context.Context, f *Factory, o *IdleStopOptions, set bool) error {
	c, ps, err := withProjects(ctx, f, &asFlag{})
	if err != nil {
		return err
	}
	if set {
		if !o.Off && o.After <= 0 {
			return usagef("--after must be a positive duration such as 30m (or use --off)")
		}
		if _, err := ps.SetHostIdle(ctx, c, o.Host, o.After); err != nil {
			return err
		}
	}
	h, p, err := ps.HostIdle(ctx, c, o.Host)
	if err != nil {
		return err
	}
	return f.render(IdleStopResult{Host: h.Name, StopAfterSeconds: p.StopAfterSeconds, LastActivity: p.LastActivity, StopsAt: p.StopsAt}, func(w *Out) error {
		if p.StopAfterSeconds == 0 {
			fmt.Fprintf(w, "%s: never stops for being idle\n", h.Name)
			return nil
		}
		msg := fmt.Sprintf("%s: stops itself after %s without project activity", h.Name, time.Duration(p.StopAfterSeconds)*time.Second)
		if p.StoppedBy == agentapi.IdleStopByControlPlane {
			msg = fmt.Sprintf("%s: stops after %s without project activity (its projects are stopped, then `cocalc-hosts worker` stops the host through %s's API)",
				h.Name, time.Duration(p.StopAfterSeconds)*time.Second, h.Provider)
		}
		if p.StopsAt != nil {
			msg += fmt.Sprintf(" (next at %s if nothing happens)", p.StopsAt.Local().Format("15:04:05"))
		}
		fmt.Fprintln(w, msg)
		return nil
	})
}
