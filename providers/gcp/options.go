package gcp

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	opts "github.com/sagemathinc/cocalc-hosts/pkg/provider/options"
)

// options are the gcp provider's settings, parsed from Config.Options
// (config keys providers.gcp.<key>).
type options struct {
	project         string
	zone            string // default zone for hosts that name none
	endpoint        string // compute API root; "" is the public endpoint
	billingEndpoint string // Cloud Billing Catalog API root; "" is the public endpoint

	image        string // boot image (URL or family path)
	bootDiskGB   int
	bootDiskType string
	dataDiskType string
	dataDiskGB   int // when the spec gives no size
	network      string
	subnetwork   string
	sshUser      string

	catalogZones []string // empty: every zone (aggregated list)

	pollInterval   time.Duration
	requestTimeout time.Duration
}

// optionKeys documents every accepted key; anything else is refused so a
// typo cannot silently fall back to a default.
var optionKeys = map[string]string{
	"project":          "GCP project id (required)",
	"zone":             "default zone for hosts that name none (default us-central1-a)",
	"endpoint":         "compute API root URL, for private endpoints or a fake (default https://compute.googleapis.com)",
	"billing_endpoint": "Cloud Billing Catalog API root URL (default https://cloudbilling.googleapis.com)",
	"image":            "boot disk image (default projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64)",
	"boot_disk_gb":     "boot disk size in GB (default 20)",
	"boot_disk_type":   "boot disk type (default pd-balanced)",
	"data_disk_type":   "data disk type (default pd-balanced)",
	"data_disk_gb":     "data disk size in GB when a host asks for none (default 10)",
	"network":          "VPC network (default global/networks/default)",
	"subnetwork":       "subnetwork (default: the network's auto subnet)",
	"ssh_user":         "login user the SSH key is installed for when the host names none (default cocalc)",
	"catalog_zones":    "comma-separated zones the catalog covers (default: every zone)",
	"poll_interval":    "Go duration between polls of a long operation (default 2s)",
	"request_timeout":  "Go duration one API request may take (default 60s)",
}

const (
	defaultZone      = "us-central1-a"
	defaultImage     = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
	defaultDiskType  = "pd-balanced"
	defaultNetwork   = "global/networks/default"
	defaultSSHUser   = "cocalc"
	defaultBootGB    = 20
	defaultDataGB    = 10
	defaultTimeout   = 60 * time.Second
	minPersistentGB  = 10 // the smallest persistent disk GCP makes
	maxLabelValueLen = 63
)

var (
	// https://cloud.google.com/compute/docs/naming-resources; lengths
	// are checked apart (matchLen): a counted repetition compiles into
	// that many copies at every command's start-up.
	resourceNameRE = lazyre.New(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	projectRE      = lazyre.New(`^[a-z][-a-z0-9.:]*[a-z0-9]$`)
	zoneRE         = lazyre.New(`^[a-z]+-[a-z]+[0-9]+-[a-z]$`)
	sshUserRE      = lazyre.New(`^[a-z_][a-z0-9_-]*$`) // at most 32: validUser
)

func parseOptions(m map[string]string) (options, error) {
	o := options{
		zone: defaultZone, image: defaultImage, bootDiskGB: defaultBootGB, bootDiskType: defaultDiskType,
		dataDiskType: defaultDiskType, dataDiskGB: defaultDataGB, network: defaultNetwork, sshUser: defaultSSHUser,
		pollInterval: 2 * time.Second, requestTimeout: defaultTimeout,
	}
	err := opts.Each(m, func(k, v string) (err error) {
		switch k {
		case "project":
			o.project = v
		case "zone":
			o.zone = v
			if !zoneRE().MatchString(v) {
				err = fmt.Errorf("option zone=%q: want a zone such as us-central1-a", v)
			}
		case "endpoint":
			o.endpoint, err = opts.HTTPURL(k, v, "https://compute.googleapis.com")
		case "billing_endpoint":
			o.billingEndpoint, err = opts.HTTPURL(k, v, "https://cloudbilling.googleapis.com")
		case "image":
			o.image = v
		case "boot_disk_gb":
			o.bootDiskGB, err = parseGB(k, v)
		case "data_disk_gb":
			o.dataDiskGB, err = parseGB(k, v)
		case "boot_disk_type":
			o.bootDiskType = v
		case "data_disk_type":
			o.dataDiskType = v
		case "network":
			o.network = v
		case "subnetwork":
			o.subnetwork = v
		case "ssh_user":
			o.sshUser = v
			if !validUser(v) {
				err = fmt.Errorf("option ssh_user=%q: want a Linux user name (lowercase letters, digits, _ and -)", v)
			}
		case "catalog_zones":
			o.catalogZones = nil
			for _, z := range opts.List(v) {
				if !zoneRE().MatchString(z) {
					return fmt.Errorf("option catalog_zones: %q is not a zone such as us-central1-a", z)
				}
				o.catalogZones = append(o.catalogZones, z)
			}
		case "poll_interval":
			o.pollInterval, err = opts.NonNegativeDuration(k, v, "500ms or 2s")
		case "request_timeout":
			o.requestTimeout, err = opts.NonNegativeDuration(k, v, "500ms or 2s")
		default:
			return opts.Unknown(k, optionKeys)
		}
		return err
	})
	if err != nil {
		return o, err
	}
	if o.project == "" {
		return o, fmt.Errorf("option project is required: run `cocalc-hosts providers add gcp --credentials FILE --option project=ID` with your GCP project id (and a 0600 service account key file)")
	}
	if !matchLen(projectRE(), o.project, 6, 63) {
		return o, fmt.Errorf("option project=%q is not a GCP project id (6-63 lowercase letters, digits and hyphens)", o.project)
	}
	if o.image == "" || o.bootDiskType == "" || o.dataDiskType == "" || o.network == "" {
		return o, fmt.Errorf("options image, boot_disk_type, data_disk_type and network must not be empty")
	}
	if o.requestTimeout <= 0 {
		return o, fmt.Errorf("option request_timeout must be positive")
	}
	return o, nil
}

// validUser reports whether s is a portable Linux user name.
func validUser(s string) bool { return matchLen(sshUserRE(), s, 1, 32) }

// matchLen reports whether s matches re and has between lo and hi
// bytes.
func matchLen(re *regexp.Regexp, s string, lo, hi int) bool {
	return len(s) >= lo && len(s) <= hi && re.MatchString(s)
}

func parseGB(key, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < minPersistentGB || n > 65536 {
		return 0, fmt.Errorf("option %s=%q: want a whole number of GB between %d and 65536", key, v, minPersistentGB)
	}
	return n, nil
}

// regionOf is the region of a zone: us-central1-a is in us-central1.
func regionOf(zone string) string {
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		return zone[:i]
	}
	return zone
}

// lastSegment is the name at the end of a resource URL such as
// https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a.
func lastSegment(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}
