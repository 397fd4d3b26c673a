package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ProjectMoveOptions are the inputs of `project move`.
type ProjectMoveOptions struct {
	Project string
	To      string
	NoWait  bool
	Cleanup bool
}

func newProjectMoveCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectMoveOptions{}
	cmd := projectCmd(f, as, &cobra.Command{
		Use:   "move PROJECT --to HOST [--no-wait] | move PROJECT --cleanup",
		Short: "Move a project to another host, with its snapshots",
		Long: `Move a project to another host. Its files and every snapshot travel with
btrfs send/receive (only what the destination lacks; a move back is
incremental) while the project keeps running; then the project is stopped
for the last small change, the move is verified and committed, and the
project runs on the destination if it ran before. Downtime is only that
cut-over. Scratch is not moved (the destination's is empty). Where either
host keeps projects in a plain directory the home is copied with tar and
snapshots are not carried.

A move is a durable job: after a crash it resumes where it stopped, and if
it fails for good it is rolled back (the source copy was never changed).
The old copy stays, read-only, on the source host for moves.keep_source
(default 24h); --cleanup deletes it now.`,
	}, o, &o.Project, runProjectMove)
	cmd.Flags().StringVar(&o.To, "to", "", "destination host")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "only queue the move")
	cmd.Flags().BoolVar(&o.Cleanup, "cleanup", false, "delete the copy the last move left on the old host now")
	return cmd
}

func runProjectMove(ctx context.Context, f *Factory, as *asFlag, o *ProjectMoveOptions) error {
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	if o.Cleanup {
		if o.To != "" {
			return usagef("--cleanup ends a finished move; give it without --to")
		}
		m, err := ps.CleanupMove(ctx, c, o.Project, func(msg string) {
			if !f.jsonOutput() {
				fmt.Fprintf(f.IO.ErrOut, "  %s\n", msg)
			}
		})
		if err != nil {
			return err
		}
		return f.render(m, func(w *Out) error {
			fmt.Fprintf(w, "%s: the old copy on %s is deleted\n", m.ProjectID, m.FromName)
			return nil
		})
	}
	if o.To == "" {
		return usagef("project move needs --to HOST (see `cocalc-hosts list`)")
	}
	sub, _, err := ps.Move(ctx, c, projects.MoveRequest{Project: o.Project, To: o.To})
	if err != nil {
		return err
	}
	if err := finishProject(ctx, f, sub, o.NoWait); err != nil {
		return err
	}
	if !o.NoWait && !f.jsonOutput() {
		if d, err := ps.Show(ctx, c, sub.Project.ID); err == nil && d.LastMove != nil {
			fmt.Fprintf(f.IO.ErrOut, "%s\n", moveSummary(*d.LastMove))
		}
	}
	return nil
}

// moveSummary says in one line what a move or clone did.
func moveSummary(m model.Move) string {
	what := fmt.Sprintf("%s from %s to %s: %s", m.Kind, m.FromName, m.ToName, m.Phase)
	if m.Method != "" {
		what += fmt.Sprintf(" (%s, %s, %s sent", m.Path, m.Method, projects.FormatBytes(m.Bytes))
		if m.Kind == model.MoveKindMove && m.FinishedAt != nil {
			what += fmt.Sprintf(", downtime %s", (time.Duration(m.DowntimeMS) * time.Millisecond).String())
		}
		what += ")"
	}
	if m.PathNote != "" {
		what += "; relayed because " + m.PathNote
	}
	if m.MethodNote != "" {
		what += "; " + m.MethodNote
	}
	if m.Phase == model.MoveDone && m.KeepUntil != nil && m.Kind == model.MoveKindMove {
		what += fmt.Sprintf("; the old copy is kept until %s", m.KeepUntil.Local().Format("2006-01-02 15:04"))
	}
	switch {
	case m.Error == "":
	case m.Phase == model.MoveDone || m.Phase == model.MoveCleaned || m.Phase == model.MoveFailed:
		what += "; " + m.Error
	default:
		what += "; " + m.Error + " (the job tries again)"
	}
	return what
}
