package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ProjectCreateOptions are the inputs of `project create`.
type ProjectCreateOptions struct {
	Host        string
	Title       string
	Image       string
	Memory      string
	CPUs        float64
	Pids        int
	Disk        string
	IdleTimeout time.Duration
	Start       bool
	NoWait      bool
}

func newProjectCreateCmd(f *Factory, as *asFlag) *cobra.Command {
	o := &ProjectCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create --host HOST [--image IMAGE] [--memory 2G] [--cpus 1.5] [--disk 10G]",
		Short: "Create a project on a host",
		Long: `Create a project on HOST: its home (with a disk quota that covers its
snapshots too) and scratch space. The host must be one you own, collaborate on,
or in the shared pool, it must be running, and it must have room: the memory
limits of its running projects and the disk quotas of all its projects plus
this one must fit.

Without --image the project uses ` + projects.DefaultImage + `, which
` + "`cocalc-hosts image build " + projects.DefaultImage + " --host HOST`" + ` makes on a host
without a registry. Other images work too (a warning says that unknown
images may lack what projects need); images not on the host are pulled.

Sizes are binary: 512M, 2G (GiB), 1T.`,
		Example: `  cocalc-hosts project create --host dev --memory 2G --cpus 1.5 --disk 10G --start
  cocalc-hosts project create --host gpu1 --image docker.io/library/python:3.12-bookworm -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("idle-timeout") {
				o.IdleTimeout = -1
			}
			return runProjectCreate(cmd.Context(), f, as, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Host, "host", "", "host to create the project on (name or id)")
	fl.StringVar(&o.Title, "title", "", "a title to recognize the project by")
	fl.StringVar(&o.Image, "image", "", "container image (default "+projects.DefaultImage+")")
	fl.StringVar(&o.Memory, "memory", "", "memory limit, e.g. 2G (default 1G)")
	fl.Float64Var(&o.CPUs, "cpus", 0, "CPU limit in cores, e.g. 1.5 (default 1)")
	fl.IntVar(&o.Pids, "pids", 0, "process limit (default 1024)")
	fl.StringVar(&o.Disk, "disk", "", "disk quota for home and snapshots, e.g. 10G (default 2G)")
	fl.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "stop the project after this long without activity; 0 never (default 1h)")
	fl.BoolVar(&o.Start, "start", false, "start the project once it is made")
	fl.BoolVar(&o.NoWait, "no-wait", false, "only queue the create; a `worker` runs it")
	cmd.MarkFlagRequired("host")                             //nolint:errcheck
	cmd.RegisterFlagCompletionFunc("host", completeHosts(f)) //nolint:errcheck
	return cmd
}

func runProjectCreate(ctx context.Context, f *Factory, as *asFlag, o *ProjectCreateOptions) error {
	req := projects.CreateRequest{Host: o.Host, Title: o.Title, Image: o.Image, Start: o.Start,
		Limits: model.ProjectLimits{CPUs: o.CPUs, PidsLimit: o.Pids}}
	var err error
	if o.Memory != "" {
		if req.Limits.MemoryBytes, err = projects.ParseBytes(o.Memory); err != nil {
			return usagef("--memory: %v", err)
		}
		if req.Limits.MemoryBytes == 0 {
			return usagef("--memory must be more than 0")
		}
	}
	if o.Disk != "" {
		if req.Limits.DiskBytes, err = projects.ParseBytes(o.Disk); err != nil {
			return usagef("--disk: %v", err)
		}
		if req.Limits.DiskBytes == 0 {
			return usagef("--disk must be more than 0")
		}
	}
	if o.CPUs < 0 || o.Pids < 0 {
		return usagef("--cpus and --pids must not be negative")
	}
	if o.IdleTimeout >= 0 {
		d := o.IdleTimeout
		req.IdleTimeout = &d
	} else if o.IdleTimeout != -1 {
		return usagef("--idle-timeout must not be negative")
	}
	c, ps, err := withProjects(ctx, f, as)
	if err != nil {
		return err
	}
	sub, err := ps.Create(ctx, c, req)
	if err != nil {
		return err
	}
	return finishProject(ctx, f, sub, o.NoWait)
}
