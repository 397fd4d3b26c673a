package catalog

import (
	"cmp"
	"slices"
	"strings"
)

// Nearest returns up to n of known closest to value: by edit distance,
// with names that contain value (or that value contains) first, so that
// "a100" suggests "a100-80gb" and "us-central" suggests "us-central1".
func Nearest(value string, known []string, n int) []string {
	v := strings.ToLower(value)
	type scored struct {
		name string
		d    int
	}
	s := make([]scored, 0, len(known))
	for _, k := range known {
		kl := strings.ToLower(k)
		d := editDistance(v, kl)
		if v != "" && (strings.Contains(kl, v) || strings.Contains(v, kl)) {
			d -= len(v) // a containing name beats any unrelated one
		}
		s = append(s, scored{k, d})
	}
	slices.SortFunc(s, func(a, b scored) int { return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.name, b.name)) })
	out := make([]string, 0, n)
	for i := 0; i < len(s) && i < n; i++ {
		out = append(out, s[i].name)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
