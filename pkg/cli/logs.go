package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// LogsOptions are the inputs of `logs`.
type LogsOptions struct {
	Host   string
	Limit  int
	Follow bool
	// Boot shows the output of the host's newest bootstrap run instead.
	Boot bool
}

func newLogsCmd(f *Factory) *cobra.Command {
	o := &LogsOptions{}
	cmd := hostVerbCmd(f, &cobra.Command{
		Use:   "logs HOST",
		Short: "Show a host's action log (cloud_vm_log)",
	}, o, &o.Host, runLogs)
	cmd.Flags().IntVarP(&o.Limit, "limit", "n", 50, "show the newest N entries (0: all)")
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep printing new entries until interrupted")
	cmd.Flags().BoolVar(&o.Boot, "boot", false, "show the output of the host's newest bootstrap (or upgrade) run")
	return cmd
}

func runLogs(ctx context.Context, f *Factory, o *LogsOptions) error {
	if o.Limit < 0 {
		return usagef("--limit must be 0 or more, got %d", o.Limit)
	}
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	if o.Boot {
		return runBootLogs(ctx, f, svc, o)
	}
	h, entries, err := svc.Log(ctx, o.Host, 0, o.Limit)
	if err != nil {
		return err
	}
	if !o.Follow {
		return f.render(entries, func(w *Out) error { return logRows(w, entries, true) })
	}
	// Followed, each entry is a result of its own: a JSON line with -o json.
	print := func(es []model.LogEntry, header bool) error {
		if e := f.exporter(); e != nil {
			for _, le := range es {
				if err := e.WriteLine(f.IO.Out, le); err != nil {
					return err
				}
			}
			return nil
		}
		w := f.out()
		if err := logRows(w, es, header); err != nil {
			return err
		}
		return w.Flush()
	}
	if err := print(entries, true); err != nil {
		return err
	}
	var after int64
	if len(entries) > 0 {
		after = entries[len(entries)-1].ID
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		_, more, err := svc.Log(ctx, h.ID, after, 0)
		if err != nil {
			return err
		}
		if len(more) > 0 {
			if err := print(more, false); err != nil {
				return err
			}
			after = more[len(more)-1].ID
		}
	}
}

func logRows(w *Out, es []model.LogEntry, header bool) error {
	t := w.table()
	if header {
		t.row("TIME", "ACTION", "RESULT", "HOST STATUS", "ERROR")
	}
	for _, e := range es {
		t.row(e.TS.Local().Format("2006-01-02 15:04:05"), e.Action, e.Status, orDash(string(e.HostStatus)), orDash(e.Error))
	}
	return t.flush()
}
