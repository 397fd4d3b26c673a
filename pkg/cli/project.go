package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// asFlag is the account an operator acts for (--as).
type asFlag struct{ as string }

// addAsFlag adds --as to a parent command and its subcommands.
func (a *asFlag) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&a.as, "as", "", "act for this account (admins only; the project is owned by it and its rights apply)")
}

const asHelp = `
Who you are comes from the config key "account" (or --account, default your
login name). In direct-to-database mode an admin may act for another
account with --as ACCOUNT: projects it creates are owned by ACCOUNT, and
ACCOUNT's rights (not the admin's) decide what is allowed. Through a server
(server.url) the API key you logged in with says who you are, and --as works
for admins alike.`

func newProjectCmd(f *Factory) *cobra.Command {
	as := &asFlag{}
	cmd := &cobra.Command{
		Use:   "project",
		Short: "Manage projects on hosts",
		Long: `A project is a home directory (a btrfs subvolume with a quota and
snapshots) plus a container on a host. Projects are created on a host you own,
collaborate on, or that is in the shared pool, and only when the host has room
for them. Their actions go through the durable queue, one at a time per
project. PROJECT is a project's id, the beginning of it, or its title.` + asHelp,
		Args: noArgs,
	}
	as.add(cmd)
	for _, c := range []*cobra.Command{
		newProjectCreateCmd(f, as), newProjectListCmd(f, as), newProjectShowCmd(f, as),
		newProjectLifecycleCmd(f, as, "start"), newProjectLifecycleCmd(f, as, "stop"),
		newProjectLifecycleCmd(f, as, "restart"), newProjectDeleteCmd(f, as),
		newProjectExecCmd(f, as), newProjectShellCmd(f, as),
		newProjectSnapshotCmd(f, as), newProjectSnapshotsCmd(f, as), newProjectRestoreCmd(f, as),
		newProjectMoveCmd(f, as), newProjectCloneCmd(f, as),
		newProjectBackupCmd(f, as), newProjectBackupsCmd(f, as),
		newProjectCollaboratorsCmd(f, as), newProjectOpenCmd(f, as),
		newProjectSSHCmd(f, as), newProjectSSHConfigCmd(f, as), newProjectSSHCertCmd(f, as),
	} {
		cmd.AddCommand(c)
	}
	return cmd
}

// caller is who runs the command.
func caller(f *Factory, as *asFlag) (projects.Caller, error) {
	cfg, err := f.Config()
	if err != nil {
		return projects.Caller{}, err
	}
	return projects.Caller{Account: cfg.Account, As: as.as}, nil
}

// oneProject checks for exactly one PROJECT argument: a project's id, the
// beginning of it or its title, which resolveProject turns into its id.
func oneProject(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s needs exactly one project (its id, the beginning of it, or its title); see `cocalc-hosts project list`", cmd.CommandPath())
	}
	return nil
}

// resolveProject replaces *ref, what the user typed for a project, by the
// project's id before a command uses it: in a request path (through a
// server, so that nothing but an id is sent there), in file names and SSH
// host aliases. A whole id is taken as it is.
func resolveProject(ctx context.Context, f *Factory, as *asFlag, ref *string) error {
	if model.CanonicalUUID(*ref) {
		return nil
	}
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	id, err := ps.Resolve(ctx, c, *ref)
	if err != nil {
		return err
	}
	*ref = id
	return nil
}

// finishProject prints the outcome of a queued project action. Unless
// noWait, it works the job in this process first (or waits for the worker
// that has it), with progress on stderr.
func finishProject(ctx context.Context, f *Factory, sub projects.Submitted, noWait bool) error {
	for _, w := range sub.Warnings {
		fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", w)
	}
	if sub.Note != "" && !f.jsonOutput() {
		fmt.Fprintf(f.IO.ErrOut, "%s: %s\n", sub.Project.ID, sub.Note)
	}
	if sub.Job != nil && !noWait {
		job, err := runJob(ctx, f, *sub.Job, eventPrinter(f))
		if err != nil {
			return err
		}
		sub.Job = &job
		// As the caller itself: an admin who acted --as another account
		// may read the project too.
		c, ps, err := withProjects(ctx, f, &asFlag{})
		if err != nil {
			return err
		}
		p, err := ps.Get(ctx, c, sub.Project.ID)
		switch {
		case errkind.Is(err, errkind.NotFound):
			// Purged, or a failed create that was undone.
			sub.Project.State = model.ProjectDeleted
		case err != nil:
			return err
		default:
			sub.Project = p
		}
		if job.State == model.JobFailed {
			what := strings.TrimPrefix(string(job.Action), "project.")
			undone := ""
			if job.Action == model.ActionProjectCreate && sub.Project.State == model.ProjectDeleted {
				undone = "; nothing of it was left behind"
			}
			return renderSettled(f, sub, errkind.Errorf(errkind.Failed, "%s of project %s failed after %d attempt(s): %s%s",
				what, sub.Project.ID, job.Attempts, job.LastError, undone), nil)
		}
	}
	return f.render(sub, func(w *Out) error {
		if sub.Job != nil && noWait {
			fmt.Fprintf(w, "%s: %s queued (job %s); `cocalc-hosts worker` will run it\n", sub.Project.ID, sub.Job.Action, sub.Job.ID)
			return nil
		}
		fmt.Fprintf(w, "%s: %s\n", sub.Project.ID, sub.Project.State)
		return nil
	})
}

// completeProjects completes project ids with their titles.
func completeProjects(f *Factory, as *asFlag) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, ps, err := withProjects(cmd.Context(), f, as)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := ps.List(cmd.Context(), c, projects.ListRequest{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, p := range list {
			if strings.HasPrefix(p.ID, prefix) {
				out = append(out, fmt.Sprintf("%s\t%s %s", p.ID, orDash(p.Title), p.State))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
