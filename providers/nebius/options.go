package nebius

import (
	"fmt"
	"strings"
	"time"

	compute "github.com/nebius/gosdk/proto/nebius/compute/v1"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	opts "github.com/sagemathinc/cocalc-hosts/pkg/provider/options"
)

// options are the provider's settings, parsed from Config.Options
// (providers.nebius.<key> in the config file).
type options struct {
	endpoint string // host:port serving every Nebius API; "" = the public endpoints
	insecure bool   // plaintext gRPC to endpoint (a local fake or a plaintext private proxy)

	projectID string // parent of everything we create; a project lives in one region
	region    string // that project's region
	subnetID  string // subnet of the instances' network interface

	platform       string // platform for hosts that ask for no GPU and no machine type
	imageFamily    string // boot image family for CPU platforms
	gpuImageFamily string // boot image family for GPU platforms
	bootDiskGB     int
	dataDiskGB     int // data disk size when the spec gives none
	diskType       compute.DiskSpec_DiskType
	publicIP       bool
	sshUser        string // login user when the spec names none

	pollInterval   time.Duration // between operation polls
	requestTimeout time.Duration // per gRPC request
	retries        int           // in-call retries of transient and rate-limited errors
	maxRetryWait   time.Duration // longer Retry-After waits are left to the caller (the queue)
	concurrency    int           // parallel calculator requests while building the catalog

	priceTable string // versioned price table file instead of the billing calculator
}

// optionKeys documents every accepted key; anything else is refused so a
// typo cannot silently change behaviour.
var optionKeys = map[string]string{
	"endpoint":            "host:port that serves every Nebius API (a private endpoint or a fake); default: the public api.nebius.cloud endpoints",
	"insecure":            "true to speak plaintext gRPC to endpoint (only with endpoint; default false)",
	"project_id":          "Nebius project id (project-...) that owns the instances and disks (required)",
	"region":              "region of that project, e.g. eu-north1 (required; catalog rows and instances report it)",
	"subnet_id":           "subnet id (vpcsubnet-...) for the instances' network interface (required)",
	"platform":            "platform for hosts without a GPU or machine type (default cpu-d3)",
	"image_family":        "boot image family for CPU platforms (default ubuntu22.04-driverless)",
	"gpu_image_family":    "boot image family for GPU platforms (default ubuntu22.04-cuda12)",
	"boot_disk_gb":        "boot disk size in GiB (default 50)",
	"data_disk_gb":        "data disk size in GiB when the host asks for none (default 50)",
	"disk_type":           "network_ssd, network_hdd or network_ssd_non_replicated (default network_ssd)",
	"public_ip":           "true to give instances a dynamic public address (default true)",
	"ssh_user":            "login user created by cloud-init when the host names none (default ubuntu)",
	"poll_interval":       "Go duration between operation polls (default 2s)",
	"request_timeout":     "Go duration limiting each API request (default 1m)",
	"retries":             "times a transient or rate-limited call is retried within one action (default 3)",
	"max_retry_wait":      "longest Retry-After waited within one action; longer ones go back to the queue (default 30s)",
	"catalog_concurrency": "parallel billing calculator requests while building the catalog (default 8)",
	"price_table":         "JSON price table file used instead of the billing calculator (format in providers/nebius/README.md)",
}

var (
	projectRE = lazyre.New(`^project-[a-z0-9]+$`)
	subnetRE  = lazyre.New(`^vpcsubnet-[a-z0-9]+$`)
	regionRE  = lazyre.New(`^[a-z]+-[a-z]+[0-9]+$`)
)

var diskTypes = map[string]compute.DiskSpec_DiskType{
	"network_ssd":                compute.DiskSpec_NETWORK_SSD,
	"network_hdd":                compute.DiskSpec_NETWORK_HDD,
	"network_ssd_non_replicated": compute.DiskSpec_NETWORK_SSD_NON_REPLICATED,
}

func parseOptions(m map[string]string) (options, error) {
	o := options{
		platform: "cpu-d3", imageFamily: "ubuntu22.04-driverless", gpuImageFamily: "ubuntu22.04-cuda12",
		bootDiskGB: 50, dataDiskGB: 50, diskType: compute.DiskSpec_NETWORK_SSD, publicIP: true, sshUser: "ubuntu",
		pollInterval: provider.DefaultPollInterval, requestTimeout: time.Minute, retries: 3, maxRetryWait: 30 * time.Second,
		concurrency: 8,
	}
	err := opts.Each(m, func(k, v string) (err error) {
		switch k {
		case "endpoint":
			o.endpoint = v
		case "insecure":
			o.insecure, err = opts.Bool(k, v)
		case "project_id":
			o.projectID = v
		case "region":
			o.region = v
		case "subnet_id":
			o.subnetID = v
		case "platform":
			o.platform = v
		case "image_family":
			o.imageFamily = v
		case "gpu_image_family":
			o.gpuImageFamily = v
		case "boot_disk_gb":
			o.bootDiskGB, err = opts.PositiveInt(k, v)
		case "data_disk_gb":
			o.dataDiskGB, err = opts.PositiveInt(k, v)
		case "disk_type":
			t, ok := diskTypes[v]
			if !ok {
				err = fmt.Errorf("option disk_type=%q: want network_ssd, network_hdd or network_ssd_non_replicated", v)
			}
			o.diskType = t
		case "public_ip":
			o.publicIP, err = opts.Bool(k, v)
		case "ssh_user":
			o.sshUser = v
			if len(v) > 32 || !userRE().MatchString(v) {
				err = fmt.Errorf("option ssh_user=%q: want a lowercase Unix user name", v)
			}
		case "poll_interval":
			o.pollInterval, err = opts.PositiveDuration(k, v, "500ms or 2s")
		case "request_timeout":
			o.requestTimeout, err = opts.PositiveDuration(k, v, "500ms or 2s")
		case "max_retry_wait":
			o.maxRetryWait, err = opts.PositiveDuration(k, v, "500ms or 2s")
		case "retries":
			o.retries, err = opts.NonNegativeInt(k, v)
		case "catalog_concurrency":
			o.concurrency, err = opts.PositiveInt(k, v)
		case "price_table":
			o.priceTable = v
		default:
			return opts.Unknown(k, optionKeys)
		}
		return err
	})
	if err != nil {
		return o, err
	}
	switch {
	case o.projectID == "":
		return o, fmt.Errorf("option project_id is required: run `cocalc-hosts providers add nebius --credentials FILE --option project_id=project-... --option region=... --option subnet_id=vpcsubnet-...` for the project that should own the hosts")
	case !projectRE().MatchString(o.projectID):
		return o, fmt.Errorf("option project_id=%q: want a Nebius project id such as project-e00abc123", o.projectID)
	case o.region == "":
		return o, fmt.Errorf("option region is required: add `--option region=REGION` (the region of project %s, e.g. eu-north1) to `cocalc-hosts providers add nebius`", o.projectID)
	case !regionRE().MatchString(o.region):
		return o, fmt.Errorf("option region=%q: want a Nebius region such as eu-north1", o.region)
	case o.subnetID == "":
		return o, fmt.Errorf("option subnet_id is required: add `--option subnet_id=vpcsubnet-...` (a subnet of project %s) to `cocalc-hosts providers add nebius`", o.projectID)
	case !subnetRE().MatchString(o.subnetID):
		return o, fmt.Errorf("option subnet_id=%q: want a Nebius subnet id such as vpcsubnet-e00abc123", o.subnetID)
	case o.insecure && o.endpoint == "":
		return o, fmt.Errorf("option insecure=true needs option endpoint: the public Nebius endpoints only speak TLS")
	case o.platform == "" || o.imageFamily == "" || o.gpuImageFamily == "":
		return o, fmt.Errorf("options platform, image_family and gpu_image_family must not be empty")
	}
	if o.endpoint != "" {
		if strings.Contains(o.endpoint, "://") || !strings.Contains(o.endpoint, ":") {
			return o, fmt.Errorf("option endpoint=%q: want host:port (no scheme), e.g. api.example.internal:443", o.endpoint)
		}
	}
	return o, nil
}
