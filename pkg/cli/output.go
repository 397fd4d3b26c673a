package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// outputFormat returns "json" or "table".
func (f *Factory) outputFormat() string {
	cfg, err := f.Config()
	if err != nil {
		return "table"
	}
	return cfg.String("output")
}

func (f *Factory) jsonOutput() bool { return f.outputFormat() == "json" }

// printJSON writes v as indented JSON with a trailing newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(headers) > 0 {
		t.row(headers...)
	}
	return t
}

func (t *table) row(cols ...string) {
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printHostTable(w io.Writer, now time.Time, hs []model.Host, wide bool) error {
	t := newTable(w, "NAME", "ID", "PROVIDER", "REGION", "STATUS", "CREATED", "LAST ACTION", "LAST ERROR")
	for _, h := range hs {
		errCol := h.LastError
		if !wide {
			errCol = truncate(errCol, 50)
		}
		t.row(h.Name, shortID(h.ID), h.Provider, orDash(h.Region), string(h.Status), ago(now, h.CreatedAt),
			orDash(h.LastAction), orDash(errCol))
	}
	return t.flush()
}

// addOutputFlag is the --output flag every command has (persistent on root).
func addOutputFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().StringP("output", "o", "table", "output format: table or json")
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	w.Write(append(b, '\n')) //nolint:errcheck
}
