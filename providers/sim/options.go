package sim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// options are the sim provider's settings, parsed from Config.Options.
// Every fault is off by default, so an unconfigured sim is a perfect cloud.
type options struct {
	latency  time.Duration // added to every call
	bootTime time.Duration // pending → running

	errorRate     float64 // transient 5xx-like failure before doing anything
	rateLimitRate float64 // KindRateLimited with RetryAfter
	retryAfter    time.Duration
	timeoutRate   float64 // block until ctx is done or timeout passes
	timeout       time.Duration
	ghostRate     float64 // Create creates the VM, then reports an error anyway

	capacityRegions map[string]bool // Create fails with KindCapacity here

	seed    uint64
	hasSeed bool
}

// optionKeys documents every accepted key; anything else is refused so a
// typo ("error_rates") cannot silently turn a fault test into a no-op.
var optionKeys = map[string]string{
	"latency":                "Go duration added to every call (default 0)",
	"boot_time":              "how long a created or started instance stays pending (default 0)",
	"error_rate":             "probability in [0,1] that a call fails with a transient error",
	"rate_limit_rate":        "probability in [0,1] that a call is rate limited",
	"retry_after":            "Go duration a rate-limited call asks the caller to wait (default 1s)",
	"timeout_rate":           "probability in [0,1] that a call hangs, then fails transiently",
	"timeout":                "Go duration a hanging call waits before failing (default 10s)",
	"create_ghost_rate":      "probability in [0,1] that Create makes the VM but returns an error",
	"capacity_error_regions": "comma-separated regions where Create fails for lack of capacity",
	"seed":                   "unsigned integer seeding the fault generator, for reproducible runs",
}

func parseOptions(m map[string]string) (options, error) {
	o := options{retryAfter: time.Second, timeout: 10 * time.Second, capacityRegions: map[string]bool{}}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first bad key deterministically
	for _, k := range keys {
		v := strings.TrimSpace(m[k])
		var err error
		switch k {
		case "latency":
			o.latency, err = parseDuration(k, v)
		case "boot_time":
			o.bootTime, err = parseDuration(k, v)
		case "retry_after":
			o.retryAfter, err = parseDuration(k, v)
		case "timeout":
			o.timeout, err = parseDuration(k, v)
		case "error_rate":
			o.errorRate, err = parseRate(k, v)
		case "rate_limit_rate":
			o.rateLimitRate, err = parseRate(k, v)
		case "timeout_rate":
			o.timeoutRate, err = parseRate(k, v)
		case "create_ghost_rate":
			o.ghostRate, err = parseRate(k, v)
		case "capacity_error_regions":
			for _, r := range strings.Split(v, ",") {
				if r = strings.TrimSpace(r); r != "" {
					o.capacityRegions[r] = true
				}
			}
		case "seed":
			o.seed, err = strconv.ParseUint(v, 10, 64)
			if err != nil {
				err = fmt.Errorf("option seed=%q: want an unsigned integer", v)
			}
			o.hasSeed = true
		default:
			known := make([]string, 0, len(optionKeys))
			for k := range optionKeys {
				known = append(known, k)
			}
			sort.Strings(known)
			return o, fmt.Errorf("unknown option %q (known: %s)", k, strings.Join(known, ", "))
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

func parseDuration(key, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("option %s=%q: want a non-negative Go duration such as 250ms or 2s", key, v)
	}
	return d, nil
}

func parseRate(key, v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1 {
		return 0, fmt.Errorf("option %s=%q: want a probability between 0 and 1", key, v)
	}
	return f, nil
}
