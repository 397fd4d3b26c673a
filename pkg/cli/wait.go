package cli

import (
	"context"
	"fmt"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
)

// finishSubmitted prints the outcome of a host request. Unless noWait, it
// works the job in this process (or waits for the worker that has it),
// rendering progress on stderr: lines on a terminal, JSON lines with
// --output json.
func finishSubmitted(ctx context.Context, f *Factory, sub hosts.Submitted, noWait bool) error {
	if sub.Note != "" && !f.jsonOutput() {
		fmt.Fprintf(f.IO.ErrOut, "%s: %s\n", sub.Host.Name, sub.Note)
	}
	if sub.Job != nil && !noWait {
		job, err := runJob(ctx, f, *sub.Job, eventPrinter(f))
		if err != nil {
			return err
		}
		st, err := f.Store(ctx)
		if err != nil {
			return err
		}
		h, err := st.GetHost(ctx, sub.Host.ID)
		if err != nil {
			return err
		}
		sub.Host, sub.Job = h, &job
		if job.State == model.JobFailed {
			if f.jsonOutput() {
				printJSON(f.IO.Out, sub) //nolint:errcheck
			}
			return errkind.Errorf(errkind.Failed, "%s of host %s failed after %d attempt(s): %s; see `cocalc-hosts logs %s`",
				job.Action, h.Name, job.Attempts, job.LastError, h.Name)
		}
	}
	if f.jsonOutput() {
		return printJSON(f.IO.Out, sub)
	}
	if sub.Job != nil && noWait {
		fmt.Fprintf(f.IO.Out, "%s: %s queued (job %s); `cocalc-hosts worker` will run it\n", sub.Host.Name, sub.Job.Action, sub.Job.ID)
		return nil
	}
	fmt.Fprintf(f.IO.Out, "%s: %s\n", sub.Host.Name, sub.Host.Status)
	return nil
}

// runJob works job in this process until it is done or failed, telling
// onEvent what happens.
func runJob(ctx context.Context, f *Factory, job model.Job, onEvent func(queue.Event)) (model.Job, error) {
	st, err := f.Store(ctx)
	if err != nil {
		return job, err
	}
	h, err := f.Handler(ctx)
	if err != nil {
		return job, err
	}
	w := queue.NewWorker(st, h)
	if cfg, err := f.Config(); err == nil {
		if d, err := cfg.Duration("worker.lease"); err == nil && d > 0 {
			w.Lease = d
		}
	}
	w.OnEvent = onEvent
	return w.Wait(ctx, job.ID)
}

// eventPrinter renders queue events on stderr.
func eventPrinter(f *Factory) func(queue.Event) {
	return func(e queue.Event) {
		if f.jsonOutput() {
			printJSONLine(f.IO.ErrOut, e)
			return
		}
		switch e.Kind {
		case queue.EventProgress:
			if e.Message != "" {
				fmt.Fprintf(f.IO.ErrOut, "  %s\n", e.Message)
			}
		case queue.EventRetry:
			fmt.Fprintf(f.IO.ErrOut, "  attempt %d failed (%s); retrying at %s\n", e.Attempt, e.Err, e.Retry.Local().Format("15:04:05"))
		case queue.EventFailed:
			fmt.Fprintf(f.IO.ErrOut, "  %s failed: %s\n", e.Action, e.Err)
		case queue.EventLost:
			fmt.Fprintf(f.IO.ErrOut, "  lost the lease on job %s; another worker took it over\n", e.JobID)
		}
	}
}
