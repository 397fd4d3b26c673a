package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/projects"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// BackupConfigOptions are the inputs of `backup config`.
type BackupConfigOptions struct {
	Repository  string
	Credentials string
}

func newBackupCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Where projects are backed up",
		Long: `Projects are backed up with restic to one repository location: a path (on
each host), a REST server (rest:http(s)://HOST:PORT/PATH, such as
` + "`rclone serve restic`" + `) or S3-compatible object storage
(s3:http(s)://HOST:PORT/BUCKET[/PATH]). Each project gets a repository of its
own under it, with its own password, which ` + "`project delete --purge`" + ` destroys.

Hosts get a project's configuration only when they back it up or restore it,
keep it in a 0600 file for backup.config_ttl, and get it again when it
expired or the repository refused it, so rotating credentials is setting
them again with ` + "`backup config`" + `.`,
		Args: noArgs,
	}
	cmd.AddCommand(newBackupConfigCmd(f))
	return cmd
}

func newBackupConfigCmd(f *Factory) *cobra.Command {
	o := &BackupConfigOptions{}
	cmd := &cobra.Command{
		Use:   "config [--repository PATH|URL [--credentials FILE]]",
		Short: "Show or set the backup repository (never shows secrets)",
		Long: `Without flags, show where projects are backed up. With --repository, set it
(or replace it, rotating its credentials). --credentials is a 0600 file of
KEY=VALUE lines: username and password for a REST server, access_key_id and
secret_access_key for S3. A local path needs none.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBackupConfig(cmd.Context(), f, o) },
	}
	cmd.Flags().StringVar(&o.Repository, "repository", "", "repository location: an absolute path, rest:http(s)://HOST:PORT/PATH or s3:http(s)://HOST:PORT/BUCKET")
	cmd.Flags().StringVar(&o.Credentials, "credentials", "", "0600 file of KEY=VALUE lines with the repository's credentials")
	return cmd
}

func runBackupConfig(ctx context.Context, f *Factory, o *BackupConfigOptions) error {
	c, ps, err := withBackups(ctx, f, &asFlag{})
	if err != nil {
		return err
	}
	var v projects.BackupConfigView
	switch {
	case o.Repository == "" && o.Credentials != "":
		return usagef("--credentials goes with --repository: `cocalc-hosts backup config --repository URL --credentials FILE`")
	case o.Repository == "":
		v, err = ps.GetBackupConfig(ctx)
	default:
		var creds map[string]string
		if o.Credentials != "" {
			if creds, err = readBackupCredentials(o.Credentials); err != nil {
				return err
			}
		}
		v, err = ps.SetBackupConfig(ctx, c, o.Repository, creds)
	}
	if err != nil {
		return err
	}
	return f.render(v, func(w *Out) error {
		kv := func(k, s string) { fmt.Fprintf(w, "%-12s %s\n", k+":", s) }
		kv("repository", v.Repository)
		kv("kind", v.Kind)
		kv("credentials", orDash(strings.Join(v.CredentialKeys, ", ")))
		kv("version", fmt.Sprint(v.Version))
		kv("updated", v.UpdatedAt.Local().Format("2006-01-02 15:04:05"))
		kv("host ttl", v.TTL)
		return nil
	})
}

// readCredentials reads KEY=VALUE lines from a 0600 file.
func readBackupCredentials(path string) (map[string]string, error) {
	b, err := secrets.Read(path)
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "--credentials: %v", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			// The line may hold a secret: name it by number only.
			return nil, errkind.Errorf(errkind.Invalid, "--credentials %s: line %d is not KEY=VALUE", path, n)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}
