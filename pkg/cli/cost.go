package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/cost"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/tui"
)

// CostOptions are the inputs of `cost`.
type CostOptions struct {
	Host  string
	Since string
}

func newCostCmd(f *Factory) *cobra.Command {
	o := &CostOptions{}
	cmd := &cobra.Command{
		Use:   "cost [HOST]",
		Short: "What hosts cost: per host, per owner and in total",
		Long: `Compute what hosts cost from their history in cloud_vm_log: compute while a
host runs (at the hourly price stored when it was launched), and its data
disk for as long as it exists, stopped or not (at the provider's disk price;
pricing.disk_gb_month.NAME overrides it). Usage is stored in cloud_vm_usage.
These are estimates from our own log, not a cloud's bill.`,
		Example: `  cocalc-hosts cost
  cocalc-hosts cost gpu1 --since 7d
  cocalc-hosts cost --since 2026-11-01 -o json`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeHosts(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Host = args[0]
			}
			return runCost(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Since, "since", "30d", "start of the window: a duration back from now (30d, 12h), a date (2026-11-01), or all")
	return cmd
}

// parseSince turns --since into the window's start (zero: all time).
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "all":
		return time.Time{}, nil
	case strings.HasSuffix(s, "d"):
		if n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64); err == nil && n >= 0 {
			return now.Add(-time.Duration(n * 24 * float64(time.Hour))), nil
		}
	default:
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			return now.Add(-d), nil
		}
		if t, err := time.Parse("2006-01-02", s); err == nil {
			return t, nil
		}
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid --since %q: use a duration such as 30d or 12h, a date such as 2026-11-01, or all", s)
}

func runCost(ctx context.Context, f *Factory, o *CostOptions) error {
	from, err := parseSince(o.Since, f.Now())
	if err != nil {
		return usageErr(err)
	}
	ops, err := f.Ops()
	if err != nil {
		return err
	}
	rep, err := ops.Cost(ctx, cost.ReportOptions{Host: o.Host, From: from})
	if err != nil {
		return err
	}
	return f.render(rep, func(w *Out) error {
		t := w.table("HOST", "OWNER", "CLOUD", "STATUS", "COMPUTE H", "DISK GB-H", "COMPUTE $", "DISK $", "TOTAL $", "NOW $/MONTH")
		for _, h := range rep.Hosts {
			status := string(h.Status)
			if h.Deleted {
				status += " (deleted)"
			}
			t.row(h.Name, h.Owner, h.Provider, status, fmt.Sprintf("%.2f", h.ComputeHours), fmt.Sprintf("%.1f", h.StorageGBHours),
				money(h.ComputeCost), money(h.StorageCost), money(h.Total), money(h.MonthlyNow))
		}
		if err := t.flush(); err != nil {
			return err
		}
		if o.Host == "" && len(rep.Owners) > 0 {
			fmt.Fprintln(w)
			t := w.table("OWNER", "HOSTS", "COMPUTE $", "DISK $", "TOTAL $")
			for _, oc := range rep.Owners {
				t.row(oc.Owner, fmt.Sprint(oc.Hosts), money(oc.ComputeCost), money(oc.StorageCost), money(oc.Total))
			}
			t.row("all", fmt.Sprint(len(rep.Hosts)), money(rep.Total.ComputeCost), money(rep.Total.StorageCost), money(rep.Total.Total))
			if err := t.flush(); err != nil {
				return err
			}
		}
		start := "the beginning"
		if !rep.From.IsZero() {
			start = rep.From.Local().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(f.IO.ErrOut, "cost in %s from %s to %s: an estimate from cloud_vm_log\n", rep.Currency, start, rep.To.Local().Format("2006-01-02 15:04"))
		return nil
	})
}

func money(f float64) string { return fmt.Sprintf("%.2f", f) }

// finishStop is finishSubmitted for `stop`, which also says what the
// stopped host still costs per month. With -o json that is the field
// stopped_cost of the one JSON document.
func finishStop(ctx context.Context, f *Factory, sub hosts.Submitted, noWait bool) error {
	sc := sub.StoppedCost
	sub, failed, err := settle(ctx, f, sub, noWait)
	if err != nil {
		return err
	}
	sub.StoppedCost = sc
	if failed != nil {
		sub.StoppedCost = nil // it did not stop
	}
	return renderSettled(f, sub, failed, func(w *Out) {
		submittedLine(w, sub, noWait)
		if sub.StoppedCost == nil {
			return
		}
		fmt.Fprintf(w, "%s: %s\n", sub.Host.Name, tui.StoppedLine(tui.StoppedCost(*sub.StoppedCost), !noWait))
	})
}

// publicAddress is the host's public DNS name when it has one, else its
// raw public IP.
func publicAddress(h model.Host) string {
	if h.Runtime.DNSName != "" {
		return h.Runtime.DNSName
	}
	return h.Runtime.PublicIP
}

// addressLine is publicAddress with the IP the name points at.
func addressLine(h model.Host) string {
	if h.Runtime.DNSName != "" && h.Runtime.PublicIP != "" {
		return h.Runtime.DNSName + " (" + h.Runtime.PublicIP + ")"
	}
	return publicAddress(h)
}
