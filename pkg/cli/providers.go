package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// ProviderInfo is one row of `providers`.
type ProviderInfo = provider.Info

func newProvidersCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "providers",
		Short: "List providers and their capabilities",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ops, err := f.Ops()
			if err != nil {
				return err
			}
			out, err := ops.Providers(cmd.Context())
			if err != nil {
				return err
			}
			return f.render(out, func(w *Out) error {
				t := w.table("NAME", "CONFIGURED", "STOP", "DISK RESIZE", "KEEP DISK", "GPU", "ZONES", "SPOT", "CUSTOM IMAGE", "DESCRIPTION")
				for _, p := range out {
					c := p.Capabilities
					resize := yesNo(c.DiskResize)
					if c.DiskResize && c.DiskResizeRequiresStop {
						resize = "when stopped"
					}
					configured := yesNo(p.Configured)
					if !p.Configured && !c.CheckCredentials {
						// local, sim, ssh: usable as they are.
						configured = "not needed"
					}
					t.row(p.Name, configured, string(c.Stop), resize, yesNo(c.PersistentDisk), yesNo(c.GPU), yesNo(c.Zones), yesNo(c.Spot),
						yesNo(c.CustomImage), p.Description)
				}
				return t.flush()
			})
		},
	}
	cmd.AddCommand(newProvidersAddCmd(f))
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func completeProviders(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	var names []string
	for _, r := range provider.Registered() {
		names = append(names, r.Name+"\t"+r.Description)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeHosts completes host names from the state database.
func completeHosts(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		svc, err := f.Hosts(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		hs, err := svc.List(cmd.Context(), store.HostFilter{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, h := range hs {
			if strings.HasPrefix(h.Name, prefix) {
				out = append(out, fmt.Sprintf("%s\t%s %s", h.Name, h.Provider, h.Status))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
