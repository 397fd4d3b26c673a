package cli

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/spf13/cobra"
)

// Each entry of topCommands is named as its command is, and the full tree
// has exactly those commands.
func TestTopCommandNames(t *testing.T) {
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	defer f.Close()
	var want []string
	for _, c := range topCommands {
		if got := c.new(f).Name(); got != c.name {
			t.Errorf("topCommands names %q for the command %q", c.name, got)
		}
		want = append(want, c.name)
	}
	slices.Sort(want)
	if got := commandNames(NewRootCmd(f)); !slices.Equal(got, want) {
		t.Errorf("NewRootCmd has %q, want %q", got, want)
	}
}

// A command line builds the command it runs and no other; lines that may
// need any command (help, completion, an alias, a flag that is not the
// root's before the command) build them all.
func TestRootBuildsWhatTheLineRuns(t *testing.T) {
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	defer f.Close()
	all := commandNames(NewRootCmd(f))
	for _, tc := range []struct {
		args []string
		want []string // nil: all
	}{
		{[]string{"list"}, []string{"list"}},
		{[]string{"list", "--help"}, []string{"list"}},
		{[]string{"--help", "list"}, []string{"list"}},
		{[]string{"--db", "list", "show", "x"}, []string{"show"}},
		{[]string{"--db=x.db", "-o", "json", "--jq", ".", "project", "list"}, []string{"project"}},
		{[]string{"-ojson", "version"}, []string{"version"}},
		{[]string{"--version"}, []string{}},
		{[]string{"-v"}, []string{}},
		{[]string{"--version", "--help"}, nil},
		{[]string{"--help"}, nil},
		{[]string{}, nil},
		{[]string{"help", "list"}, nil},
		{[]string{"ls"}, nil},
		{[]string{"lst"}, nil},
		{[]string{"completion", "bash"}, nil},
		{[]string{"__complete", "li"}, nil},
		{[]string{"--watch", "list"}, nil},
		{[]string{"--", "list"}, nil},
	} {
		want := tc.want
		if want == nil {
			want = all
		}
		if got := commandNames(newRoot(f, tc.args)); !slices.Equal(got, want) {
			t.Errorf("%q builds %q, want %q", tc.args, got, want)
		}
	}
}

// What a command line prints is the same with the commands it builds as
// with the full tree.
func TestRootOutputAsWithFullTree(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-v"}, {"--help"}, {"list", "--help"}, {"--help", "ls"},
		{"-o", "json", "version"}, {"version", "--help"}, {"project", "list", "--help"}, {"lst"}} {
		var lazy, full bytes.Buffer
		for _, c := range []struct {
			out  *bytes.Buffer
			root func(*Factory) error
		}{
			{&lazy, func(f *Factory) error { return execRoot(newRoot(f, args), args) }},
			{&full, func(f *Factory) error { return execRoot(NewRootCmd(f), args) }},
		} {
			f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: c.out, ErrOut: c.out})
			if err := c.root(f); err != nil {
				c.out.WriteString("error: " + err.Error())
			}
			f.Close()
		}
		if lazy.String() != full.String() || lazy.Len() == 0 {
			t.Errorf("%q prints\n%s\nwith the full tree:\n%s", args, lazy.String(), full.String())
		}
	}
}

func execRoot(root *cobra.Command, args []string) error {
	root.SetArgs(args)
	return root.ExecuteContext(context.Background())
}

// commandNames are the names of root's commands, sorted.
func commandNames(root *cobra.Command) []string {
	names := []string{}
	for _, c := range root.Commands() {
		names = append(names, c.Name())
	}
	slices.Sort(names)
	return names
}
