package hyperstack

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
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
		case "image":
			o.image = v
		case "volume_type":
			o.volumeType = v
		case "open_ports":
			o.openPorts = nil
			for _, f := range strings.Split(v, ",") {
				if f = strings.TrimSpace(f); f == "" {
					continue
				}
				n, perr := strconv.Atoi(f)
				if perr != nil || n < 1 || n > 65535 {
					return o, fmt.Errorf("option open_ports=%q: want comma-separated TCP ports such as 22,80,443", v)
				}
				o.openPorts = append(o.openPorts, n)
			}
		case "retain_ip":
			o.retainIP, err = strconv.ParseBool(v)
			if err != nil {
				err = fmt.Errorf("option retain_ip=%q: want true or false", v)
			}
		case "poll_interval":
			o.pollInterval, err = parseDuration(k, v, false)
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
	if o.image == "" || o.volumeType == "" {
		return o, fmt.Errorf("options image and volume_type must not be empty")
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
		return 0, fmt.Errorf("option %s=%q: want a positive Go duration such as 5s", key, v)
	}
	return d, nil
}
