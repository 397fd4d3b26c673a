package tui

import (
	"slices"
	"strings"
	"unicode"

	"charm.land/bubbles/v2/table"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// column is one column of a grid: its title, the width it needs, and
// its priority when the terminal is too narrow for all (lower goes
// first). A flex column takes the width left over.
type column struct {
	title    string
	width    int
	priority int
	flex     bool
	right    bool
}

// list is a cursor over n rows and the first row on screen.
type list struct {
	cursor, offset int
}

func (l *list) move(delta, n int) {
	l.cursor = clamp(l.cursor+delta, 0, max(n-1, 0))
}

func (l *list) clampTo(n int) { l.cursor = clamp(l.cursor, 0, max(n-1, 0)) }

// window returns the rows [start, end) to show in rows lines, keeping
// the cursor on screen; it remembers the offset so that scrolling is
// stable.
func (l *list) window(n, rows int) (int, int) {
	rows = max(rows, 1)
	if l.cursor < l.offset {
		l.offset = l.cursor
	}
	if l.cursor >= l.offset+rows {
		l.offset = l.cursor - rows + 1
	}
	l.offset = clamp(l.offset, 0, max(n-rows, 0))
	return l.offset, min(l.offset+rows, n)
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }

// fit picks the columns that fit in width (dropping the lowest
// priorities first) and gives the flex column what is left. It returns
// the indexes of the chosen columns and their widths.
func fit(cols []column, width int) ([]int, []int) {
	keep := make([]bool, len(cols))
	need := 0
	for i, c := range cols {
		keep[i] = true
		need += c.width + 1
	}
	for need > width {
		drop, lowest := -1, 1<<30
		for i, c := range cols {
			if keep[i] && c.priority > 0 && c.priority < lowest {
				drop, lowest = i, c.priority
			}
		}
		if drop < 0 {
			break
		}
		keep[drop] = false
		need -= cols[drop].width + 1
	}
	var idx, widths []int
	for i, c := range cols {
		if keep[i] {
			w := c.width
			if c.flex && width > need {
				w += width - need
			}
			idx = append(idx, i)
			widths = append(widths, w)
		}
	}
	return idx, widths
}

// grid renders the visible rows of a long list with the bubbles table:
// the table is given only the rows on screen, so a frame costs the same
// for ten hosts or ten thousand.
type grid struct {
	cols []column
	// sortCol is the column sorted on (-1: none); desc its direction.
	sortCol int
	desc    bool
}

// render draws rows [start, end) in width×height (header included);
// cell(row, col, width, selected) is one cell; cursor is the selected row.
func (g grid) render(t Theme, width, height, start, end, cursor int, cell func(row, col, width int, selected bool) string) string {
	idx, widths := fit(g.cols, width)
	cols := make([]table.Column, len(idx))
	for k, i := range idx {
		title := g.cols[i].title
		if i == g.sortCol {
			if g.desc {
				title += "▼"
			} else {
				title += "▲"
			}
		}
		if g.cols[i].right {
			title = padLeft(title, widths[k])
		}
		cols[k] = table.Column{Title: title, Width: widths[k]}
	}
	rows := make([]table.Row, 0, end-start)
	for r := start; r < end; r++ {
		cells := make(table.Row, len(idx))
		for k, i := range idx {
			cells[k] = cell(r, i, widths[k], r == cursor)
			if g.cols[i].right {
				cells[k] = padLeft(cells[k], widths[k])
			}
		}
		rows = append(rows, cells)
	}
	// Every setter renders the rows again: place the cursor over empty
	// rows (nothing to render), then give the real rows once.
	tb := table.New(table.WithColumns(cols), table.WithHeight(height), table.WithWidth(width),
		table.WithStyles(table.Styles{
			Header:   t.Header.PaddingRight(1),
			Cell:     lipgloss.NewStyle().PaddingRight(1),
			Selected: t.Selected,
		}))
	if k := cursor - start; k != 0 {
		tb.SetRows(make([]table.Row, len(rows)))
		tb.SetCursor(k)
	}
	tb.SetRows(rows)
	return tb.View()
}

// padLeft right-aligns s in w cells.
func padLeft(s string, w int) string {
	if n := ansi.StringWidth(s); n < w {
		return strings.Repeat(" ", w-n) + s
	}
	return s
}

// clip shortens s to n cells, marking the cut.
func clip(s string, n int) string {
	if n <= 0 {
		return ""
	}
	return ansi.Truncate(s, n, "…")
}

// fuzzy reports whether the letters of pattern appear in s in order
// (case-insensitive), as in fzf.
func fuzzy(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	p := []rune(strings.ToLower(pattern))
	i := 0
	for _, r := range s {
		if unicode.ToLower(r) == p[i] {
			i++
			if i == len(p) {
				return true
			}
		}
	}
	return false
}

// matchAll reports whether every word of query fuzzily matches one of
// fields.
func matchAll(query string, fields ...string) bool {
	for _, w := range strings.Fields(query) {
		ok := false
		for _, f := range fields {
			if fuzzy(w, f) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// reindex refills index with the rows of n that keep, ordered by cmp
// (reversed when g sorts descending), and puts the cursor back on the
// row that was selected.
func reindex(index []int, n int, l *list, g grid, keep func(int) bool, cmp func(a, b int) int, selected func(int) bool) []int {
	index = index[:0]
	for i := 0; i < n; i++ {
		if keep(i) {
			index = append(index, i)
		}
	}
	slices.SortStableFunc(index, func(a, b int) int {
		if g.desc {
			return -cmp(a, b)
		}
		return cmp(a, b)
	})
	l.clampTo(len(index))
	for k, i := range index {
		if selected(i) {
			l.cursor = k
			break
		}
	}
	return index
}
