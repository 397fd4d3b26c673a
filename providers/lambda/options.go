package lambda

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the Lambda Cloud API base URL.
const DefaultEndpoint = "https://cloud.lambda.ai/api/v1"

// options are the lambda provider's settings (config keys
// providers.lambda.<key>).
type options struct {
	endpoint     string
	region       string   // default region for hosts that name none
	regions      []string // regions the catalog lists even without capacity
	image        string   // image family; empty: Lambda's default (Lambda Stack)
	timeout      time.Duration
	maxRetryWait time.Duration
	maxRetries   int
}

// optionKeys documents every accepted key; anything else is refused, so a
// typo cannot silently change where hosts go.
var optionKeys = map[string]string{
	"endpoint":       "API base URL (default " + DefaultEndpoint + ")",
	"region":         "default region, e.g. us-east-1, for hosts created without --region",
	"regions":        "comma-separated regions the catalog lists even while they have no capacity",
	"image":          "image family to boot (default: Lambda's default image)",
	"timeout":        "Go duration bounding one API request (default 60s)",
	"max_retry_wait": "longest Retry-After a call waits out itself before leaving it to the queue (default 30s)",
	"max_retries":    "how many rate-limited replies one call retries (default 3)",
}

func parseOptions(m map[string]string) (options, error) {
	o := options{endpoint: DefaultEndpoint, timeout: 60 * time.Second, maxRetryWait: 30 * time.Second, maxRetries: 3}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.TrimSpace(m[k])
		var err error
		switch k {
		case "endpoint":
			o.endpoint, err = parseEndpoint(v)
		case "region":
			o.region = v
		case "regions":
			for _, r := range strings.Split(v, ",") {
				if r = strings.TrimSpace(r); r != "" {
					o.regions = append(o.regions, r)
				}
			}
		case "image":
			o.image = v
		case "timeout":
			o.timeout, err = parseDuration(k, v, false)
		case "max_retry_wait":
			o.maxRetryWait, err = parseDuration(k, v, true)
		case "max_retries":
			o.maxRetries, err = strconv.Atoi(v)
			if err != nil || o.maxRetries < 0 {
				err = fmt.Errorf("option %s=%q: want a non-negative integer", k, v)
			}
		default:
			known := make([]string, 0, len(optionKeys))
			for k := range optionKeys {
				known = append(known, k)
			}
			sort.Strings(known)
			return o, fmt.Errorf("unknown option %q for provider %s (known: %s)", k, Name, strings.Join(known, ", "))
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

func parseEndpoint(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("option endpoint=%q: want an http(s) URL such as %s", v, DefaultEndpoint)
	}
	return strings.TrimRight(v, "/"), nil
}

func parseDuration(key, v string, zeroOK bool) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (d == 0 && !zeroOK) {
		return 0, fmt.Errorf("option %s=%q: want a positive Go duration such as 30s", key, v)
	}
	return d, nil
}
