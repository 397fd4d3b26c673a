package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// BootLog is `logs --boot`'s JSON: the newest bootstrap run and its lines.
type BootLog = hosts.BootLog

// runBootLogs prints the output of host o.Host's newest bootstrap run.
func runBootLogs(ctx context.Context, f *Factory, svc HostService, o *LogsOptions) error {
	h, out, err := svc.BootLog(ctx, o.Host, 0, o.Limit)
	if err != nil {
		return err
	}
	lines := func(w *Out, ls []store.BootLine) error {
		for _, l := range ls {
			fmt.Fprintf(w, "%s  %s\n", l.TS.Local().Format("15:04:05"), l.Line)
		}
		return nil
	}
	if !o.Follow {
		bootRunHeader(f, h, out.Run)
		return f.render(out, func(w *Out) error { return lines(w, out.Lines) })
	}
	bootRunHeader(f, h, out.Run)
	// Followed, each line is a result of its own: a JSON line with -o json.
	print := func(ls []store.BootLine) error {
		for _, l := range ls {
			if err := f.renderLine(l, func(w *Out) error { return lines(w, []store.BootLine{l}) }); err != nil {
				return err
			}
		}
		return nil
	}
	if err := print(out.Lines); err != nil {
		return err
	}
	var after int64
	if n := len(out.Lines); n > 0 {
		after = out.Lines[n-1].ID
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		_, next, err := svc.BootLog(ctx, h.ID, after, 0)
		if err != nil {
			return err
		}
		if more := next.Lines; len(more) > 0 {
			if err := print(more); err != nil {
				return err
			}
			after = more[len(more)-1].ID
		}
	}
}

// bootRunHeader says on stderr which run the lines are from (or that there
// is none), for people.
func bootRunHeader(f *Factory, h model.Host, r *store.BootRun) {
	if f.jsonOutput() {
		return
	}
	if r == nil {
		fmt.Fprintf(f.IO.ErrOut, "%s has no boot log: it was never bootstrapped over SSH\n", h.Name)
		return
	}
	end := "still running"
	if r.FinishedAt != nil {
		end = fmt.Sprintf("%s at %s", r.Result, r.FinishedAt.Local().Format("15:04:05"))
	}
	fmt.Fprintf(f.IO.ErrOut, "%s run %s of %s, started %s, %s\n", r.Kind, shortID(r.ID), h.Name, r.StartedAt.Local().Format("2006-01-02 15:04:05"), end)
}
