package hyperstack

import (
	"fmt"
	"strconv"
	"time"

	opts "github.com/sagemathinc/cocalc-hosts/pkg/provider/options"
)

// DefaultEndpoint is the Infrahub API base URL.
const DefaultEndpoint = "https://infrahub-api.nexgencloud.com/v1"

// Defaults for what a host spec does not say.
const (
	DefaultImage      = "Ubuntu Server 22.04 LTS"
	DefaultVolumeType = "Cloud-SSD"
	DefaultDiskGB     = 10 // the size pkg/catalog estimates for hosts created without --disk
	// DefaultSSHUser is the login user of Hyperstack's Ubuntu images.
	DefaultSSHUser = "ubuntu"
)

// options are the hyperstack provider's settings (config keys
// providers.hyperstack.<key>).
type options struct {
	endpoint     string
	region       string // default region, e.g. CANADA-1
	image        string
	volumeType   string
	openPorts    []int // inbound TCP ports opened on new VMs
	retainIP     bool  // keep the public IP while hibernated
	pollInterval time.Duration
	timeout      time.Duration
	maxRetryWait time.Duration
	maxRetries   int
}

var optionKeys = map[string]string{
	"endpoint":       "API base URL (default " + DefaultEndpoint + ")",
	"region":         "default region, e.g. CANADA-1, for hosts created without --region",
	"image":          "OS image name (default " + DefaultImage + ")",
	"volume_type":    "type of the data volume (default " + DefaultVolumeType + ")",
	"open_ports":     "comma-separated inbound TCP ports opened on new VMs (default 22,80,443)",
	"retain_ip":      "true to keep the public IP while a host is hibernated (billed); default false",
	"poll_interval":  "Go duration between status checks while waiting for a VM or volume (default 5s)",
	"timeout":        "Go duration bounding one API request (default 60s)",
	"max_retry_wait": "longest Retry-After a call waits out itself before leaving it to the queue (default 30s)",
	"max_retries":    "how many rate-limited replies one call retries (default 3)",
}

func parseOptions(m map[string]string) (options, error) {
	o := options{
		endpoint: DefaultEndpoint, image: DefaultImage, volumeType: DefaultVolumeType, openPorts: []int{22, 80, 443},
		pollInterval: 5 * time.Second, timeout: 60 * time.Second, maxRetryWait: 30 * time.Second, maxRetries: 3,
	}
	err := opts.Each(m, func(k, v string) (err error) {
		switch k {
		case "endpoint":
			o.endpoint, err = opts.HTTPURL(k, v, DefaultEndpoint)
		case "region":
			o.region = v
		case "image":
			o.image = v
		case "volume_type":
			o.volumeType = v
		case "open_ports":
			o.openPorts = nil
			for _, f := range opts.List(v) {
				n, perr := strconv.Atoi(f)
				if perr != nil || n < 1 || n > 65535 {
					return fmt.Errorf("option open_ports=%q: want comma-separated TCP ports such as 22,80,443", v)
				}
				o.openPorts = append(o.openPorts, n)
			}
		case "retain_ip":
			o.retainIP, err = opts.Bool(k, v)
		case "poll_interval":
			o.pollInterval, err = opts.PositiveDuration(k, v, "5s")
		case "timeout":
			o.timeout, err = opts.PositiveDuration(k, v, "5s")
		case "max_retry_wait":
			o.maxRetryWait, err = opts.NonNegativeDuration(k, v, "5s")
		case "max_retries":
			o.maxRetries, err = opts.NonNegativeInt(k, v)
		default:
			return opts.UnknownFor(Name, k, optionKeys)
		}
		return err
	})
	if err != nil {
		return o, err
	}
	if o.image == "" || o.volumeType == "" {
		return o, fmt.Errorf("options image and volume_type must not be empty")
	}
	return o, nil
}
