package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/reconcile"
)

// ReconcileOptions are the inputs of `reconcile`.
type ReconcileOptions struct {
	DryRun        bool
	DeleteOrphans bool
}

func newReconcileCmd(f *Factory) *cobra.Command {
	o := &ReconcileOptions{}
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Compare the database with what the providers really run",
		Long: `List every configured provider's instances that carry this deployment's
label and compare them with the database. A host whose VM is gone is marked
deprovisioned only after two consecutive passes miss it; a failed API call
never changes a host; hosts with pending work are skipped. VMs with our
label but no host are reported as orphans, and deleted with --delete-orphans.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := reconcileOnce(cmd.Context(), f, *o)
			if err != nil {
				return err
			}
			return f.render(rep, func(w *Out) error {
				printReconcileReport(w, rep, o.DryRun)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "report what would change; change nothing")
	cmd.Flags().BoolVar(&o.DeleteOrphans, "delete-orphans", false, "delete VMs with our label that have no host")
	return cmd
}

func reconcileOnce(ctx context.Context, f *Factory, o ReconcileOptions) (reconcile.Report, error) {
	ops, err := f.Ops()
	if err != nil {
		return reconcile.Report{}, err
	}
	return ops.Reconcile(ctx, reconcile.Pass{DryRun: o.DryRun, DeleteOrphans: o.DeleteOrphans})
}

func printReconcileReport(w *Out, rep reconcile.Report, dryRun bool) {
	prefix := ""
	if dryRun {
		prefix = "(dry run) "
	}
	for _, p := range rep.Providers {
		if p.Error != "" {
			fmt.Fprintf(w, "%s%s: not reconciled: %s\n", prefix, p.Provider, p.Error)
			continue
		}
		fmt.Fprintf(w, "%s%s: %d instances, %d hosts checked, %d skipped with pending work\n",
			prefix, p.Provider, p.Instances, p.HostsChecked, p.SkippedPending)
		for _, u := range p.Updated {
			fmt.Fprintf(w, "  %s: %s -> %s\n", u.Name, u.From, u.To)
		}
		for _, m := range p.Missing {
			what := fmt.Sprintf("missing (strike %d)", m.Strikes)
			if m.Marked {
				what = "missing: marked deprovisioned"
			}
			fmt.Fprintf(w, "  %s: %s\n", m.Name, what)
		}
		for _, o := range p.Orphans {
			state := "orphan"
			switch {
			case o.Deleted:
				state = "orphan: deleted"
			case o.Error != "":
				state = "orphan: delete failed: " + o.Error
			}
			fmt.Fprintf(w, "  %s (%s): %s\n", o.Name, strings.TrimSpace(o.InstanceID), state)
		}
	}
}
