package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// ProvidersAddOptions are the inputs of `providers add`.
type ProvidersAddOptions struct {
	Name        string
	Credentials string
	Options     []string
	// CheckTimeout bounds the credential check.
	CheckTimeout time.Duration
}

// ProviderAdded is `providers add`'s JSON.
type ProviderAdded struct {
	Provider    string            `json:"provider"`
	Credentials string            `json:"credentials,omitempty"`
	Options     map[string]string `json:"options"`
	// Checked says whether one API call proved the credentials work.
	Checked bool   `json:"checked"`
	Config  string `json:"config"`
}

func newProvidersAddCmd(f *Factory) *cobra.Command {
	o := &ProvidersAddOptions{CheckTimeout: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "add NAME [--credentials FILE] [--option KEY=VALUE ...]",
		Short: "Configure a provider: its credentials file and options",
		Long: `Configure provider NAME. --credentials names a file that only you can read
(mode 0600; a looser file is refused); the config file stores only its path
(providers.NAME.credentials), never the secret. The options are checked by
opening the provider, and the credentials with one cheap, read-only API
call; nothing is saved unless both succeed.`,
		Example: `  cocalc-hosts providers add gcp --credentials ~/.config/gcp-sa.json --option project=my-project
  cocalc-hosts providers add sim --option latency=50ms`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s needs exactly one provider name; see `cocalc-hosts providers`", cmd.CommandPath())
			}
			return nil
		},
		ValidArgsFunction: completeProviders,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			return runProvidersAdd(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Credentials, "credentials", "", "a 0600 file with the provider's credentials")
	cmd.Flags().StringArrayVar(&o.Options, "option", nil, "provider option KEY=VALUE (repeatable; see the provider's documentation)")
	return cmd
}

func runProvidersAdd(ctx context.Context, f *Factory, o *ProvidersAddOptions) error {
	if _, err := provider.Lookup(o.Name); err != nil {
		return usageErr(err)
	}
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	newOpts := map[string]string{}
	for _, kv := range o.Options {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok || k == "":
			return usagef("invalid --option %q: use KEY=VALUE", kv)
		case k == "credentials":
			return usagef("pass the credentials file with --credentials FILE, not --option")
		case strings.ContainsAny(k, ". "):
			return usagef("invalid option name %q: use letters, digits and underscores", k)
		}
		newOpts[k] = v
	}
	// The provider is checked with what the config will hold afterwards.
	opts := cfg.ProviderOptions(o.Name)
	creds := opts["credentials"]
	delete(opts, "credentials")
	for k, v := range newOpts {
		opts[k] = v
	}
	if o.Credentials != "" {
		abs, err := filepath.Abs(o.Credentials)
		if err != nil {
			return usageErr(err)
		}
		if err := secrets.CheckMode(abs); err != nil {
			return usageErr(err)
		}
		creds = abs
	}
	p, err := openProviderWith(ctx, f, o.Name, opts, creds)
	if err != nil {
		return err
	}
	defer func() {
		if c, ok := p.(provider.Closer); ok {
			c.Close()
		}
	}()
	res := ProviderAdded{Provider: o.Name, Credentials: creds, Options: newOpts, Config: cfg.File}
	if checker, ok := p.(provider.CredentialChecker); ok {
		if creds == "" {
			return usagef("provider %s needs credentials: pass --credentials FILE (a file of mode 0600)", o.Name)
		}
		cctx, cancel := context.WithTimeout(ctx, o.CheckTimeout)
		err := checker.CheckCredentials(cctx)
		cancel()
		if err != nil {
			err = fmt.Errorf("the credentials in %s do not work for %s: %w; nothing was saved", creds, o.Name, err)
			if errkind.Of(err) == errkind.Auth {
				return usageErr(err)
			}
			return err
		}
		res.Checked = true
	}
	save := map[string]string{}
	for k, v := range newOpts {
		save[k] = v
	}
	if o.Credentials != "" {
		save["credentials"] = creds
	}
	if err := config.AddProvider(cfg.File, o.Name, save); err != nil {
		return err
	}
	return f.render(res, func(w *Out) error {
		keys := make([]string, 0, len(newOpts))
		for k := range newOpts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		what := []string{}
		if o.Credentials != "" {
			check := "not checked: the provider has no credential check"
			if res.Checked {
				check = "checked with one API call"
			}
			what = append(what, fmt.Sprintf("credentials %s (%s)", creds, check))
		}
		if len(keys) > 0 {
			what = append(what, "options "+strings.Join(keys, ", "))
		}
		if len(what) == 0 {
			what = append(what, "no options")
		}
		fmt.Fprintf(w, "%s configured: %s; saved in %s\n", o.Name, strings.Join(what, "; "), cfg.File)
		return nil
	})
}

// openProviderWith opens a fresh instance of provider name with the given
// options and credentials file, the way the application would after saving.
func openProviderWith(ctx context.Context, f *Factory, name string, opts map[string]string, creds string) (provider.Provider, error) {
	set, err := f.Providers(ctx)
	if err != nil {
		return nil, err
	}
	p, err := set.OpenWith(ctx, name, opts, creds)
	if errkind.Is(err, errkind.Invalid) {
		return nil, usagef("%v; nothing was saved", err)
	}
	return p, err
}
