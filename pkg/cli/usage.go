package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// useFlagUsages makes --help list flags with flagUsages instead of
// pflag's own listing.
func useFlagUsages(root *cobra.Command) {
	cobra.AddTemplateFunc("flagUsages", flagUsages)
	root.SetUsageTemplate(strings.NewReplacer(
		".LocalFlags.FlagUsages", "flagUsages .LocalFlags",
		".InheritedFlags.FlagUsages", "flagUsages .InheritedFlags",
	).Replace(root.UsageTemplate()))
}

// flagUsages lists flags as pflag does, except where pflag misleads: a
// `quoted` word in a usage string is shown as the flag's value type (so
// "see `cocalc-hosts providers`" made --cloud's type "cocalc-hosts
// providers"), and boolean flags get "[=true|false]" appended. Here the
// type is always the value's, and a boolean flag is just its name.
func flagUsages(fs *pflag.FlagSet) string {
	type row struct{ left, usage string }
	var rows []row
	width := 0
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden {
			return
		}
		left := "      --" + fl.Name
		if fl.Shorthand != "" && fl.ShorthandDeprecated == "" {
			left = "  -" + fl.Shorthand + ", --" + fl.Name
		}
		plain := *fl
		plain.Usage = strings.ReplaceAll(fl.Usage, "`", "")
		varname, usage := pflag.UnquoteUsage(&plain)
		isBool := fl.Value.Type() == "bool"
		if !isBool && varname != "" {
			left += " " + varname
		}
		if fl.NoOptDefVal != "" && !isBool {
			if fl.Value.Type() == "string" {
				left += fmt.Sprintf("[=%q]", fl.NoOptDefVal)
			} else {
				left += "[=" + fl.NoOptDefVal + "]"
			}
		}
		switch fl.DefValue {
		case "", "0", "false", "[]", "0s", "<nil>":
		default:
			if fl.Value.Type() == "string" {
				usage += fmt.Sprintf(" (default %q)", fl.DefValue)
			} else {
				usage += " (default " + fl.DefValue + ")"
			}
		}
		if fl.Deprecated != "" {
			usage += " (DEPRECATED: " + fl.Deprecated + ")"
		}
		width = max(width, len(left))
		rows = append(rows, row{left, usage})
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s   %s\n", width, r.left, r.usage)
	}
	return b.String()
}
