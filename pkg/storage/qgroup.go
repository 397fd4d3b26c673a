package storage

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
)

// qgroup is one row of `btrfs qgroup show`.
type qgroup struct {
	ID         string // "0/256" or "1/256"
	Referenced int64
	Exclusive  int64
	// MaxReferenced and MaxExclusive are -1 when there is no limit.
	MaxReferenced int64
	MaxExclusive  int64
}

var qgroupIDRE = lazyre.New(`^\d+/\d+$`)

// parseQgroupShow reads the output of `btrfs qgroup show -re --raw`.
//
// The layout has changed across btrfs-progs versions (lowercase
// abbreviations such as "rfer" and "max_rfer" in old ones, "Referenced" and
// "Max referenced" in new ones, extra Parent/Child/Path columns, a dashed
// rule under the header), so the columns are found by name in the header
// instead of by position, and rows that do not look like a qgroup are
// skipped.
func parseQgroupShow(out string) (map[string]qgroup, error) {
	lines := strings.Split(out, "\n")
	col := map[string]int{}
	header := -1
	for i, line := range lines {
		f := headerFields(line)
		if len(f) > 0 && strings.EqualFold(f[0], "qgroupid") {
			for j, name := range f {
				col[name] = j
			}
			header = i
			break
		}
	}
	if header < 0 {
		return nil, fmt.Errorf("btrfs qgroup show: no header line in output %q", truncateOut(out))
	}
	for _, need := range []string{"referenced", "exclusive"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("btrfs qgroup show: no %q column in header %q", need, lines[header])
		}
	}
	rows := map[string]qgroup{}
	for _, line := range lines[header+1:] {
		f := strings.Fields(line)
		if len(f) == 0 || !qgroupIDRE().MatchString(f[0]) {
			continue // the dashed rule, blank lines, or something new
		}
		q := qgroup{ID: f[0], MaxReferenced: -1, MaxExclusive: -1}
		var err error
		if q.Referenced, err = cell(f, col, "referenced"); err != nil {
			return nil, fmt.Errorf("btrfs qgroup show: qgroup %s: %w", f[0], err)
		}
		if q.Exclusive, err = cell(f, col, "exclusive"); err != nil {
			return nil, fmt.Errorf("btrfs qgroup show: qgroup %s: %w", f[0], err)
		}
		if _, ok := col["max_referenced"]; ok {
			if q.MaxReferenced, err = cell(f, col, "max_referenced"); err != nil {
				return nil, fmt.Errorf("btrfs qgroup show: qgroup %s: %w", f[0], err)
			}
		}
		if _, ok := col["max_exclusive"]; ok {
			if q.MaxExclusive, err = cell(f, col, "max_exclusive"); err != nil {
				return nil, fmt.Errorf("btrfs qgroup show: qgroup %s: %w", f[0], err)
			}
		}
		rows[q.ID] = q
	}
	return rows, nil
}

// headerFields splits a header line into normalized column names:
// "Max referenced" becomes "max_referenced", "rfer" becomes "referenced".
func headerFields(line string) []string {
	raw := strings.Fields(line)
	var out []string
	for i := 0; i < len(raw); i++ {
		name := strings.ToLower(raw[i])
		if name == "max" && i+1 < len(raw) {
			name = "max_" + strings.ToLower(raw[i+1])
			i++
		}
		switch name {
		case "rfer":
			name = "referenced"
		case "excl":
			name = "exclusive"
		case "max_rfer":
			name = "max_referenced"
		case "max_excl":
			name = "max_exclusive"
		}
		out = append(out, name)
	}
	return out
}

// cell parses a numeric column; "none" (no limit) is -1.
func cell(f []string, col map[string]int, name string) (int64, error) {
	i := col[name]
	if i >= len(f) {
		return 0, fmt.Errorf("no %s value", name)
	}
	if f[i] == "none" || f[i] == "-" {
		return -1, nil
	}
	n, err := strconv.ParseInt(f[i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a byte count (was --raw ignored?)", name, f[i])
	}
	return n, nil
}

func truncateOut(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
