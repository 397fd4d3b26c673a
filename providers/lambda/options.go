package lambda

import (
	"time"

	opts "github.com/sagemathinc/cocalc-hosts/pkg/provider/options"
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
	err := opts.Each(m, func(k, v string) (err error) {
		switch k {
		case "endpoint":
			o.endpoint, err = opts.HTTPURL(k, v, DefaultEndpoint)
		case "region":
			o.region = v
		case "regions":
			o.regions = append(o.regions, opts.List(v)...)
		case "image":
			o.image = v
		case "timeout":
			o.timeout, err = opts.PositiveDuration(k, v, "30s")
		case "max_retry_wait":
			o.maxRetryWait, err = opts.NonNegativeDuration(k, v, "30s")
		case "max_retries":
			o.maxRetries, err = opts.NonNegativeInt(k, v)
		default:
			return opts.UnknownFor(Name, k, optionKeys)
		}
		return err
	})
	return o, err
}
