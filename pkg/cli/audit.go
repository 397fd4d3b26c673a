package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// AuditOptions are the inputs of `audit`.
type AuditOptions struct {
	Account string
	After   int64
	Limit   int
}

func newAuditCmd(f *Factory) *cobra.Command {
	o := &AuditOptions{}
	as := &asFlag{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Who did what through the server (the append-only audit log)",
		Long: `Every request to a server that changes something, and every refused one,
is appended to the audit log: when, which account (and for whom, with
--as), which key, the method and path, and how it ended. Admins see every
account's entries; others their own. The database refuses to change or
delete entries.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAudit(cmd.Context(), f, as, o) },
	}
	as.add(cmd)
	cmd.Flags().StringVar(&o.Account, "for", "", "only this account's entries")
	cmd.Flags().Int64Var(&o.After, "after", 0, "only entries after this id")
	cmd.Flags().IntVar(&o.Limit, "limit", 0, "at most this many entries")
	return cmd
}

func runAudit(ctx context.Context, f *Factory, as *asFlag, o *AuditOptions) error {
	if o.Limit < 0 {
		return usagef("--limit %d: give a positive count", o.Limit)
	}
	c, err := caller(f, as)
	if err != nil {
		return err
	}
	svc, err := f.Accounts(ctx)
	if err != nil {
		return err
	}
	es, err := svc.Audit(ctx, c, store.AuditFilter{Account: o.Account, AfterID: o.After, Limit: o.Limit})
	if err != nil {
		return err
	}
	return f.render(es, func(w *Out) error {
		t := w.table("ID", "TIME", "ACCOUNT", "REQUEST", "STATUS")
		for _, e := range es {
			who := e.Account
			if e.As != "" {
				who += " as " + e.As
			}
			status := fmt.Sprint(e.Status)
			if e.Kind != "" {
				status += " " + e.Kind
			}
			t.row(fmt.Sprint(e.ID), e.At.Local().Format(time.DateTime), orDash(who), e.Method+" "+e.Path, status)
		}
		return t.flush()
	})
}
