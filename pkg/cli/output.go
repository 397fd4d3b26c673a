package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// outputFormat returns "json" or "table".
func (f *Factory) outputFormat() string {
	cfg, err := f.Config()
	if err != nil {
		return "table"
	}
	return cfg.Output
}

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

// hostTable starts `list`'s table; hostRow adds h to it.
func hostTable(o *Out) *table {
	return o.table("NAME", "ID", "PROVIDER", "REGION", "STATUS", "CREATED", "LAST ACTION", "LAST ERROR")
}

func hostRow(t *table, now time.Time, h *model.Host, wide bool) {
	errCol := h.LastError
	if !wide {
		errCol = truncate(errCol, 50)
	}
	t.row(h.Name, shortID(h.ID), h.Provider, orDash(h.Region), string(h.Status), ago(now, h.CreatedAt),
		orDash(h.LastAction), orDash(errCol))
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	w.Write(append(b, '\n')) //nolint:errcheck
}
