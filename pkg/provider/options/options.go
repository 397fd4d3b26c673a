// Package options parses a provider's Config.Options (config keys
// providers.<name>.<key>). Every provider refuses unknown keys, so a typo
// cannot silently fall back to a default, and names the key and the bad
// value in every error; these helpers keep those rules and messages the
// same across providers.
package options

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Each calls set with every key of m and its value trimmed of spaces. Keys
// come in sorted order so the first bad key is reported deterministically.
// It stops at the first error set returns.
func Each(m map[string]string, set func(key, value string) error) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := set(k, strings.TrimSpace(m[k])); err != nil {
			return err
		}
	}
	return nil
}

// Unknown is the error for a key that is not in known (key -> description);
// it lists the known keys so the user can fix the typo.
func Unknown(key string, known map[string]string) error {
	return fmt.Errorf("unknown option %q (known: %s)", key, knownList(known))
}

// UnknownFor is Unknown naming the provider too.
func UnknownFor(provider, key string, known map[string]string) error {
	return fmt.Errorf("unknown option %q for provider %s (known: %s)", key, provider, knownList(known))
}

func knownList(known map[string]string) string {
	keys := make([]string, 0, len(known))
	for k := range known {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// Bool parses true/false (and the other forms strconv.ParseBool accepts).
func Bool(key, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("option %s=%q: want true or false", key, v)
	}
	return b, nil
}

// NonNegativeInt parses an integer >= 0.
func NonNegativeInt(key, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("option %s=%q: want a non-negative integer", key, v)
	}
	return n, nil
}

// PositiveInt parses an integer > 0.
func PositiveInt(key, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("option %s=%q: want a positive integer", key, v)
	}
	return n, nil
}

// PositiveDuration parses a Go duration > 0; example (such as "5s") shows
// the user the form in the error.
func PositiveDuration(key, v, example string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("option %s=%q: want a positive Go duration such as %s", key, v, example)
	}
	return d, nil
}

// NonNegativeDuration parses a Go duration >= 0 (zero usually turns
// something off); example shows the user the form in the error.
func NonNegativeDuration(key, v, example string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("option %s=%q: want a non-negative Go duration such as %s", key, v, example)
	}
	return d, nil
}

// Rate parses a probability in [0,1].
func Rate(key, v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1 {
		return 0, fmt.Errorf("option %s=%q: want a probability between 0 and 1", key, v)
	}
	return f, nil
}

// HTTPURL parses an http(s) base URL and drops trailing slashes, so paths
// can be appended; example shows the user the form in the error.
func HTTPURL(key, v, example string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("option %s=%q: want an http(s) URL such as %s", key, v, example)
	}
	return strings.TrimRight(v, "/"), nil
}

// List splits a comma-separated value, dropping empty items and spaces.
func List(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
