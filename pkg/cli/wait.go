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
	sub, failed, err := settle(ctx, f, sub, noWait)
	if err != nil {
		return err
	}
	return renderSettled(f, sub, failed, func(w *Out) { submittedLine(w, sub, noWait) })
}

// settle works sub's job unless noWait, and returns the request as it
// ended; failed is the job's failure when it failed.
func settle(ctx context.Context, f *Factory, sub hosts.Submitted, noWait bool) (_ hosts.Submitted, failed, err error) {
	if sub.Note != "" && !f.jsonOutput() {
		fmt.Fprintf(f.IO.ErrOut, "%s: %s\n", sub.Host.Name, sub.Note)
	}
	if sub.Job == nil || noWait {
		return sub, nil, nil
	}
	job, err := runJob(ctx, f, *sub.Job, eventPrinter(f))
	if err != nil {
		return sub, nil, err
	}
	svc, err := f.Hosts(ctx)
	if err != nil {
		return sub, nil, err
	}
	h, err := svc.Get(ctx, sub.Host.ID)
	if err != nil {
		return sub, nil, err
	}
	sub.Host, sub.Job = h, &job
	if job.State == model.JobFailed {
		failed = errkind.Errorf(errkind.Failed, "%s of host %s failed after %d attempt(s): %s; see `cocalc-hosts logs %s`",
			job.Action, h.Name, job.Attempts, job.LastError, h.Name)
	}
	return sub, failed, nil
}

// renderSettled prints v, the result of a settled request, and returns
// failed. A failed request's result goes only to scripts: people read
// the error.
func renderSettled(f *Factory, v any, failed error, human func(w *Out)) error {
	if failed != nil {
		if e := f.exporter(); e != nil {
			e.Write(f.IO.Out, v) //nolint:errcheck // the failure is the news
		}
		return failed
	}
	return f.render(v, func(w *Out) error {
		human(w)
		return nil
	})
}

func submittedLine(w *Out, sub hosts.Submitted, noWait bool) {
	if sub.Job != nil && noWait {
		fmt.Fprintf(w, "%s: %s queued (job %s); `cocalc-hosts worker` will run it\n", sub.Host.Name, sub.Job.Action, sub.Job.ID)
		return
	}
	fmt.Fprintf(w, "%s: %s\n", sub.Host.Name, sub.Host.Status)
}

// runJob works job in this process until it is done or failed, telling
// onEvent what happens.
func runJob(ctx context.Context, f *Factory, job model.Job, onEvent func(queue.Event)) (model.Job, error) {
	jobs, err := f.Jobs()
	if err != nil {
		return job, err
	}
	return jobs.RunJob(ctx, job, onEvent)
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
