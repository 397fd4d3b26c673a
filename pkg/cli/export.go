package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/itchyny/gojq"
	"github.com/spf13/cobra"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Every command prints its result in one of two ways: for scripts,
// through the Exporter (`-o json`, `--jq EXPR`, `--template TPL`, the same
// on every command), or for people, as text and tables that it writes to
// an Out. Either way the result reaches the terminal once it is whole, in
// one write (a JSON listing of megabytes: in writes of about a MiB).

// addOutputFlags adds the output flags every command has (persistent on
// root).
func addOutputFlags(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringP("output", "o", "table", "output format: table or json")
	pf.String("jq", "", "filter the JSON output with a jq expression (implies -o json)")
	pf.String("template", "", "format the JSON output with a Go template (implies -o json)")
	cmd.MarkFlagsMutuallyExclusive("jq", "template")
}

// Exporter writes results for scripts: indented JSON, or what a jq filter
// (github.com/itchyny/gojq) or a Go template makes of that JSON.
type Exporter struct {
	JQ       string
	Template string
}

// exporter returns the command line's exporter, or nil when the output is
// for people.
func (f *Factory) exporter() *Exporter {
	e := &Exporter{}
	if f.Flags != nil {
		e.JQ, _ = f.Flags.GetString("jq")
		e.Template, _ = f.Flags.GetString("template")
	}
	if e.JQ == "" && e.Template == "" && f.outputFormat() != "json" {
		return nil
	}
	return e
}

// jsonOutput reports whether output is for scripts, so that progress on
// stderr comes as JSON lines too.
func (f *Factory) jsonOutput() bool { return f.exporter() != nil }

// render prints v, a command's result: through the exporter when there is
// one, else as human writes it.
func (f *Factory) render(v any, human func(o *Out) error) error {
	if e := f.exporter(); e != nil {
		return e.Write(f.IO.Out, v)
	}
	o := f.out()
	if err := human(o); err != nil {
		return err
	}
	return o.Flush()
}

// renderLine prints one item of a stream of results (as `logs --follow`
// does): a JSON line, or the jq or template output for it; or as human
// writes it.
func (f *Factory) renderLine(v any, human func(o *Out) error) error {
	if e := f.exporter(); e != nil {
		return e.WriteLine(f.IO.Out, v)
	}
	o := f.out()
	if err := human(o); err != nil {
		return err
	}
	return o.Flush()
}

// hostArray builds, one host at a time, the indented JSON array that
// Exporter.Write makes of a []model.Host, so that a long listing is
// encoded as it is read instead of held whole; writeTo writes it. It is
// kept in chunks of about hostChunk bytes: growing one buffer by copying
// cost a listing of 10,000 hosts more than encoding them.
type hostArray struct {
	full [][]byte // chunks filled
	b    []byte   // the chunk being filled
	n    int
}

const hostChunk = 1 << 20

func (a *hostArray) add(h *model.Host) error {
	switch {
	case a.n == 0:
		a.b = append(make([]byte, 0, hostChunk+hostChunk/8), "[\n  "...)
	case len(a.b) >= hostChunk:
		a.full = append(a.full, a.b)
		a.b = append(make([]byte, 0, hostChunk+hostChunk/8), ",\n  "...)
	default:
		a.b = append(a.b, ",\n  "...)
	}
	a.n++
	var err error
	a.b, err = model.AppendHostJSON(a.b, h, "  ", "  ")
	return err
}

func (a *hostArray) writeTo(w io.Writer) error {
	if a.n == 0 {
		_, err := io.WriteString(w, "[]\n")
		return err
	}
	for _, b := range append(a.full, append(a.b, "\n]\n"...)) {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Write writes v.
func (e *Exporter) Write(w io.Writer, v any) error { return e.write(w, v, true) }

// WriteLine writes v as one line of JSON (or filtered).
func (e *Exporter) WriteLine(w io.Writer, v any) error { return e.write(w, v, false) }

func (e *Exporter) write(w io.Writer, v any, indent bool) error {
	if e.JQ != "" || e.Template != "" {
		return e.filter(w, v)
	}
	var b []byte
	var err error
	if indent {
		b, err = json.MarshalIndent(v, "", "  ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// filter runs the jq expression or template on v as JSON sees it.
func (e *Exporter) filter(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var data any
	if err := json.Unmarshal(b, &data); err != nil {
		return err
	}
	var out bytes.Buffer
	if e.JQ != "" {
		err = runJQ(&out, e.JQ, data)
	} else {
		err = runTemplate(&out, e.Template, data)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(out.Bytes())
	return err
}

// runJQ writes each result of expr on data on a line of its own: strings
// as they are, anything else as compact JSON (as `jq -r` does).
func runJQ(w *bytes.Buffer, expr string, data any) error {
	q, err := gojq.Parse(expr)
	if err != nil {
		return usagef("invalid --jq expression %q: %v", expr, err)
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return usagef("invalid --jq expression %q: %v", expr, err)
	}
	iter := code.RunWithContext(context.Background(), data)
	for {
		v, ok := iter.Next()
		if !ok {
			return nil
		}
		if err, ok := v.(error); ok {
			return usagef("--jq %q: %v", expr, err)
		}
		if s, ok := v.(string); ok {
			w.WriteString(s)
		} else {
			b, err := gojq.Marshal(v)
			if err != nil {
				return err
			}
			w.Write(b)
		}
		w.WriteByte('\n')
	}
}

// templateFuncs are the helpers a --template may use, beside text/template's.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":     func(sep string, v []any) string { return joinAny(sep, v) },
	"truncate": func(n int, s string) string { return truncate(s, n) },
	"pluck": func(field string, v []any) []any {
		var out []any
		for _, item := range v {
			if m, ok := item.(map[string]any); ok {
				out = append(out, m[field])
			}
		}
		return out
	},
}

func joinAny(sep string, v []any) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, sep)
}

func runTemplate(w *bytes.Buffer, text string, data any) error {
	t, err := template.New("--template").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return usagef("invalid --template: %v", err)
	}
	if err := t.Execute(w, data); err != nil {
		return usagef("--template: %v", err)
	}
	return nil
}

// Out collects a command's human-readable output, written at once by
// Flush. Tables on it are aligned when it goes to a terminal and
// tab-separated when it does not (for cut and awk).
type Out struct {
	bytes.Buffer
	w   io.Writer
	TTY bool
}

func (f *Factory) out() *Out { return &Out{w: f.IO.Out, TTY: f.IO.OutTTY} }

// Flush writes what was collected.
func (o *Out) Flush() error {
	if o.Len() == 0 {
		return nil
	}
	_, err := o.w.Write(o.Bytes())
	o.Reset()
	return err
}

// table is a table being written to an Out.
type table struct {
	o    *Out
	rows [][]string
}

// table starts a table with headers (none for a headless table).
func (o *Out) table(headers ...string) *table {
	t := &table{o: o}
	if len(headers) > 0 {
		t.row(headers...)
	}
	return t
}

func (t *table) row(cols ...string) { t.rows = append(t.rows, cols) }

// flush writes the table's rows to its Out.
func (t *table) flush() error {
	if !t.o.TTY {
		for _, r := range t.rows {
			t.o.WriteString(strings.Join(r, "\t"))
			t.o.WriteByte('\n')
		}
		return nil
	}
	tw := tabwriter.NewWriter(t.o, 0, 4, 2, ' ', 0)
	for _, r := range t.rows {
		tw.Write([]byte(strings.Join(r, "\t") + "\n")) //nolint:errcheck // into memory
	}
	return tw.Flush()
}
