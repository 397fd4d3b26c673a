package sim

import (
	"fmt"
	"strconv"
	"time"

	opts "github.com/sagemathinc/cocalc-hosts/pkg/provider/options"
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

	// duplicateNames: Create makes a new VM on every call, as Lambda and
	// Hyperstack do, instead of returning the one of the same name.
	duplicateNames bool

	capacityRegions map[string]bool // Create fails with KindCapacity here

	bootDiskGB int // a simulated boot disk billed apart from the machine

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
	"boot_disk_gb":           "size of a simulated boot disk priced apart from the machine, like GCP's (default 0: none)",
	"duplicate_names":        "true: every Create makes a new VM with its own id even if one of that name exists, as on clouds whose names are not unique (Lambda, Hyperstack); instances are then addressed by id (default false)",
}

func parseOptions(m map[string]string) (options, error) {
	o := options{retryAfter: time.Second, timeout: 10 * time.Second, capacityRegions: map[string]bool{}}
	const example = "250ms or 2s"
	err := opts.Each(m, func(k, v string) (err error) {
		switch k {
		case "latency":
			o.latency, err = opts.NonNegativeDuration(k, v, example)
		case "boot_time":
			o.bootTime, err = opts.NonNegativeDuration(k, v, example)
		case "retry_after":
			o.retryAfter, err = opts.NonNegativeDuration(k, v, example)
		case "timeout":
			o.timeout, err = opts.NonNegativeDuration(k, v, example)
		case "error_rate":
			o.errorRate, err = opts.Rate(k, v)
		case "rate_limit_rate":
			o.rateLimitRate, err = opts.Rate(k, v)
		case "timeout_rate":
			o.timeoutRate, err = opts.Rate(k, v)
		case "create_ghost_rate":
			o.ghostRate, err = opts.Rate(k, v)
		case "duplicate_names":
			o.duplicateNames, err = opts.Bool(k, v)
		case "capacity_error_regions":
			for _, r := range opts.List(v) {
				o.capacityRegions[r] = true
			}
		case "boot_disk_gb":
			o.bootDiskGB, err = strconv.Atoi(v)
			if err != nil || o.bootDiskGB < 0 {
				err = fmt.Errorf("option boot_disk_gb=%q: want a whole number of GB, 0 or more", v)
			}
		case "seed":
			o.seed, err = strconv.ParseUint(v, 10, 64)
			if err != nil {
				err = fmt.Errorf("option seed=%q: want an unsigned integer", v)
			}
			o.hasSeed = true
		default:
			return opts.Unknown(k, optionKeys)
		}
		return err
	})
	return o, err
}
