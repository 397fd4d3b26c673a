package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// CreateOptions are the inputs of `create`.
type CreateOptions struct {
	Name        string
	Provider    string
	Region      string
	Zone        string
	MachineType string
	CPUs        int
	MemoryGiB   int
	GPU         string
	GPUCount    int
	DiskGB      int
	Image       string
	Spot        bool
	NoWait      bool
}

func newCreateCmd(f *Factory, runF func(context.Context, *CreateOptions) error) *cobra.Command {
	o := &CreateOptions{}
	cmd := &cobra.Command{
		Use:   "create [--name NAME] --cloud PROVIDER [flags]",
		Short: "Create a host",
		Long: `Create a project host on a provider. The host is recorded as provisioning,
its create action is queued, and this command works it in-process (showing
progress) unless --no-wait is given.

Without --machine-type, the cheapest machine of the provider that meets
--cpu, --ram and --gpu is chosen.`,
		Example: `  cocalc-hosts create --cloud local --name dev
  cocalc-hosts create --cloud sim --gpu l4 --region sim-east1 --no-wait`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runCreate(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&o.Name, "name", "n", "", "host name (default: a generated one)")
	fl.StringVarP(&o.Provider, "cloud", "c", "", "provider to create the host on (see `cocalc-hosts providers`)")
	fl.StringVar(&o.Region, "region", "", "region (default: the cheapest that fits)")
	fl.StringVar(&o.Zone, "zone", "", "zone, on providers with zones")
	fl.StringVar(&o.MachineType, "machine-type", "", "exact machine type (advanced)")
	fl.IntVar(&o.CPUs, "cpu", 0, "minimum vCPUs")
	fl.IntVar(&o.MemoryGiB, "ram", 0, "minimum memory in GiB")
	fl.StringVar(&o.GPU, "gpu", "", "GPU model, e.g. l4 or a100")
	fl.IntVar(&o.GPUCount, "gpus", 0, "minimum number of GPUs (default 1 with --gpu)")
	fl.IntVar(&o.DiskGB, "disk", 0, "data disk size in GB (default: provider's)")
	fl.StringVar(&o.Image, "image", "", "VM image, on providers with custom images")
	fl.BoolVar(&o.Spot, "spot", false, "use a spot (preemptible) instance")
	fl.BoolVar(&o.NoWait, "no-wait", false, "only queue the create; a `worker` runs it")
	cmd.MarkFlagRequired("cloud")                              //nolint:errcheck
	cmd.RegisterFlagCompletionFunc("cloud", completeProviders) //nolint:errcheck
	return cmd
}

func runCreate(ctx context.Context, f *Factory, o *CreateOptions) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	if o.Name == "" {
		o.Name = generatedName()
	}
	if o.GPU != "" && o.GPUCount == 0 {
		o.GPUCount = 1
	}
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	sub, err := svc.Create(ctx, hosts.CreateRequest{
		Name: o.Name, Owner: cfg.String("account"), Provider: o.Provider, Region: o.Region, Zone: o.Zone,
		Spec: model.HostSpec{MachineType: o.MachineType, CPUs: o.CPUs, MemoryGiB: o.MemoryGiB, GPUModel: o.GPU,
			GPUCount: o.GPUCount, DiskGB: o.DiskGB, Image: o.Image, Spot: o.Spot},
	})
	if err != nil {
		return err
	}
	return finishSubmitted(ctx, f, sub, o.NoWait)
}

func generatedName() string {
	b := make([]byte, 3)
	rand.Read(b) //nolint:errcheck // never fails
	return "host-" + hex.EncodeToString(b)
}
