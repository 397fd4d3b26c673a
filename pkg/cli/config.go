package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
)

func newConfigCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show and change settings",
		Long: `Settings come from, in order of precedence: command-line flags, the config
file (` + "`cocalc-hosts config path`" + `), and defaults. Environment variables are not read.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "path",
		Short: "Print the config file's path",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := f.ConfigFile()
			if err != nil {
				return err
			}
			return f.render(map[string]string{"path": path}, func(w *Out) error {
				fmt.Fprintln(w, path)
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List effective settings and where each comes from",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			all := cfg.All()
			return f.render(all, func(w *Out) error {
				t := w.table("KEY", "VALUE", "SOURCE", "DESCRIPTION")
				for _, s := range all {
					t.row(s.Key, fmt.Sprint(s.Value), s.Source, s.Description)
				}
				return t.flush()
			})
		},
	}, &cobra.Command{
		Use:   "get KEY",
		Short: "Print one setting",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			v, ok := cfg.Get(args[0])
			if !ok {
				return usagef("unknown config key %q; see `cocalc-hosts config list`", args[0])
			}
			return f.render(map[string]any{"key": args[0], "value": v}, func(w *Out) error {
				fmt.Fprintln(w, v)
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Write one setting to the config file",
		Example: `  cocalc-hosts config set db postgres://hosts@db.internal:5432/cocalc
  cocalc-hosts config set providers.sim.latency 200ms`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := f.ConfigFile()
			if err != nil {
				return err
			}
			if err := config.Set(path, args[0], args[1]); err != nil {
				return usageErr(err)
			}
			if !f.jsonOutput() {
				fmt.Fprintf(f.IO.ErrOut, "set %s in %s\n", args[0], path)
			}
			return nil
		},
	})
	return cmd
}
