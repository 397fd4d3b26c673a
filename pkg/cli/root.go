package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// Version is set at build time (-ldflags "-X ...cli.Version=v1.2.3").
var Version = "dev"

// Main runs the CLI and returns the process exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f := NewFactory(SystemIO())
	defer f.Close()
	return Execute(ctx, f, os.Args[1:])
}

// Execute runs args against f and prints a one-line error on failure.
func Execute(ctx context.Context, f *Factory, args []string) int {
	root := newRoot(f, args)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ran *ranError
	if errors.As(err, &ran) {
		err = ran.err
	} else {
		// Not from a command's own code: cobra refused the command line
		// (unknown command or flag, bad flag value, wrong arguments,
		// missing required flags). Its message names what was wrong; the
		// command's help says what it takes.
		err = usageErr(fmt.Errorf("%w; see `%s --help`", err, cmd.CommandPath()))
	}
	if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", context.Canceled, err)
	}
	code := exitCode(err)
	msg := err.Error()
	var nf *errkind.NotFoundError
	if errors.As(err, &nf) && notFoundHints[nf.Type] != "" {
		msg += "; " + notFoundHints[nf.Type]
	}
	var ie *interruptedError
	if code == ExitInterrupted && !errors.As(err, &ie) {
		msg = "interrupted; queued work stays queued and any worker will finish it (`cocalc-hosts worker --drain`)"
	}
	fmt.Fprintln(f.IO.ErrOut, "Error: "+strings.ReplaceAll(msg, "\n", " "))
	return code
}

// notFoundHints say, by type, where to see what exists: domain packages
// name what is missing, the command layer names the command.
var notFoundHints = map[string]string{
	"host":    "`cocalc-hosts list` shows the hosts",
	"project": "`cocalc-hosts project list` shows the projects",
}

// interruptedError is an interruption whose command says itself what it
// leaves behind (exit code ExitInterrupted).
type interruptedError struct{ msg string }

func (e *interruptedError) Error() string           { return e.msg }
func (e *interruptedError) ErrorKind() errkind.Kind { return errkind.Canceled }
func (e *interruptedError) Is(target error) bool    { return target == context.Canceled }

// ranError carries an error returned by a command's own code (its run
// hooks), so that Execute can tell it from cobra's parsing errors.
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// markRuns wraps the run hooks of c and its subcommands so that their
// errors arrive as *ranError.
func markRuns(c *cobra.Command) {
	for _, hook := range []*func(*cobra.Command, []string) error{
		&c.PersistentPreRunE, &c.PreRunE, &c.RunE, &c.PostRunE, &c.PersistentPostRunE,
	} {
		if run := *hook; run != nil {
			*hook = func(cmd *cobra.Command, args []string) error {
				if err := run(cmd, args); err != nil {
					return &ranError{err}
				}
				return nil
			}
		}
	}
	for _, sub := range c.Commands() {
		markRuns(sub)
	}
}

// topCommands are the top-level commands, by group ("" for those listed
// under no group): a new verb is a new file and one entry here. Each name
// is its command's Name(), so that a command line builds only the command
// it runs (TestTopCommandNames).
var topCommands = []struct {
	name, group string
	new         func(*Factory) *cobra.Command
}{
	{"create", "hosts", newCreateCmd}, {"list", "hosts", newListCmd}, {"show", "hosts", newShowCmd},
	{"start", "hosts", newStartCmd}, {"stop", "hosts", newStopCmd}, {"delete", "hosts", newDeleteCmd},
	{"logs", "hosts", newLogsCmd}, {"upgrade", "hosts", newUpgradeCmd}, {"idle-stop", "hosts", newIdleStopCmd},
	{"catalog", "hosts", newCatalogCmd}, {"cost", "hosts", newCostCmd}, {"dashboard", "hosts", newDashboardCmd},
	{"agent-metrics", "hosts", newAgentMetricsCmd},
	{"project", "projects", newProjectCmd}, {"image", "projects", newImageCmd},
	{"collaborators", "projects", newCollaboratorsCmd}, {"account", "projects", newAccountCmd},
	{"worker", "ops", newWorkerCmd}, {"reconcile", "ops", newReconcileCmd}, {"providers", "ops", newProvidersCmd},
	{"config", "ops", newConfigCmd}, {"agent", "ops", newAgentCmd}, {"ssh-key", "ops", newSSHKeyCmd},
	{"admin", "ops", newAdminCmd}, {"keys", "ops", newKeysCmd}, {"serve", "ops", newServeCmd}, {"join", "ops", newJoinCmd},
	{"login", "ops", newLoginCmd}, {"logout", "ops", newLogoutCmd}, {"audit", "ops", newAuditCmd},
	{"backup", "ops", newBackupCmd}, {"status", "ops", newStatusCmd},
	{"agent-relay", "", newAgentRelayCmd}, {"relay", "", newRelayCmd}, {"agent-sftp-server", "", newAgentSFTPCmd},
	{"version", "", newVersionCmd}, {"exit-codes", "", func(*Factory) *cobra.Command { return newExitCodesHelp() }},
}

// NewRootCmd builds the command tree.
func NewRootCmd(f *Factory) *cobra.Command { return newRoot(f, nil) }

// newRoot builds the root command with what running args needs: only the
// top-level command args name (with all its subcommands), no command for
// a bare --version, and every command otherwise (help, completion, a
// mistyped or aliased command, an unknown flag before the command). Most
// runs use one command: building the others' flags and subcommands is a
// good part of the CLI's own start-up work.
func newRoot(f *Factory, args []string) *cobra.Command {
	root := &cobra.Command{
		Use:   "cocalc-hosts",
		Short: "Run CoCalc project hosts on your own cloud VMs",
		Long: `cocalc-hosts provisions project-host VMs on clouds (or on this machine),
runs a host agent on them, and keeps their state in a database: an embedded
SQLite file by default, or Postgres for teams (--db postgres://…).`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	useFlagUsages(root)
	pf := root.PersistentFlags()
	pf.String("db", "", "state database: SQLite file path or postgres://user@host:port/db (password in ~/.pgpass)")
	pf.StringVar(&f.ConfigPath, "config", "", "config file (default $XDG_CONFIG_HOME/cocalc-hosts/config.yaml)")
	pf.String("account", "", "act as this account (default from config, else your login name)")
	addOutputFlags(root)
	f.Flags = pf

	root.AddGroup(&cobra.Group{ID: "hosts", Title: "Hosts:"}, &cobra.Group{ID: "projects", Title: "Projects:"},
		&cobra.Group{ID: "ops", Title: "Operations:"})
	name, version := commandIn(pf, args)
	all := !isTopCommand(name) && !(name == "" && version)
	for _, t := range topCommands {
		if all || t.name == name {
			c := t.new(f)
			c.GroupID = t.group
			root.AddCommand(c)
		}
	}
	root.SetHelpCommandGroupID("ops")
	root.SetCompletionCommandGroupID("ops")
	markRuns(root)
	return root
}

func isTopCommand(name string) bool {
	for _, t := range topCommands {
		if t.name == name {
			return true
		}
	}
	return false
}

// commandIn returns the first argument of args that is not a flag or a
// flag's value (the command to run; "" if none), and whether args before
// it ask for the version and not for help. An argument after "--" or a
// flag that is not the root's (a subcommand's flag before the command)
// gives "" and false: the whole tree then parses the line.
func commandIn(flags *pflag.FlagSet, args []string) (name string, version bool) {
	help := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		var fl *pflag.Flag
		switch {
		case a == "--version" || a == "-v":
			version = true
			continue
		case a == "--help" || a == "-h":
			help = true
			continue
		case a == "--":
			return "", false
		case strings.HasPrefix(a, "--"):
			n, _, hasValue := strings.Cut(a[2:], "=")
			if fl = flags.Lookup(n); fl != nil && (hasValue || fl.NoOptDefVal != "") {
				continue
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			fl = flags.ShorthandLookup(a[1:2])
			if fl != nil && len(a) > 2 && fl.NoOptDefVal != "" {
				return "", false // combined short flags: let cobra read them
			}
			if fl != nil && (len(a) > 2 || fl.NoOptDefVal != "") {
				continue // -ojson, or a flag without a value
			}
		default:
			return a, version && !help
		}
		if fl == nil {
			return "", false
		}
		i++ // the flag's value
	}
	return "", version && !help
}

func newVersionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.render(map[string]string{"version": Version}, func(w *Out) error {
				fmt.Fprintln(w, Version)
				return nil
			})
		},
	}
}

func newExitCodesHelp() *cobra.Command {
	var b strings.Builder
	b.WriteString("cocalc-hosts exits with one of these codes:\n\n")
	for _, e := range ExitCodeTable {
		fmt.Fprintf(&b, "  %3d  %-12s %s\n", e.Code, e.Kind, e.Meaning)
	}
	b.WriteString("\n`project exec` and `project shell` exit with the command's own status instead.\n")
	return &cobra.Command{Use: "exit-codes", Short: "Exit codes for scripts", Long: b.String()}
}

// Argument validators that report usage errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

func oneHost(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s needs exactly one host (name or id); see `%s --help`", cmd.CommandPath(), cmd.CommandPath())
	}
	return nil
}
