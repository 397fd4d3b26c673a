package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

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
	DryRun      bool
	// Address and DataDisk adopt an existing machine (--cloud ssh).
	Address  string
	DataDisk string
	// Reverse: the machine dials out to the server (--cloud ssh).
	Reverse bool
}

func newCreateCmd(f *Factory) *cobra.Command {
	o := &CreateOptions{}
	cmd := &cobra.Command{
		Use:   "create [--name NAME] --cloud PROVIDER [flags]",
		Short: "Create a host",
		Long: `Create a project host on a provider. The host is recorded as provisioning,
its create action is queued, and this command works it in-process (showing
progress) unless --no-wait is given.

Without --machine-type, the cheapest machine that meets every minimum
(--cpu, --ram, --gpu, --gpus) is chosen from the provider's catalog, or,
without --cloud, from the catalogs of every configured cloud. If the chosen
machine has no capacity and --zone/--region/--machine-type left room, the
next cheapest is tried. --dry-run shows the choice, its hourly price and a
monthly estimate including the data disk, and creates nothing.`,
		Example: `  cocalc-hosts create --cloud local --name dev
  cocalc-hosts create --cloud sim --gpu l4 --region sim-east1 --no-wait
  cocalc-hosts create --gpu l4 --ram 32 --dry-run`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	fl.BoolVar(&o.DryRun, "dry-run", false, "show the machine that would be chosen and its cost; create nothing")
	fl.StringVar(&o.Address, "address", "", "with --cloud ssh: the machine to adopt, USER@HOST[:PORT] (authorize `cocalc-hosts ssh-key` there first)")
	fl.BoolVar(&o.Reverse, "reverse", false, "with --cloud ssh: a machine the control plane cannot dial; it keeps a tunnel to the server (`cocalc-hosts join`, run on the machine)")
	fl.StringVar(&o.DataDisk, "data-disk", "", "with --cloud ssh: empty disk for the project pool, e.g. /dev/vdb (default: a loop file)")
	cmd.RegisterFlagCompletionFunc("cloud", completeProviders) //nolint:errcheck
	return cmd
}

func runCreate(ctx context.Context, f *Factory, o *CreateOptions) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	owner, err := f.owner()
	if err != nil {
		return err
	}
	if o.Name == "" {
		o.Name = generatedName()
	}
	if o.GPU != "" && o.GPUCount == 0 {
		o.GPUCount = 1
	}
	if o.Reverse && cfg.Server.URL == "" && !o.DryRun {
		return usagef("--reverse: the machine's tunnel goes to `cocalc-hosts serve`, and only that server reaches it; run `cocalc-hosts login --server URL` first")
	}
	svc, err := f.Hosts(ctx)
	if err != nil {
		return err
	}
	req := hosts.CreateRequest{
		Name: o.Name, Owner: owner, Provider: o.Provider, Region: o.Region, Zone: o.Zone,
		Spec: model.HostSpec{MachineType: o.MachineType, CPUs: o.CPUs, MemoryGiB: o.MemoryGiB, GPUModel: o.GPU,
			GPUCount: o.GPUCount, DiskGB: o.DiskGB, Image: o.Image, Spot: o.Spot,
			Address: o.Address, DataDiskDevice: o.DataDisk, Reverse: o.Reverse},
	}
	if o.DryRun {
		return runCreateDryRun(ctx, f, svc, req)
	}
	sub, err := svc.Create(ctx, req)
	if err != nil {
		return err
	}
	if sub.TunnelCredential != "" && !f.jsonOutput() {
		joinHelp(f, cfg.Server.URL, cfg.Server.CACert, sub)
	}
	return finishSubmitted(ctx, f, sub, o.NoWait)
}

// joinHelp tells the owner of a reverse-connected host what to run on the
// machine, with its credential (shown this once).
func joinHelp(f *Factory, server, caCert string, sub hosts.Submitted) {
	ca := ""
	if caCert != "" {
		ca = " --ca-cert " + caCert
	}
	w := f.IO.Out
	fmt.Fprintf(w, "Host %s dials out to %s. On the machine, as root:\n", sub.Host.Name, server)
	fmt.Fprintf(w, "  1. authorize the fleet key for root (`cocalc-hosts ssh-key` prints it)\n")
	fmt.Fprintf(w, "  2. keep this credential (shown once) in a file of mode 0600: run\n")
	fmt.Fprintf(w, "     install -m 600 -D /dev/stdin /etc/cocalc-hosts/tunnel.cred, paste it, then Ctrl-D:\n")
	fmt.Fprintf(w, "     %s\n", sub.TunnelCredential)
	fmt.Fprintf(w, "  3. run, under your init system: cocalc-hosts join --server %s%s --credential-file /etc/cocalc-hosts/tunnel.cred\n", server, ca)
}

func generatedName() string {
	b := make([]byte, 3)
	rand.Read(b) //nolint:errcheck // never fails
	return "host-" + hex.EncodeToString(b)
}
