package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// BootLog is `logs --boot`'s JSON: the newest bootstrap run and its lines.
type BootLog struct {
	Run   *store.BootRun   `json:"run"`
	Lines []store.BootLine `json:"lines"`
}

// runBootLogs prints the output of h's newest bootstrap run.
func runBootLogs(ctx context.Context, f *Factory, st store.Store, h model.Host, o *LogsOptions) error {
	runs, err := st.ListBootRuns(ctx, h.ID, 1)
	if err != nil {
		return err
	}
	out := BootLog{Lines: []store.BootLine{}}
	if len(runs) > 0 {
		out.Run = &runs[0]
		lines, err := st.ListBootLog(ctx, store.BootLogFilter{HostID: h.ID, RunID: runs[0].ID, Limit: o.Limit})
		if err != nil {
			return err
		}
		if lines != nil {
			out.Lines = lines
		}
	}
	if f.jsonOutput() && !o.Follow {
		return printJSON(f.IO.Out, out)
	}
	if out.Run == nil {
		if !f.jsonOutput() {
			fmt.Fprintf(f.IO.ErrOut, "%s has no boot log: it was never bootstrapped over SSH\n", h.Name)
		}
		if !o.Follow {
			return nil
		}
	} else if !f.jsonOutput() {
		r := out.Run
		end := "still running"
		if r.FinishedAt != nil {
			end = fmt.Sprintf("%s at %s", r.Result, r.FinishedAt.Local().Format("15:04:05"))
		}
		fmt.Fprintf(f.IO.ErrOut, "%s run %s of %s, started %s, %s\n", r.Kind, shortID(r.ID), h.Name, r.StartedAt.Local().Format("2006-01-02 15:04:05"), end)
	}
	print := func(lines []store.BootLine) {
		for _, l := range lines {
			if f.jsonOutput() {
				printJSONLine(f.IO.Out, l)
				continue
			}
			fmt.Fprintf(f.IO.Out, "%s  %s\n", l.TS.Local().Format("15:04:05"), l.Line)
		}
	}
	print(out.Lines)
	if !o.Follow {
		return nil
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
		more, err := st.ListBootLog(ctx, store.BootLogFilter{HostID: h.ID, AfterID: after})
		if err != nil {
			return err
		}
		if len(more) > 0 {
			print(more)
			after = more[len(more)-1].ID
		}
	}
}
