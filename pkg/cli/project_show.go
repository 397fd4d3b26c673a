package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ProjectShowOptions are the inputs of `project show`.
type ProjectShowOptions struct {
	Project string
}

func newProjectShowCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectShowOptions{}
	return projectCmd(f, as, &cobra.Command{
		Use:   "show PROJECT",
		Short: "Show a project, with what its host reports",
	}, o, &o.Project, runProjectShow)
}

func runProjectShow(ctx context.Context, f *Factory, as *asFlag, o *ProjectShowOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	d, err := ps.Show(ctx, c, o.Project)
	if err != nil {
		return err
	}
	return f.render(d, func(w *Out) error {
		kv := func(k, v string) { fmt.Fprintf(w, "%-15s %s\n", k+":", v) }
		now := f.Now()
		kv("id", d.ID)
		kv("title", orDash(d.Title))
		kv("owner", d.Owner)
		kv("host", d.HostName)
		kv("state", string(d.State))
		kv("image", d.Image)
		kv("memory", projects.FormatBytes(d.Limits.MemoryBytes))
		kv("cpus", strconv.FormatFloat(d.Limits.CPUs, 'f', -1, 64))
		kv("processes", strconv.Itoa(d.Limits.PidsLimit))
		kv("disk quota", projects.FormatBytes(d.Limits.DiskBytes)+" (home and snapshots)")
		if d.IdleTimeoutSeconds > 0 {
			kv("idle timeout", (time.Duration(d.IdleTimeoutSeconds) * time.Second).String())
		} else {
			kv("idle timeout", "never")
		}
		if d.LastActivity != nil {
			kv("last activity", d.LastActivity.Local().Format("2006-01-02 15:04:05")+" ("+ago(now, *d.LastActivity)+")")
		}
		kv("created", d.CreatedAt.Local().Format("2006-01-02 15:04:05")+" ("+ago(now, d.CreatedAt)+")")
		kv("last action", orDash(d.LastAction))
		kv("last error", orDash(d.LastError))
		if b := d.Backups.LastBackup; b != nil {
			kv("last backup", fmt.Sprintf("%s (%s), %d backup(s)", b.Local().Format("2006-01-02 15:04:05"), ago(now, *b), d.Backups.Count))
		} else {
			kv("last backup", "never")
		}
		for _, sc := range d.Backups.StaleOn {
			kv("stale copy", fmt.Sprintf("on host %s since %s (restored elsewhere)", sc.HostID, ago(now, sc.MarkedAt)))
		}
		if d.PendingJob != nil {
			kv("pending", fmt.Sprintf("%s (%s, attempt %d)", d.PendingJob.Action, d.PendingJob.State, d.PendingJob.Attempts))
		}
		if d.LastMove != nil {
			kv("last move", moveSummary(*d.LastMove))
		}
		if d.AgentError != "" {
			kv("on host", "unknown: "+d.AgentError)
		}
		if a := d.Agent; a != nil {
			onHost := a.State
			if a.StoppedReason != "" && a.State != "running" {
				onHost += " (" + a.StoppedReason + ")"
			}
			kv("on host", onHost)
			if a.State == "running" {
				kv("cpu time", fmt.Sprintf("%.1fs", a.CPUSeconds))
				kv("memory in use", projects.FormatBytes(a.MemoryBytes))
				kv("oom kills", strconv.FormatInt(a.OOMKills, 10))
				kv("sessions", strconv.Itoa(a.Sessions))
				if a.GPUs {
					kv("gpus", "all of the host's (CDI)")
				}
			}
			if a.Disk != nil {
				used := projects.FormatBytes(a.Disk.UsedBytes)
				if a.Disk.QuotaBytes > 0 {
					used += " of " + projects.FormatBytes(a.Disk.QuotaBytes)
				}
				if a.Disk.Note != "" {
					used += " (" + a.Disk.Note + ")"
				}
				kv("disk used", fmt.Sprintf("%s, %d snapshot(s)", used, a.Disk.Snapshots))
				kv("scratch used", projects.FormatBytes(a.Disk.ScratchBytes))
			}
		}
		return nil
	})
}
