package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
)

// ImageBuildOptions are the inputs of `image build`.
type ImageBuildOptions struct {
	Name    string
	Host    string
	Suite   string
	Include []string
	Mirror  string
	Rebuild bool
}

// ImageBuildResult is `image build -o json`'s document.
type ImageBuildResult struct {
	Name   string `json:"name"`
	Host   string `json:"host"`
	Cached bool   `json:"cached"`
}

func newImageCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Project images on hosts",
		Args:  noArgs,
	}
	cmd.AddCommand(newImageBuildCmd(f), newImageListCmd(f))
	return cmd
}

func newImageBuildCmd(f *Factory) *cobra.Command {
	o := &ImageBuildOptions{}
	cmd := &cobra.Command{
		Use:   "build NAME --host HOST",
		Short: "Make a small Debian base image on a host from Debian packages",
		Long: `Make a project image on HOST without a container registry: a Debian root
filesystem from Debian packages (mmdebstrap, or debootstrap), imported into the
host's podman as NAME.

It is not offline: the host downloads the packages from a Debian mirror
(--mirror URL, http(s) or file://; default ` + podman.DefaultMirror + `), which
is checked first and named when it cannot be reached. The root filesystem is
cached on the host by its package list, so building the same image again (or
on another host sharing the cache) needs no mirror and is fast; --rebuild
ignores the cache. A host with no route to a mirror builds from a root
filesystem put in its image cache.

On a local host the image goes into this machine's podman store, which every
local host shares: deleting the host leaves it there (remove it with
podman image rm NAME when no local host needs it).`,
		Example: `  cocalc-hosts image build cocalc-base --host dev
  cocalc-hosts image build sci --host dev --include python3,python3-numpy`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("usage: %s NAME --host HOST", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			return runImageBuild(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Host, "host", "", "host to build the image on")
	fl.StringVar(&o.Suite, "suite", "", "Debian release (default bookworm)")
	fl.StringSliceVar(&o.Include, "include", []string{"procps"}, "extra Debian packages, comma-separated")
	fl.StringVar(&o.Mirror, "mirror", "", "Debian mirror URL the host downloads packages from (default "+podman.DefaultMirror+")")
	fl.BoolVar(&o.Rebuild, "rebuild", false, "build the root filesystem again even if it is cached")
	cmd.MarkFlagRequired("host")                             //nolint:errcheck
	cmd.RegisterFlagCompletionFunc("host", completeHosts(f)) //nolint:errcheck
	return cmd
}

func runImageBuild(ctx context.Context, f *Factory, o *ImageBuildOptions) error {
	c, err := caller(f, &asFlag{})
	if err != nil {
		return err
	}
	ps, err := f.Projects(ctx)
	if err != nil {
		return err
	}
	progress := func(line string) {
		if f.jsonOutput() {
			printJSONLine(f.IO.ErrOut, map[string]string{"event": "progress", "message": line})
			return
		}
		fmt.Fprintf(f.IO.ErrOut, "  %s\n", line)
	}
	h, cached, err := ps.BuildImage(ctx, c, projects.BuildImageRequest{Host: o.Host, Name: o.Name, Suite: o.Suite,
		Include: o.Include, Mirror: o.Mirror, Rebuild: o.Rebuild}, progress)
	if err != nil {
		return err
	}
	return f.render(ImageBuildResult{Name: o.Name, Host: h.Name, Cached: cached}, func(w *Out) error {
		from := "built"
		if cached {
			from = "made from the host's cached root filesystem"
		}
		fmt.Fprintf(w, "%s: image %s %s\n", h.Name, o.Name, from)
		return nil
	})
}

// ImageListOptions are the inputs of `image list`.
type ImageListOptions struct {
	Host string
}

func newImageListCmd(f *Factory) *cobra.Command {
	o := &ImageListOptions{}
	cmd := &cobra.Command{
		Use:   "list --host HOST",
		Short: "List the suggested project images and whether HOST has them",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := caller(f, &asFlag{})
			if err != nil {
				return err
			}
			ps, err := f.Projects(cmd.Context())
			if err != nil {
				return err
			}
			_, list, err := ps.Images(cmd.Context(), c, o.Host)
			if err != nil {
				return err
			}
			return f.render(list, func(w *Out) error {
				t := w.table("IMAGE", "ON HOST", "NOTE")
				for _, im := range list {
					t.row(im.Name, map[bool]string{true: "yes", false: "no"}[im.Present], im.Note)
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVar(&o.Host, "host", "", "host to look on")
	cmd.MarkFlagRequired("host")                             //nolint:errcheck
	cmd.RegisterFlagCompletionFunc("host", completeHosts(f)) //nolint:errcheck
	return cmd
}
